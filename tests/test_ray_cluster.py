"""``--ray`` on a cluster started as users start one: ``ray start --head`` in a subprocess, on loopback and a free
port, with its own HOME (so its token is never the user's ~/.ray/auth_token) and its own RAY_TMPDIR (so
``--ray auto`` finds it and no other). attnzoo runs as a command in a subprocess, never ``ray.init`` in this
process, so the session's in-process Ray (conftest's ``ray_cluster``) and these clusters never meet. Each
cluster is stopped by killing the process group of its ``ray start --block``: only what the test started.

Recent Ray turns token authentication on for ``ray start`` when a token exists (``ray get-auth-token
--generate``, or the one any earlier ``ray.init()`` wrote to ~/.ray/auth_token); RAY_AUTH_MODE=disabled opts out.
"""

from __future__ import annotations

import csv
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytest.importorskip("ray")

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
RAY = Path(sys.executable).with_name("ray")
FAST = ["--mode", "infer", "--device", "cpu", "--threads", "1", "--warmup", "1"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_") and k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(ROOT)  # this checkout's attnzoo, on the driver and on the cluster's workers
    env.update(extra)
    return env


def _session_pids(sid: int) -> list[int]:
    """The processes of session ``sid`` (the ``ray start --block`` leader and what it spawned)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getsid(int(entry.name)) == sid:
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def _title(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return ""


class Head:
    """``ray start --head --block`` (or, with ``join``, a worker node: ``ray start --address JOIN --block``) in
    its own session, HOME and RAY_TMPDIR (a short path: Ray's socket names must fit in 107 characters)."""

    def __init__(self, token: bool, mode: str | None = None, join: str | None = None, **env: str):
        self.root = Path(tempfile.mkdtemp(prefix="azray-", dir="/tmp"))
        self.port = _free_port()
        self.address = join or f"127.0.0.1:{self.port}"
        self.env = _clean_env(HOME=str(self.root), RAY_TMPDIR=str(self.root), **env)
        if token:
            subprocess.run([str(RAY), "get-auth-token", "--generate"], env=self.env, check=True,
                           capture_output=True, timeout=60)
            assert (self.root / ".ray" / "auth_token").is_file()
        node_env = dict(self.env, **({"RAY_AUTH_MODE": mode} if mode else {}))
        where = [f"--address={join}"] if join else ["--head", f"--port={self.port}", "--node-ip-address=127.0.0.1",
                                                    "--include-dashboard=false"]
        self.log = self.root / "ray-start.log"
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(
                [str(RAY), "start", *where, f"--num-cpus={1 if join else 2}", "--disable-usage-stats", "--block"],
                env=node_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 120
        while "Ray runtime started" not in self.log.read_text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"ray start {' '.join(where)} did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.5)

    def client_env(self, **extra: str) -> dict[str, str]:
        """The environment of a user on the head node (its HOME holds the token, if any)."""
        return dict(self.env, **extra)

    def workers(self, title: str) -> list[int]:
        return [pid for pid in _session_pids(self.process.pid) if _title(pid).startswith(title)]

    def stop(self) -> None:
        sid = self.process.pid
        try:
            os.killpg(sid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.process.wait(timeout=3)  # ray start --block ends its processes on SIGTERM, slowly
        except subprocess.TimeoutExpired:
            pass
        for pid in _session_pids(sid):  # the whole session: raylet, GCS, agents and workers of this cluster only
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.process.poll() is None:
            self.process.wait(timeout=10)
        subprocess.run(["rm", "-rf", str(self.root)], check=False)


@pytest.fixture(scope="module")
def token_head():
    """A head node with token authentication on: Ray's default once a token exists in its HOME."""
    head = Head(token=True)
    try:
        assert "Token authentication is enabled" in head.log.read_text()  # the premise of these tests
        yield head
    finally:
        head.stop()


def _attnzoo(args: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "attnzoo", *args], check=False, env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=env["HOME"])


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _profile(address: str, env: dict[str, str], out: Path) -> subprocess.CompletedProcess:
    return _attnzoo(["profile", "se", "eca", "--shape", "1,8,6,6", *FAST, "--min-time", "0.02", "--ray", address,
                     "--output", str(out)], env)


def _check_rows(result: subprocess.CompletedProcess, out: Path) -> list[dict[str, str]]:
    assert result.returncode == 0, result.stderr
    assert "Unauthenticated" not in result.stderr and "Failed to get cluster ID" not in result.stderr
    rows = _rows(out)
    assert sorted(r["block"] for r in rows) == ["eca", "se"]
    assert all(r["status"] == "ok" and r["node"] for r in rows), rows  # measured on the cluster's node
    return rows


def test_a_token_cluster_by_address_and_by_auto(token_head, tmp_path):
    """On the head node, as its user (the token in ~/.ray/auth_token, RAY_AUTH_MODE unset): by address, which
    Ray's own ray.init refuses without RAY_AUTH_MODE=token, and by auto."""
    by_address = _profile(token_head.address, token_head.client_env(), tmp_path / "address.csv")
    by_auto = _profile("auto", token_head.client_env(), tmp_path / "auto.csv")
    first, second = _check_rows(by_address, tmp_path / "address.csv"), _check_rows(by_auto, tmp_path / "auto.csv")
    assert {r["node"] for r in first} == {r["node"] for r in second}  # the same cluster, its one node


def _one_error_line(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert "no Ray cluster found" not in lines[0] and "Traceback" not in result.stderr
    return lines[0]


@pytest.mark.parametrize("case", ["no token", "wrong token", "auth disabled here"])
def test_a_token_cluster_refuses_in_one_line_at_once(token_head, tmp_path, case):
    home = tmp_path / "home"  # another machine's user: no ~/.ray/auth_token of this cluster
    home.mkdir()
    env = _clean_env(HOME=str(home))
    if case == "wrong token":
        env["RAY_AUTH_TOKEN"] = "0" * 32
    elif case == "auth disabled here":
        env = token_head.client_env(RAY_AUTH_MODE="disabled")
    start = time.monotonic()
    result = _profile(token_head.address, env, tmp_path / "zoo.csv")
    took = time.monotonic() - start
    line = _one_error_line(result)
    assert line.startswith(f"attnzoo: error: the Ray cluster at {token_head.address} requires an auth token: ")
    assert {"no token": "none was found", "wrong token": "refused the token in RAY_AUTH_TOKEN",
            "auth disabled here": "RAY_AUTH_MODE=disabled"}[case] in line
    assert took < 15, took  # Ray alone retries for 15 s before it gives up
    assert not (tmp_path / "zoo.csv").exists() or not _rows(tmp_path / "zoo.csv")


def test_a_cluster_without_authentication(tmp_path):
    """RAY_AUTH_MODE=disabled on the head (Ray's opt-out): joined with no token at all, and by a user whose
    HOME holds a token of some other cluster."""
    head = Head(token=True, mode="disabled")
    try:
        assert "Token authentication is enabled" not in head.log.read_text()
        stranger = tmp_path / "home"
        stranger.mkdir()
        plain = _profile(head.address, _clean_env(HOME=str(stranger)), tmp_path / "plain.csv")
        _check_rows(plain, tmp_path / "plain.csv")
        other = _profile(head.address, _clean_env(HOME=str(head.root), RAY_AUTH_TOKEN="f" * 32),
                         tmp_path / "other.csv")
        _check_rows(other, tmp_path / "other.csv")
    finally:
        head.stop()


def test_a_worker_killed_mid_run_then_resume_gives_each_unit_once(token_head, tmp_path):
    """A unit's worker is SIGKILLed while it measures (Ray retries the unit elsewhere), the driver is then
    interrupted, and --resume completes the file: every unit once, all ok, the rows already there kept."""
    out = tmp_path / "zoo.csv"
    shapes = [f"1,8,{h},{h}" for h in (4, 5, 6, 7)]
    args = ["profile", "se", *[a for s in shapes for a in ("--shape", s)], *FAST, "--min-time", "1.5",
            "--ray", token_head.address, "--output", str(out)]
    driver = subprocess.Popen([sys.executable, "-m", "attnzoo", *args], env=token_head.client_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(tmp_path))
    killed = None
    try:
        deadline = time.monotonic() + 240
        while killed is None and time.monotonic() < deadline and driver.poll() is None:
            busy = token_head.workers("ray::run_remote")
            if busy:
                time.sleep(0.5)  # inside the measurement
                if busy[0] in token_head.workers("ray::run_remote"):
                    os.kill(busy[0], signal.SIGKILL)
                    killed = busy[0]
            time.sleep(0.2)
        assert killed is not None, "no unit's worker was seen running"
        while driver.poll() is None and time.monotonic() < deadline:
            if out.exists() and len(_rows(out)) >= 1:
                driver.send_signal(signal.SIGINT)  # Ctrl-C once a row is in the file
                break
            time.sleep(0.2)
        _, stderr = driver.communicate(timeout=120)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    # 130: interrupted, the rows so far kept (0: it finished first). Ray 2.60's core worker can abort the driver
    # process on its way out after the Ctrl-C ("Tried to complete task that was not pending", a Ray bug of a
    # reply racing the cancel of a killed worker's retried task): what attnzoo owes the user still holds,
    # the interruption said in one line and a complete file to resume.
    ray_aborted = driver.returncode == 1 and "bug in Ray" in stderr and "attnzoo: interrupted:" in stderr
    assert driver.returncode in (0, 130) or ray_aborted, stderr
    before = {r["unit_id"]: r for r in _rows(out)}
    assert before and all(r["status"] == "ok" for r in before.values()), before  # the killed unit was retried

    again = _attnzoo([*args, "--resume"], token_head.client_env())
    assert again.returncode == 0, again.stderr
    rows = _rows(out)
    assert len(rows) == len(shapes) == len({r["unit_id"] for r in rows})  # each unit once
    assert sorted(r["shape"] for r in rows) == sorted(shapes) and all(r["status"] == "ok" for r in rows)
    for row in rows:
        if row["unit_id"] in before:  # kept by --resume, not measured again
            assert row["fwd_ms"] == before[row["unit_id"]]["fwd_ms"]


def test_a_worker_node_joins_with_the_head_nodes_token(token_head, tmp_path):
    """The README's worker-node command: the head node's token copied to the worker (here a file named by
    RAY_AUTH_TOKEN_PATH) and RAY_AUTH_MODE=token, which a worker's ``ray start`` needs (it does not look for a
    token by itself). The cluster then has two live nodes, and attnzoo runs from the worker node's user."""
    token = tmp_path / "cluster-token"
    token.write_text((token_head.root / ".ray" / "auth_token").read_text())
    worker = Head(token=False, mode="token", join=token_head.address, RAY_AUTH_TOKEN_PATH=str(token))
    try:
        count = subprocess.run(
            [sys.executable, "-c", ("import ray; ray.init(address='auto', logging_level='ERROR'); "
                                    "print(sum(1 for n in ray.nodes() if n['Alive']))")],
            env=token_head.client_env(), capture_output=True, text=True, timeout=120, check=False)
        assert count.returncode == 0 and count.stdout.split()[-1] == "2", count.stderr[-2000:]
        result = _profile(token_head.address, worker.client_env(), tmp_path / "zoo.csv")
        _check_rows(result, tmp_path / "zoo.csv")
    finally:
        worker.stop()


class _Refused(Exception):
    message = "Authentication token is missing or incorrect."


def _fake_api(accepts: set, has_token: bool, calls: list) -> dict:
    """Ray's authentication pieces as attnzoo uses them: the GCS accepts a client whose mode is in ``accepts``."""
    class Loader:
        @staticmethod
        def instance():
            return Loader

        @staticmethod
        def has_token(ignore_auth_mode=False):
            return has_token

        @staticmethod
        def reset_cache():
            pass

    def client(address):
        calls.append(os.environ.get("RAY_AUTH_MODE"))
        if os.environ.get("RAY_AUTH_MODE") not in accepts:
            raise _Refused()

    import logging

    return {"enable": lambda warn_if_disabled: os.environ.__setitem__("RAY_AUTH_MODE", "token"), "loader": Loader,
            "gcs_client": client, "error": _Refused, "logger": logging.getLogger("fake")}


@pytest.mark.parametrize("accepts, has_token, expected, asked", [
    ({None, "token"}, True, None, [None]),  # no token is sent to a cluster that does not ask for one
    ({"token"}, True, None, [None, "token"]),  # asked, and a token is here: token mode, as ray.init("auto")
    ({"token"}, False, "none was found here", [None]),
])
def test_authenticate_asks_first_and_sends_a_token_only_when_asked(monkeypatch, accepts, has_token, expected, asked):
    from attnzoo.campaign import ray_executor
    from attnzoo.errors import ConfigError

    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    calls: list = []
    monkeypatch.setattr(ray_executor, "_auth_api", lambda: _fake_api(accepts, has_token, calls))
    monkeypatch.setattr(os, "environ", dict(os.environ))  # the token mode it may turn on stays in this test
    if expected is None:
        ray_executor.authenticate("127.0.0.1:1", "127.0.0.1:1")
    else:
        with pytest.raises(ConfigError, match=f"^the Ray cluster at 127.0.0.1:1 requires an auth token: {expected}"):
            ray_executor.authenticate("127.0.0.1:1", "127.0.0.1:1")
    assert calls == asked


def test_authenticate_does_nothing_on_a_ray_without_token_authentication(monkeypatch):
    from attnzoo.campaign import ray_executor

    monkeypatch.setattr(ray_executor, "_auth_api", lambda: None)  # what an older Ray gives
    ray_executor.authenticate("127.0.0.1:1", "127.0.0.1:1")  # nothing asked, nothing raised
