"""Profiling suites: TOML files of blocks x shapes x options, in ``profiles/`` or anywhere on disk.

A suite looks like this (every field but ``runs`` is optional)::

    title = "Shapes from the articles"
    [options]                  # any of: device, dtype, mode, min_time, warmup, seed, threads
    mode = "both"
    min_time = 0.5
    [[runs]]                   # one table per group: every block at every shape
    note = "first article"
    blocks = ["cbam", "se*"]   # names or wildcards
    shapes = ["128,256,24,24"]
    set = { reduction = 16 }   # constructor overrides, as --set
    networks = ["resnet50"]    # optional: the blocks placed in these networks (as --network), with
    placement = "residual"     # optional --placement and
    stages = "3,4"             # optional --stages; blocks = [] gives the plain network alone
    paper = { table = "...", params_m = 28.09, gflops = 3.87 }   # optional: a published figure, for scripts
    [sweep]                    # optional: each run's shapes are base shapes, varied over a grid
    over = "hw"                # hw (H = W), channels or batch
    values = [16, 32, 64]      # the grid; `attnzoo sweep --suite` fits cost ~ x^k along it

Options given on the command line win over the suite's. Loading reads TOML only (no torch).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attnzoo.errors import AttnzooError, ConfigError
from attnzoo.growth import grid_shapes

OPTION_TYPES: dict[str, tuple[type, ...]] = {"device": (str,), "dtype": (str,), "mode": (str,),
                                             "min_time": (int, float), "warmup": (int,), "seed": (int,),
                                             "threads": (int,)}
_TOP = {"title", "description", "options", "runs", "sweep"}
_RUN = {"note", "blocks", "shapes", "set", "networks", "placement", "stages", "paper"}


@dataclass(frozen=True)
class SuiteRun:
    blocks: tuple[str, ...]
    shapes: tuple[str, ...]
    overrides: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    networks: tuple[str, ...] = ()
    placement: str | None = None
    stages: str | None = None
    paper: dict[str, Any] = field(default_factory=dict)  # read by scripts (benchmarks/papers.py), not profile

    @property
    def network_options(self) -> dict[str, Any]:
        """The keywords of profile_rows for a run in networks (empty for a run of blocks)."""
        if not self.networks:
            return {}
        return {"networks": self.networks, "placement": self.placement, "stages": self.stages}


@dataclass(frozen=True)
class Suite:
    name: str
    path: Path
    title: str
    runs: tuple[SuiteRun, ...]
    options: dict[str, Any] = field(default_factory=dict)
    sweep_over: str | None = None  # the axis the shapes vary over, for a sweep suite


def bundled_profiles_dir() -> Path:
    """The suites shipped with attnzoo: inside the wheel, or the repository's profiles/ in a checkout."""
    package = Path(__file__).resolve().parent.parent
    packaged = package / "_data" / "profiles"
    return packaged if packaged.is_dir() else package.parent / "profiles"


def available_suites() -> list[str]:
    folder = bundled_profiles_dir()
    return sorted(p.stem for p in folder.glob("*.toml")) if folder.is_dir() else []


def find_suite(name_or_path: str) -> Path:
    """A path to a TOML file, or the name of a bundled suite (``seeds`` is profiles/seeds.toml)."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    bundled = bundled_profiles_dir() / f"{name_or_path}.toml"
    if "/" not in name_or_path and bundled.is_file():
        return bundled
    known = ", ".join(available_suites()) or "none"
    raise ConfigError(f"no suite '{name_or_path}': not a file, nor a bundled suite (bundled: {known})")


def _shape_text(value: Any, where: str) -> str:
    if isinstance(value, str) and value.strip():
        return value.strip()
    if isinstance(value, list) and value and all(isinstance(d, int) and not isinstance(d, bool) for d in value):
        return ",".join(str(d) for d in value)
    raise ConfigError(f"{where}: a shape is a string like \"128,256,24,24\" or a list of integers")


def _string_list(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(f"{where}: expected a non-empty list of strings")
    return tuple(v.strip() for v in value)


def load_suite(name_or_path: str) -> Suite:
    """Read and validate a suite; errors name the file and the field."""
    from attnzoo.build import parse_shape

    path = find_suite(name_or_path)
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    unknown = set(data) - _TOP
    if unknown:
        raise ConfigError(f"{path}: unknown field(s) {', '.join(sorted(unknown))} (expected {', '.join(sorted(_TOP))})")
    options = data.get("options", {})
    if not isinstance(options, dict):
        raise ConfigError(f"{path}: field 'options' must be a table")
    for key, value in options.items():
        if key not in OPTION_TYPES:
            raise ConfigError(f"{path}: options.{key} is not an option (expected {', '.join(OPTION_TYPES)})")
        if not isinstance(value, OPTION_TYPES[key]) or isinstance(value, bool):
            raise ConfigError(f"{path}: options.{key} has the wrong type ({type(value).__name__})")
    sweep_over, grid = _sweep_table(data.get("sweep"), path)
    runs_data = data.get("runs")
    if not isinstance(runs_data, list) or not runs_data:
        raise ConfigError(f"{path}: field 'runs' must be a non-empty array of tables ([[runs]])")
    runs = []
    for i, run in enumerate(runs_data):
        where = f"{path}: runs[{i}]"
        if not isinstance(run, dict):
            raise ConfigError(f"{where} must be a table")
        unknown = set(run) - _RUN
        if unknown:
            raise ConfigError(f"{where}: unknown field(s) {', '.join(sorted(unknown))} "
                              f"(expected {', '.join(sorted(_RUN))})")
        for key in ("blocks", "shapes"):
            if key not in run:
                raise ConfigError(f"{where}: missing field '{key}'")
        networks = _string_list(run["networks"], f"{where}.networks") if "networks" in run else ()
        blocks = (() if networks and run["blocks"] == [] else _string_list(run["blocks"], f"{where}.blocks"))
        for key in ("placement", "stages"):
            if key in run and (not networks or not isinstance(run[key], str)):
                raise ConfigError(f"{where}.{key}: expected a string, in a run with 'networks'")
        paper = run.get("paper", {})
        if not isinstance(paper, dict):
            raise ConfigError(f"{where}.paper: expected a table")
        if not isinstance(run["shapes"], list) or not run["shapes"]:
            raise ConfigError(f"{where}.shapes: expected a non-empty list of shapes")
        shapes = tuple(_shape_text(s, f"{where}.shapes") for s in run["shapes"])
        for shape in shapes:
            try:
                parse_shape(shape)
            except AttnzooError as exc:
                raise ConfigError(f"{where}.shapes: {exc}") from None
        if sweep_over is not None:
            shapes = tuple(",".join(map(str, grid_point)) for shape in shapes
                           for grid_point in grid_shapes(parse_shape(shape), sweep_over, grid))
        overrides = run.get("set", {})
        if not isinstance(overrides, dict):
            raise ConfigError(f"{where}.set: expected a table of constructor arguments")
        note = run.get("note", "")
        if not isinstance(note, str):
            raise ConfigError(f"{where}.note: expected a string")
        runs.append(SuiteRun(blocks=blocks, shapes=shapes, overrides=dict(overrides), note=note, networks=networks,
                             placement=run.get("placement"), stages=run.get("stages"), paper=dict(paper)))
    title = data.get("title", path.stem)
    if not isinstance(title, str):
        raise ConfigError(f"{path}: field 'title' must be a string")
    return Suite(name=path.stem, path=path, title=title, runs=tuple(runs), options=dict(options),
                 sweep_over=sweep_over)


def _sweep_table(table: Any, path: Path) -> tuple[str | None, list[int]]:
    from attnzoo.growth import AXES

    if table is None:
        return None, []
    if not isinstance(table, dict) or set(table) - {"over", "values"}:
        raise ConfigError(f"{path}: field 'sweep' must be a table with 'over' and 'values'")
    over = table.get("over", "hw")
    if over not in AXES:
        raise ConfigError(f"{path}: sweep.over is '{over}', expected one of {', '.join(AXES)}")
    values = table.get("values")
    if (not isinstance(values, list) or len(values) < 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values)):
        raise ConfigError(f"{path}: sweep.values must list at least two positive integers")
    return over, sorted(set(values))


def check_blocks(suite: Suite, registry=()) -> None:
    """Raise ConfigError naming the file and run when a suite names a block the registry lacks."""
    from attnzoo.registry import resolve_names

    from attnzoo.networks.cards import resolve_networks

    for i, run in enumerate(suite.runs):
        try:
            resolve_names(run.blocks, registry)
            resolve_networks(run.networks, registry)
        except AttnzooError as exc:
            raise ConfigError(f"{suite.path}: runs[{i}].blocks: {exc}") from None
