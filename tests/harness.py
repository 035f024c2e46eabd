"""A real corral daemon for tests: its own root, run dir and cgroup parent, torn down clean."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import trio

from supervisor.cli.client import Client
from supervisor.isolation.cgroups import detect
from supervisor.isolation.launcher.client import open_launcher
from supervisor.reactor.engine import Engine, EngineConfig, open_engine
from supervisor.storage.images import ImageStore

REPO = Path(__file__).resolve().parent.parent
CORRAL = [sys.executable, "-m", "supervisor.cli.main"]
DOCKER = shutil.which("docker")
TEST_MARK = "corral-t"
SPARE_COMM = "corral-spare"


class Daemon:
    """One daemon process over a state root that may outlive it (for restart tests)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.root = base / "root"
        self.run_dir = base / "run"
        self.cgroup_parent = base.name
        self.socket = self.run_dir / "corral.sock"
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = base / "daemon.log"

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["CORRAL_HOST"] = f"unix://{self.socket}"
        env["DOCKER_HOST"] = f"unix://{self.socket}"
        env.pop("DOCKER_CONTEXT", None)
        return env

    def start(self, *extra_args: str) -> None:
        assert self.process is None or self.process.poll() is not None
        if self.socket.exists():
            self.socket.unlink()
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [
                *CORRAL,
                "daemon",
                "--root",
                str(self.root),
                "--run-dir",
                str(self.run_dir),
                "--cgroup-parent",
                self.cgroup_parent,
                *extra_args,
            ],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            cwd=REPO,
        )
        log.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.process.returncode}:\n{self.log_path.read_text()}")
            if self.socket.exists():
                try:
                    with Client(self.socket) as client:
                        if client.request("GET", "/_ping").ok:
                            return
                except OSError:
                    pass
            time.sleep(0.02)
        raise RuntimeError(f"daemon did not come up:\n{self.log_path.read_text()}")

    def kill9(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        """SIGTERM, as a service manager stops it: the daemon must exit 0, not crash on the way out."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                code = self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise AssertionError(f"the daemon did not stop on SIGTERM:\n{self.log_tail()}") from None
            assert code == 0, f"the daemon exited with {code} on SIGTERM:\n{self.log_tail()}"

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def launcher_pid(self) -> int | None:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"supervisor.isolation.launcher" in cmdline and str(self.run_dir / "launcher.sock").encode() in cmdline:
                if process_comm(int(entry.name)) == SPARE_COMM:
                    continue  # a spare is a fork of the launcher (launcher/spares.py)
                return int(entry.name)
        return None

    def container_dirs(self) -> list[Path]:
        """Entries of ROOT/containers besides the spare's staging dir (reactor/spare.py)."""
        return sorted(p for p in (self.root / "containers").iterdir() if not p.name.startswith(".spare-"))

    def cgroups_left(self, settle: float = 2.0) -> list[str]:
        """Cgroups under this daemon's parent besides its one spare (reactor/spare.py).

        A spare's cgroup holds one process named corral-spare; one still being made is empty for
        a moment, so an empty cgroup is only reported if it stays so for `settle` seconds.
        """
        deadline = time.monotonic() + settle
        while True:
            names = sorted(
                {
                    child.name
                    for hierarchy in Path("/sys/fs/cgroup").iterdir()
                    if (hierarchy / self.cgroup_parent).is_dir()
                    for child in (hierarchy / self.cgroup_parent).iterdir()
                    if child.is_dir()
                }
            )
            spares = [name for name in names if self._holds_only_a_spare(name)]
            left = [name for name in names if name not in spares] + spares[1:]
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.05)

    def _holds_only_a_spare(self, name: str) -> bool:
        pids: set[int] = set()
        for procs in Path("/sys/fs/cgroup").glob(f"*/{self.cgroup_parent}/{name}/cgroup.procs"):
            try:
                pids.update(int(line) for line in procs.read_text().split())
            except OSError:
                return False
        return len(pids) == 1 and process_comm(pids.pop()) == SPARE_COMM

    # -- clients -----------------------------------------------------------

    def client(self) -> Client:
        return Client(self.socket)

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        with self.client() as client:
            return client.request(method, path, **kwargs)

    def corral(self, *args: str, input: bytes | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*CORRAL, *args],
            env=self.env,
            input=input.decode() if input else None,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=REPO,
        )

    def docker(self, *args: str, input: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        assert DOCKER, "the docker CLI is not installed"
        return subprocess.run(
            [DOCKER, *args], env=self.env, input=input, capture_output=True, text=True, timeout=timeout
        )

    def inspect(self, ref: str) -> dict[str, Any]:
        response = self.api("GET", f"/containers/{ref}/json")
        assert response.ok, response.message
        return response.json()

    def remove_all(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        containers = self.api("GET", "/containers/json", query={"all": True}).json()
        for container in containers:
            self.api("DELETE", f"/containers/{container['Id']}", query={"force": True})


def bootstrap(root: Path) -> None:
    subprocess.run([*CORRAL, "image", "bootstrap", "--root", str(root)], check=True, capture_output=True, cwd=REPO)


@contextmanager
def state_dir() -> Iterator[Path]:
    """A short base dir (unix socket paths are limited to 107 bytes) named with the test mark."""
    base = Path(tempfile.mkdtemp(prefix=f"{TEST_MARK}", dir="/tmp"))
    try:
        yield base
    finally:
        if not os.environ.get("CORRAL_KEEP_TEST_STATE"):
            shutil.rmtree(base, ignore_errors=True)


def wait_for(predicate: Any, timeout: float = 10.0, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {predicate}")
        time.sleep(interval)


def process_comm(pid: int) -> str:
    """/proc/PID/comm, "" once the process is gone."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def teardown(daemon: Daemon) -> None:
    """Remove every container, stop the daemon, wait for the launcher to leave, drop the cgroup parent."""
    try:
        daemon.remove_all()
    finally:
        daemon.stop()
    launcher = daemon.launcher_pid()
    if launcher is not None:
        try:
            wait_for(lambda: daemon.launcher_pid() is None, timeout=10)
        except AssertionError:
            os.kill(launcher, signal.SIGKILL)
            _kill_leftover_containers(daemon.cgroup_parent)
            raise AssertionError(f"the launcher (pid {launcher}) did not exit after its daemon stopped") from None
    detect().remove_parent(daemon.cgroup_parent)


def _kill_leftover_containers(cgroup_parent: str) -> None:
    """After a failed teardown: kill and remove every container cgroup left under the parent, so one
    failure does not leave processes behind to be counted against every later run."""
    driver = detect()
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        parent = hierarchy / cgroup_parent
        if not parent.is_dir():
            continue
        for child in [c for c in parent.iterdir() if c.is_dir()]:
            try:
                cgroup = driver.open(cgroup_parent, child.name)
            except FileNotFoundError:
                continue
            cgroup.kill()
            wait_for(lambda cgroup=cgroup: not cgroup.pids(), timeout=5)
            cgroup.remove()


def run_json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def argv(*parts: str | Sequence[str]) -> list[str]:
    out: list[str] = []
    for part in parts:
        out.extend([part] if isinstance(part, str) else part)
    return out


@asynccontextmanager
async def engine_in_process(base: Path) -> AsyncIterator[Engine]:
    """The engine without the daemon around it, over a fresh root under `base` (see state_dir)."""
    root, run_dir = base / "root", base / "run"
    await trio.to_thread.run_sync(bootstrap, root)
    run_dir.mkdir()
    cgroups = detect()
    try:
        async with open_launcher(run_dir) as launcher:
            config = EngineConfig(root=root, run_dir=run_dir, cgroup_parent=base.name)
            async with open_engine(config, images=ImageStore(root), cgroups=cgroups, launcher=launcher) as engine:
                try:
                    yield engine
                finally:
                    with trio.CancelScope(shield=True):
                        for container in engine.containers():
                            await engine.remove(container.id, force=True)
    finally:
        cgroups.remove_parent(base.name)
