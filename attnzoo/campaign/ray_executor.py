"""Units as Ray tasks (``--ray [ADDRESS]``), with the resources that keep their timings honest.

* On CUDA a unit asks for a whole GPU (``num_gpus=1``, never a fraction: two measurements on one GPU time
  each other); Ray sets CUDA_VISIBLE_DEVICES, so the block sees its GPU as ``cuda`` and the row's
  ``device_index`` says which physical GPU of its host it was.
* On the CPU a unit asks for the CPUs it times with: ``--threads``, or (without it) every CPU of the
  smallest node, and sets torch's threads to that number. Ray would otherwise run it with one OpenMP
  thread (it sets OMP_NUM_THREADS to a task's CPUs, 1 by default), and Ray does not pin CPUs: asking for
  them is what keeps two timings off the same cores (the runner gives a compiling unit's Inductor workers
  the same count).
* A runner's per-node work (the profiler's: the device's ceilings for the roofline) runs on each node once
  per campaign, before its units run there (a node that joins later does it with its first unit); the
  executor knows it only as a function registered with the runner.
* Rows come back as they finish (``ray.wait``), so the driver writes each at once. A task whose worker or
  node dies is retried by Ray (``max_retries``); past that, or for any error outside the block, the unit
  still gets a row, whose status says so (``lost: ...`` rows are measured again by ``--resume``).
* Units are submitted a few at a time (about what the cluster can run at once), so that a sweep's
  ``before`` hook sees the rows finished so far and Ctrl-C leaves little to cancel.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence
from urllib.parse import urlparse

from attnzoo.campaign.tasks import LOCAL_RAY, LOST, RunContext, failed_row, stamp
from attnzoo.campaign.units import node_setup_target, runner_for, runner_target
from attnzoo.unit import Unit
from attnzoo.errors import ConfigError

def _one_line(text: Any, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError("--ray needs Ray, which is not installed: pip install 'attnzoo[ray]'") from None
    return ray


def check_address(address: str, timeout: float = 3.0) -> None:
    """A host:port (or ray://host:port) that nothing answers on ends here in a second, not after Ray's
    own minute of retries."""
    if address in (LOCAL_RAY, "auto"):
        return
    parsed = urlparse(address if "://" in address else f"ray://{address}")
    try:
        host, port = parsed.hostname, parsed.port
    except ValueError:
        host, port = None, None
    if not host or not port:
        raise ConfigError(f"--ray {address}: expected host:port, ray://host:port or auto (or no address: a Ray here)")
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        raise ConfigError(f"--ray {address}: no Ray cluster answers there ({exc.strerror or exc})") from None


#: Where Ray looks for the token of a cluster with token authentication, in its order of precedence.
TOKEN_SOURCES = ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "~/.ray/auth_token")


def _auth_api() -> dict[str, Any] | None:
    """What attnzoo uses of Ray's token authentication, or None for an older Ray without it."""
    try:
        from ray._private.authentication import authentication_token_setup as setup
        from ray._raylet import AuthenticationTokenLoader, GcsClient
        from ray.exceptions import AuthenticationError
    except ImportError:
        return None
    enable = getattr(setup, "maybe_enable_token_auth_if_token_available", None)
    if enable is None:
        return None
    return {"enable": enable, "loader": AuthenticationTokenLoader, "gcs_client": GcsClient,
            "error": AuthenticationError, "logger": setup.logger}


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Ray's C++ client logs each refused attempt to file descriptor 2: keep it off the user's terminal."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)


def _token_source() -> str:
    """Where Ray reads the token from here (its precedence: RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH, ~/.ray)."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return "RAY_AUTH_TOKEN"
    if os.environ.get("RAY_AUTH_TOKEN_PATH"):
        return f"RAY_AUTH_TOKEN_PATH ({os.environ['RAY_AUTH_TOKEN_PATH']})"
    return str(Path.home() / ".ray" / "auth_token")


def _reason(exc: Exception) -> str:
    """The first sentence of Ray's AuthenticationError (the rest is Ray's general advice)."""
    return _one_line(getattr(exc, "message", None) or str(exc), 160).rstrip(".")


def authenticate(address: str, gcs_address: str | None) -> None:
    """Make this process carry the token of the cluster at ``gcs_address`` (host:port of its GCS) when the
    cluster asks for one, the way ``ray.init(address="auto")`` does: with RAY_AUTH_MODE unset and a token
    here (RAY_AUTH_TOKEN, the file RAY_AUTH_TOKEN_PATH names, or ~/.ray/auth_token), token mode is turned on.
    The cluster is asked first without a token, so that one which does not check tokens never receives it.

    A cluster that refuses this process ends here, at once, with one line (Ray itself would retry for 15 s
    and then report no cluster). Nothing is done on a Ray without token authentication, or without an
    address to ask (``gcs_address`` None: ``ray.init`` reports that)."""
    api = _auth_api()
    if api is None or gcs_address is None:
        return
    mode = os.environ.get("RAY_AUTH_MODE")
    loader = api["loader"].instance()

    def has_token() -> bool:
        try:
            return bool(loader.has_token(ignore_auth_mode=True))
        except api["error"] as exc:  # RAY_AUTH_TOKEN_PATH names a file that is missing or empty
            raise ConfigError(f"--ray {address}: cannot read the Ray auth token: {_reason(exc)}") from None

    if mode is not None and mode.lower() == "token" and not has_token():  # Ray would abort the process
        raise ConfigError(f"--ray {address}: RAY_AUTH_MODE=token but no Ray auth token here (looked in "
                          f"{', '.join(TOKEN_SOURCES)}): copy the head node's ~/.ray/auth_token")

    def refused() -> bool:
        with _quiet_stderr():
            try:
                api["gcs_client"](address=gcs_address)
            except api["error"]:
                return True
            except Exception:  # noqa: BLE001  (anything else is ray.init's to report, as before)
                return False
        return False

    if not refused():
        return
    where = address if address != "auto" else f"{gcs_address} (--ray auto)"
    needs = f"the Ray cluster at {where} requires an auth token"
    if mode is None and has_token():
        quiet = api["logger"].level
        api["logger"].setLevel(logging.ERROR)  # Ray's notice that token mode is now on
        try:
            api["enable"](warn_if_disabled=False)
        finally:
            api["logger"].setLevel(quiet)
        mode = "token"
        loader.reset_cache()
        if not refused():
            return
    if mode is None or not has_token():
        raise ConfigError(f"{needs}: none was found here; copy the head node's ~/.ray/auth_token to this "
                          "machine's ~/.ray/auth_token, or name a file holding it in RAY_AUTH_TOKEN_PATH, or set "
                          "RAY_AUTH_TOKEN")
    if mode.lower() != "token":
        raise ConfigError(f"{needs}: RAY_AUTH_MODE={mode} here; unset it (or set RAY_AUTH_MODE=token) to send "
                          f"the token in {_token_source()}")
    raise ConfigError(f"{needs}: it refused the token in {_token_source()} (not this cluster's token: use the "
                      "head node's ~/.ray/auth_token)")


def _gcs_address(address: str) -> str | None:
    """host:port of the cluster's GCS for a --ray address (auto: the one Ray would pick), None when there is
    none to ask (a Ray Client address, or no cluster found)."""
    if address.startswith("ray://"):
        return None
    if address != "auto":
        return address
    services = logging.getLogger("ray._private.services")
    level = services.level
    services.setLevel(logging.ERROR)  # its note on other clusters here: ray.init's own logging hides it too
    try:
        from ray._private.services import canonicalize_bootstrap_address

        return canonicalize_bootstrap_address("auto")
    except Exception:  # noqa: BLE001  (no cluster, or a Ray without this helper: ray.init reports it)
        return None
    finally:
        services.setLevel(level)


def _where() -> tuple[str, str]:
    import ray

    context = ray.get_runtime_context()
    return context.get_node_id(), ",".join(str(g) for g in context.get_accelerator_ids().get("GPU", []))


def run_remote(unit: Unit, target: str, raise_errors: bool, threads: int | None,
               out: str | None = None) -> dict[str, Any]:
    """The body of a unit's Ray task: the runner ``target`` names, with this node's ceilings, the task's
    threads and the folder for the unit's own files (the same path on the node as on the driver)."""
    node, gpus = _where()
    context = RunContext(raise_errors=raise_errors, threads=threads, out=out)
    try:
        row = runner_for(unit.kind, target)(unit, context)
    except Exception as exc:  # noqa: BLE001  (outside the block: still this unit's row, never a lost unit)
        if raise_errors:
            raise
        row = failed_row(unit, f"error: {type(exc).__name__}: {_one_line(exc) or 'no message'}")
    return stamp(row, unit, node=node, device_index=gpus)


def setup_remote(unit: Unit, target: str, threads: int | None) -> str:
    """The body of a node-setup task: the per-node work ``target`` names (registered with the unit's runner,
    e.g. the profiler's ceilings), run on a node before units like ``unit`` run there."""
    runner_for(unit.kind, target)(unit, RunContext(threads=threads))
    return _where()[0]


class RayExecutor:
    """Run units as Ray tasks on the cluster at ``address`` ("local": a Ray started here, stopped at the
    end; "auto" or host:port: an existing cluster). ``resources(unit)`` may replace the rule above (tests
    steer units to logical GPUs or to nodes with it)."""

    remote = True

    def __init__(self, address: str, raise_errors: bool = False, max_retries: int = 3,
                 resources: Callable[[Unit], dict[str, Any]] | None = None, num_cpus: int | None = None,
                 setup_nodes: bool = True, out: str | None = None):
        self.ray = _import_ray()
        self.address = address or LOCAL_RAY
        check_address(self.address)
        self.raise_errors = raise_errors
        self.max_retries = max_retries
        self.custom_resources = resources
        self.num_cpus = num_cpus  # of a local Ray (default: the machine's)
        self.setup_nodes = setup_nodes
        self.out = out
        self.owned = False

    # ---------------------------------------------------------------- connection
    def connect(self) -> None:
        ray = self.ray
        if ray.is_initialized():  # this process already has Ray (a test session, a notebook): use it
            return
        quiet = {"log_to_driver": False, "configure_logging": True, "logging_level": "ERROR"}
        try:
            if self.address == LOCAL_RAY:
                ray.init(num_cpus=self.num_cpus, include_dashboard=False, **quiet)
                self.owned = True
            else:
                authenticate(self.address, _gcs_address(self.address))
                ray.init(address=self.address, **quiet)
        except ConfigError:
            raise
        except ConnectionError as exc:
            raise ConfigError(f"--ray {self.address}: no Ray cluster found ({_one_line(exc, 160)})") from None
        except Exception as exc:  # noqa: BLE001  (Ray raises many kinds for a cluster it cannot join)
            if type(exc).__name__ == "AuthenticationError":  # Ray's (a Ray with token authentication)
                raise ConfigError(f"the Ray cluster at {self.address} requires an auth token: "
                                  f"{_reason(exc)}") from None
            raise ConfigError(f"--ray {self.address}: cannot join the cluster: {type(exc).__name__}: "
                              f"{_one_line(exc, 160)}") from None

    def default_device(self) -> str:
        """What ``--device auto`` means on this cluster: cuda when it has a GPU, else cpu (decided here, so a
        unit's id is the same as that of the same command run without Ray on a like machine)."""
        self.connect()
        return "cuda" if any(n["Resources"].get("GPU", 0) for n in self._nodes()) else "cpu"

    def close(self) -> None:
        if self.owned and self.ray.is_initialized():
            self.ray.shutdown()
        self.owned = False

    # ---------------------------------------------------------------- resources
    def _nodes(self) -> list[dict[str, Any]]:
        return [n for n in self.ray.nodes() if n.get("Alive")]

    def _plan(self, unit: Unit) -> tuple[dict[str, Any], int | None]:
        """The task options of ``unit`` and the threads it times with (None: the unit's own setting)."""
        settings = unit.settings_dict
        threads = settings.get("threads")
        if self.custom_resources is not None:
            return dict(self.custom_resources(unit)), threads
        device = str(settings.get("device", "auto"))
        gpus = sum(n["Resources"].get("GPU", 0) for n in self._nodes())
        if ":" in device:
            raise ConfigError(f"--device {device}: under --ray each unit gets a whole GPU from Ray; use --device cuda")
        if device == "cuda" or (device == "auto" and gpus > 0):
            if gpus == 0:
                raise ConfigError("--device cuda under --ray, but the cluster has no GPU")
            return {"num_gpus": 1, "num_cpus": threads or 1}, threads
        if threads is None:  # the CPUs of the smallest node: every unit fits anywhere, alone
            threads = int(min(n["Resources"].get("CPU", 1) for n in self._nodes()) or 1)
        return {"num_cpus": threads, "num_gpus": 0}, threads

    def _slots(self, task: dict[str, Any]) -> int:
        """How many tasks like ``task`` the cluster runs at once."""
        total = 0
        for node in self._nodes():
            have = node["Resources"]
            fits = [int(have.get("CPU", 0) // task["num_cpus"]) if task.get("num_cpus") else None,
                    int(have.get("GPU", 0) // task["num_gpus"]) if task.get("num_gpus") else None]
            fits += [int(have.get(name, 0) // need) for name, need in task.get("resources", {}).items()]
            fits = [f for f in fits if f is not None]
            total += min(fits) if fits else 1
        return max(total, 1)

    def _fits(self, node: dict[str, Any], task: dict[str, Any]) -> bool:
        have = node["Resources"]
        needs = {"CPU": task.get("num_cpus") or 0, "GPU": task.get("num_gpus") or 0, **task.get("resources", {})}
        return all(have.get(name, 0) >= need for name, need in needs.items() if need)

    def _setup_nodes(self, units: Sequence[Unit]) -> None:
        """The per-node work of the units' runners (node_setup_target: e.g. the profiler's ceilings, measured
        on each node before its units time anything), once per kind and settings, on every node that fits,
        all nodes at once, each with a unit's resources."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        setup_task = self.ray.remote(setup_remote)
        firsts: dict[Any, tuple[Unit, str]] = {}
        for unit in units:
            target = node_setup_target(unit.kind)
            if target is not None:
                firsts.setdefault((unit.kind, unit.settings), (unit, target))
        refs = []
        for unit, target in firsts.values():
            task, threads = self._plan(unit)
            for node in self._nodes():
                if self._fits(node, task):
                    strategy = NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
                    refs.append(setup_task.options(**task, scheduling_strategy=strategy,
                                                   max_retries=0).remote(unit, target, threads))
        for ref in refs:
            try:
                self.ray.get(ref)
            except self.ray.exceptions.RayError:
                pass  # that node died or failed: its first unit does the work itself

    # ---------------------------------------------------------------- running
    def run(self, units: Sequence[Unit], before=None, progress=None) -> Iterator[dict[str, Any]]:
        self.connect()
        try:
            yield from self._run(list(units), before, progress)
        finally:
            self.close()

    def _run(self, units: list[Unit], before, progress) -> Iterator[dict[str, Any]]:
        ray = self.ray
        if not units:
            return
        planned = [(unit, *self._plan(unit)) for unit in units]  # a bad device ends here, before any task
        if self.setup_nodes:
            self._setup_nodes(units)
        task_fn = ray.remote(run_remote)
        queue = list(planned)
        running: dict[Any, Unit] = {}
        window, checked_at = self._slots(planned[0][1]), time.monotonic()
        try:
            while queue or running:
                while queue and len(running) < window:
                    unit, task, threads = queue.pop(0)
                    row = before(unit) if before is not None else None
                    if row is not None:
                        stamp(row, unit)
                        if progress is not None:
                            progress.finished(unit, row)
                        yield row
                        continue
                    target = runner_target(unit.kind)
                    ref = task_fn.options(**task, max_retries=self.max_retries, retry_exceptions=False).remote(
                        unit, target, self.raise_errors, threads, self.out)
                    running[ref] = unit
                    if progress is not None:
                        progress.started(unit)
                if not running:
                    continue
                done, _ = ray.wait(list(running), num_returns=1, timeout=5.0)
                if time.monotonic() - checked_at > 10:  # nodes come and go
                    window, checked_at = self._slots(planned[0][1]), time.monotonic()
                for ref in done:
                    unit = running.pop(ref)
                    row = self._result(ref, unit)
                    if progress is not None:
                        progress.finished(unit, row)
                    yield row
        finally:
            for ref in running:  # Ctrl-C or an error: what is still running is not needed any more
                try:
                    ray.cancel(ref, force=True)
                except Exception:  # noqa: BLE001
                    pass

    def _result(self, ref, unit: Unit) -> dict[str, Any]:
        ray = self.ray
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as exc:  # only with --debug: the block's own error, raised
            raise exc.as_instanceof_cause() from None
        except ray.exceptions.RayError as exc:  # its worker or node died, past the retries
            row = failed_row(unit, f"{LOST}: {type(exc).__name__} after {self.max_retries} retries: "
                                   f"{_one_line(exc, 160)}")
            return stamp(row, unit)


__all__ = ["RayExecutor", "authenticate", "check_address", "run_remote", "setup_remote"]
