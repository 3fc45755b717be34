"""The torch range attnzoo supports, and a check that this process is inside it.

pyproject.toml is the one place the range is written: the lower bounds of torch and torchvision are read back
from attnzoo's installed metadata, and the installed versions from theirs, so the check imports neither. CI
tests both ends of the range (README, "Which torch"). A torch below the floor is refused in one line rather
than left to fail somewhere inside a measurement.
"""

from __future__ import annotations

import functools
import re
from importlib import metadata

from attnzoo.errors import ConfigError

CHECKED = ("torch", "torchvision")


def release(version: str) -> tuple[int, ...]:
    """The numeric release of a version string: '2.3.1+cu121' -> (2, 3, 1), '2.15.0rc1' -> (2, 15, 0)."""
    match = re.match(r"\s*(\d+(?:\.\d+)*)", version)
    if match is None:
        raise ValueError(f"not a version: {version!r}")
    return tuple(int(part) for part in match.group(1).split("."))


def declared_floors() -> dict[str, str]:
    """{package: lowest supported version} from attnzoo's own requirements (``torch>=2.3.1``); empty when
    attnzoo runs from a source tree that was never installed."""
    try:
        requirements = metadata.requires("attnzoo") or []
    except metadata.PackageNotFoundError:
        return {}
    floors = {}
    for requirement in requirements:
        match = re.match(r"\s*([A-Za-z0-9_.-]+)\s*(?:\[[^]]*\])?\s*\(?\s*>=\s*([0-9][^,;)\s]*)", requirement)
        if match and match.group(1).lower() in CHECKED and ";" not in requirement:
            floors[match.group(1).lower()] = match.group(2)
    return floors


@functools.lru_cache(maxsize=1)
def check_supported() -> None:
    """Raise ConfigError when an installed torch or torchvision is older than the floor attnzoo declares."""
    floors = declared_floors()
    for package, floor in floors.items():
        try:
            found = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue  # importing it fails with its own clear message
        if release(found) < release(floor):
            pins = " ".join(f"'{name}>={version}'" for name, version in floors.items())
            raise ConfigError(f"attnzoo needs {package} >= {floor} (the oldest version it is tested on), "
                              f"found {found}: pip install --upgrade {pins}")
