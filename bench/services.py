"""What the start-latency bench starts, and how each is torn down again.

Everything lives under one temporary base dir named `corral-bench-*`:

    <base>/corral/{root,run}    a corral daemon (cgroup parent <base name>)
    <base>/launcher-run         the run dir of a second launcher, for the runtime-only timing
    <base>/dockerd/...          a private dockerd (+ the containerd it manages)
    <base>/runc/{bundle,state}  a runc bundle and runc's state root

Each class owns what it starts and has a `stop()` that is safe to call
twice and after a failed start.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

BENCH_MARK = "corral-bench"
REPO = Path(__file__).resolve().parent.parent


class ServiceError(RuntimeError):
    pass


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def processes_mentioning(needle: str) -> list[tuple[int, str]]:
    """(pid, cmdline) of live processes whose command line contains `needle` (zombies excluded)."""
    found = []
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z" and needle in cmdline:
            found.append((int(entry.name), cmdline))
    return found


def pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def wait_gone(pids: Iterable[int], timeout: float) -> list[int]:
    """Wait until none of `pids` is alive; the ones still alive after `timeout`."""
    pids = list(pids)
    deadline = time.monotonic() + timeout
    while True:
        alive = [pid for pid in pids if pid_alive(pid)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)


def cgroup_dirs_named(prefix: str, max_depth: int = 4) -> list[str]:
    """Cgroup dirs whose name starts with `prefix`, in every hierarchy, deepest first.

    runc nests a container's cgroup under the caller's own cgroup where that
    is not the root (here: memory), so this looks a few levels down.
    """
    found: list[str] = []
    root = Path("/sys/fs/cgroup")
    if not root.is_dir():
        return found
    for hierarchy in root.iterdir():
        base_depth = str(hierarchy).count("/")
        for current, subdirs, _files in os.walk(hierarchy):
            keep = []
            for name in subdirs:
                if name.startswith(prefix):
                    found.append(os.path.join(current, name))
                elif current.count("/") - base_depth < max_depth:
                    keep.append(name)
            subdirs[:] = keep
    return sorted(found, key=lambda p: p.count("/"), reverse=True)


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below `path`, deepest first (the order to unmount them in)."""
    prefix = str(path)
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == prefix or point.startswith(prefix + "/"):
            points.append(point)
    return sorted(points, key=lambda p: p.count("/"), reverse=True)


def unmount_all_under(path: Path) -> list[str]:
    """Lazily unmount whatever is still mounted below `path`; returns what it had to unmount."""
    left = mounts_under(path)
    for point in left:
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)
    return left


class HostPaths:
    """Paths outside our base dir that a peer creates on its own (dockerd's key.json, /run/containerd/s, ...).

    Remembered as absent before the peer starts, removed afterwards if
    they hold nothing but empty directories (or are the one file we know).
    """

    def __init__(self, paths: Iterable[str], *, trees: bool = False) -> None:
        self.absent_before = [Path(p) for p in paths if not os.path.lexists(p)]
        # trees: remove a created directory with whatever the peer left in it (its own lock and cache files).
        self.trees = trees

    def remove_created(self) -> list[str]:
        """Remove what we created; returns the ones that had to stay (not empty)."""
        kept = []
        for path in self.absent_before:
            if not os.path.lexists(path):
                continue
            if path.is_file() or path.is_symlink():
                path.unlink()
                continue
            if self.trees:
                shutil.rmtree(path, ignore_errors=True)
            for dirpath, _dirs, _files in sorted(os.walk(path), key=lambda e: e[0].count("/"), reverse=True):
                with contextlib.suppress(OSError):
                    os.rmdir(dirpath)
            if os.path.lexists(path):
                kept.append(str(path))
        return kept


# -- corral --------------------------------------------------------------


class CorralDaemon:
    def __init__(self, base: Path) -> None:
        self.dir = base / "corral"
        self.root = self.dir / "root"
        self.run_dir = self.dir / "run"
        self.cgroup_parent = base.name
        self.socket = self.run_dir / "corral.sock"
        self.log_path = self.dir / "daemon.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["DOCKER_HOST"] = f"unix://{self.socket}"
        env["CORRAL_HOST"] = f"unix://{self.socket}"
        env.pop("DOCKER_CONTEXT", None)
        return env

    def corral_argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "supervisor.cli.main", *args]

    def start(self, extra_env: dict[str, str] | None = None) -> None:
        from supervisor.cli.client import Client

        self.dir.mkdir(parents=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.corral_argv(
                    "daemon",
                    "--root",
                    str(self.root),
                    "--run-dir",
                    str(self.run_dir),
                    "--cgroup-parent",
                    self.cgroup_parent,
                ),
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                cwd=REPO,
                start_new_session=True,
                env={**os.environ, **(extra_env or {})},
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServiceError(f"corral daemon exited with {self.process.returncode}:\n{log_tail(self.log_path)}")
            if self.socket.exists():
                try:
                    with Client(self.socket) as client:
                        if client.request("GET", "/_ping").ok:
                            return
                except OSError:
                    pass
            time.sleep(0.02)
        raise ServiceError(f"corral daemon did not come up:\n{log_tail(self.log_path)}")

    def bootstrap_busybox(self) -> None:
        result = subprocess.run(
            self.corral_argv("image", "bootstrap", "--root", str(self.root)), capture_output=True, text=True, cwd=REPO
        )
        if result.returncode != 0:
            raise ServiceError(f"corral image bootstrap failed: {result.stderr.strip()}")

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None and self.process.poll() is None else None

    def launcher_pids(self) -> list[int]:
        return [
            pid
            for pid, cmd in processes_mentioning(str(self.run_dir / "launcher.sock"))
            if "supervisor.isolation.launcher" in cmd
        ]

    def remove_all_containers(self) -> int:
        from supervisor.cli.client import Client

        with Client(self.socket) as client:
            containers = client.request("GET", "/containers/json", query={"all": True}).json()
            for container in containers:
                client.request("DELETE", f"/containers/{container['Id']}", query={"force": True})
        return len(containers)

    def stop(self) -> list[str]:
        """Remove every container, SIGTERM the daemon, wait for its launcher to leave, drop the cgroup parent."""
        problems: list[str] = []
        if self.process is None:
            return problems
        if self.process.poll() is None:
            try:
                self.remove_all_containers()
            except Exception as err:  # noqa: BLE001 - keep tearing down
                problems.append(f"corral: removing containers failed: {err}")
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                problems.append("corral: the daemon ignored SIGTERM for 20 s; killed it")
                self.process.kill()
                self.process.wait()
        stuck = wait_gone(self.launcher_pids(), timeout=10)
        for pid in stuck:
            problems.append(f"corral: launcher {pid} did not exit by itself after the daemon stopped; killed it")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        remove_cgroup_parent(self.cgroup_parent, problems)
        return problems


def busybox_layer_blob(root: Path, ref: str = "busybox:latest") -> Path:
    """The one layer blob (a tar) of corral's bootstrapped busybox, for `docker import` / `podman import`."""
    from supervisor.storage.images import ImageStore

    store = ImageStore(root)
    layers = store.resolve(ref).layer_digests
    if len(layers) != 1:
        raise ServiceError(f"{ref} has {len(layers)} layers; the benches expect the bootstrapped one-layer image")
    return Path(store.content.path(layers[0]))


def remove_cgroup_parent(parent: str, problems: list[str]) -> None:
    from supervisor.isolation.cgroups import detect

    try:
        if not detect().remove_parent(parent):
            problems.append(f"cgroup parent {parent} could not be removed everywhere")
    except Exception as err:  # noqa: BLE001
        problems.append(f"cgroup parent {parent}: {err}")


# -- dockerd -------------------------------------------------------------

# dockerd 20.10 and its containerd create these whatever their flags say.
DOCKERD_HOST_PATHS = ("/etc/docker/key.json", "/run/docker", "/run/containerd")


class Dockerd:
    """A private dockerd managing its own containerd, kept off the network and the host firewall."""

    def __init__(self, base: Path, cgroup_parent: str, dockerd: str, docker: str) -> None:
        self.dir = base / "dockerd"
        self.data_root = self.dir / "data"
        self.exec_root = self.dir / "exec"
        self.socket = self.dir / "docker.sock"
        self.pidfile = self.dir / "dockerd.pid"
        self.log_path = self.dir / "dockerd.log"
        self.cli_config = self.dir / "cli"
        self.cgroup_parent = cgroup_parent
        self.dockerd = dockerd
        self.docker = docker
        self.process: subprocess.Popen[bytes] | None = None
        self.host_paths = HostPaths(DOCKERD_HOST_PATHS)
        self.info: dict[str, Any] = {}

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["DOCKER_HOST"] = f"unix://{self.socket}"
        env["DOCKER_CONFIG"] = str(self.cli_config)
        env.pop("DOCKER_CONTEXT", None)
        return env

    def argv(self) -> list[str]:
        return [
            self.dockerd,
            "--config-file", str(self.dir / "daemon.json"),
            "--data-root", str(self.data_root),
            "--exec-root", str(self.exec_root),
            "--pidfile", str(self.pidfile),
            "-H", f"unix://{self.socket}",
            "--cgroup-parent", self.cgroup_parent,
            "--iptables=false",
            "--ip6tables=false",
            "--ip-forward=false",
            "--ip-masq=false",
            "--bridge=none",
            "--userland-proxy=false",
        ]  # fmt: skip

    def docker_cli(self, *args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.docker, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        if check and result.returncode != 0:
            raise ServiceError(f"docker {' '.join(args)} (dockerd) failed: {result.stderr.strip()}")
        return result

    def start(self) -> None:
        for path in (self.data_root, self.exec_root, self.cli_config):
            path.mkdir(parents=True)
        # An empty config file, so /etc/docker/daemon.json (if any) does not apply.
        (self.dir / "daemon.json").write_text("{}\n")
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.argv(), stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServiceError(f"dockerd exited with {self.process.returncode}:\n{log_tail(self.log_path)}")
            if self.socket.exists() and self.docker_cli("version", timeout=10, check=False).returncode == 0:
                info = json.loads(self.docker_cli("info", "--format", "{{json .}}").stdout)
                self.info = {
                    "server_version": info.get("ServerVersion"),
                    "storage_driver": info.get("Driver"),
                    "cgroup_driver": info.get("CgroupDriver"),
                    "cgroup_version": info.get("CgroupVersion"),
                    "default_runtime": info.get("DefaultRuntime"),
                }
                return
            time.sleep(0.1)
        raise ServiceError(f"dockerd did not come up:\n{log_tail(self.log_path)}")

    def import_image(self, layer_blob: Path, tag: str = "busybox:latest") -> None:
        self.docker_cli("import", "--change", 'CMD ["sh"]', str(layer_blob), tag)

    def stop(self) -> list[str]:
        problems: list[str] = []
        if self.process is None:
            return problems
        if self.process.poll() is None:
            try:
                ids = self.docker_cli("ps", "-aq", timeout=30).stdout.split()
                if ids:
                    self.docker_cli("rm", "-f", *ids, timeout=60)
            except Exception as err:  # noqa: BLE001
                problems.append(f"dockerd: removing containers failed: {err}")
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                problems.append("dockerd ignored SIGTERM for 30 s; killed it")
                self.process.kill()
                self.process.wait()
        # Its containerd (and any shim) name our dirs on their command lines.
        leftovers = [pid for pid, _cmd in processes_mentioning(str(self.dir))]
        for pid in wait_gone(leftovers, timeout=15):
            problems.append(f"dockerd: process {pid} outlived dockerd; killed it")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        wait_gone(leftovers, timeout=5)
        unmounted = unmount_all_under(self.dir)
        if unmounted:
            problems.append(f"dockerd left {len(unmounted)} mount(s) under its dirs (unmounted): {unmounted[:3]}")
        # dockerd's cgroupfs driver nests its parent under its own cgroup where that is not the root
        # (here: memory), so corral's driver, which works from the hierarchy roots, cannot find it.
        for directory in cgroup_dirs_named(self.cgroup_parent):
            try:
                os.rmdir(directory)
            except FileNotFoundError:
                pass
            except OSError as err:
                problems.append(f"dockerd's cgroup {directory} could not be removed: {err}")
        kept = self.host_paths.remove_created()
        if kept:
            problems.append(f"dockerd created host paths that are not empty (left alone): {kept}")
        return problems


# -- podman --------------------------------------------------------------

# Paths podman creates on the host whatever its flags say (its blob-info cache on `import`).
# Made on first use when missing (runc's state root among them: podman runs runc with the default --root).
PODMAN_HOST_PATHS = ("/var/lib/containers", "/etc/containers/networks", "/run/containers", "/run/runc")


class Podman:
    """A private podman: its own storage, run, tmp and network-config dirs, file locks and event log, via
    CONTAINERS_CONF (which conmon passes on to the `podman container cleanup` that applies restart policies).

    Containers run with `--network none` (loopback only, like corral's and dockerd's under --bridge=none)
    under the cgroup parent `cgroup_parent`. Its default rlimits (nofile and nproc raised to the maximum)
    fail here with EPERM, so the config sets modest ones.
    """

    def __init__(self, base: Path, cgroup_parent: str, podman: str) -> None:
        self.dir = base / "podman"
        self.conf = self.dir / "containers.conf"
        self.events_log = self.dir / "events.log"
        self.cgroup_parent = cgroup_parent
        self.podman = podman
        self.host_paths = HostPaths(PODMAN_HOST_PATHS, trees=True)
        self.started = False
        self.info: dict[str, Any] = {}

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "CONTAINERS_CONF": str(self.conf)}

    def argv(self, *args: str) -> list[str]:
        return [
            self.podman,
            "--root", str(self.dir / "root"),
            "--runroot", str(self.dir / "run"),
            "--tmpdir", str(self.dir / "tmp"),
            "--storage-driver", "overlay",
            *args,
        ]  # fmt: skip

    def run_flags(self) -> list[str]:
        return ["--network", "none", "--cgroup-parent", f"/{self.cgroup_parent}"]

    def cli(self, *args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            self.argv(*args), env=self.env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
        if check and result.returncode != 0:
            raise ServiceError(f"podman {' '.join(args)} failed: {result.stderr.strip()[-500:]}")
        return result

    def start(self) -> None:
        for name in ("root", "run", "tmp", "networks"):
            (self.dir / name).mkdir(parents=True)
        self.conf.write_text(
            "[containers]\n"
            'default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]\n'
            'netns = "none"\n'
            "[network]\n"
            f'network_config_dir = "{self.dir / "networks"}"\n'
            "[engine]\n"
            'lock_type = "file"\n'
            'cgroup_manager = "cgroupfs"\n'
            'events_logger = "file"\n'
            f'events_logfile_path = "{self.events_log}"\n'
        )
        self.started = True
        info = json.loads(self.cli("info", "--format", "json").stdout)
        host = info.get("host", {})
        self.info = {
            "version": info.get("version", {}).get("Version"),
            "runtime": host.get("ociRuntime", {}).get("name"),
            "runtime_version": (host.get("ociRuntime", {}).get("version") or "").splitlines()[0:1],
            "conmon": (host.get("conmon", {}).get("version") or "").splitlines()[0:1],
            "cgroup_manager": host.get("cgroupManager"),
            "cgroup_version": host.get("cgroupVersion"),
            "storage_driver": info.get("store", {}).get("graphDriverName"),
        }

    def import_image(self, layer_blob: Path, tag: str = "busybox:latest") -> None:
        self.cli("import", "--change", 'CMD ["sh"]', str(layer_blob), tag)

    def stop(self) -> list[str]:
        problems: list[str] = []
        if not self.started:
            return problems
        try:
            self.cli("rm", "--all", "--force", "--time", "1", timeout=120)
        except Exception as err:  # noqa: BLE001 - keep tearing down
            problems.append(f"podman: removing containers failed: {err}")
        # conmon and the `podman container cleanup` it runs name our dirs on their command lines.
        leftovers = [pid for pid, _cmd in processes_mentioning(str(self.dir))]
        for pid in wait_gone(leftovers, timeout=15):
            problems.append(f"podman: process {pid} outlived its container; killed it")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        wait_gone(leftovers, timeout=5)
        # containers/storage bind-mounts its overlay home on itself (private) and keeps it after `rm`: expected.
        home = str(self.dir / "root" / "overlay")
        unmounted = [m for m in unmount_all_under(self.dir) if m != home]
        if unmounted:
            problems.append(f"podman left {len(unmounted)} mount(s) under its dirs (unmounted): {unmounted[:3]}")
        # The parent holds a `conmon` child cgroup (and libpod-<id> ones after a failure): remove bottom-up.
        for directory in cgroup_dirs_named(self.cgroup_parent):
            for current, _subdirs, _files in sorted(os.walk(directory), key=lambda e: e[0].count("/"), reverse=True):
                try:
                    os.rmdir(current)
                except FileNotFoundError:
                    pass
                except OSError as err:
                    problems.append(f"podman's cgroup {current} could not be removed: {err}")
        kept = self.host_paths.remove_created()
        if kept:
            problems.append(f"podman created host paths that could not be removed: {kept}")
        return problems


# -- runc ----------------------------------------------------------------


class RuncBundle:
    """An OCI bundle from `runc spec`, rootfs a plain copy (no overlay) of the busybox layer dir."""

    def __init__(self, base: Path, runc: str) -> None:
        self.dir = base / "runc"
        self.bundle = self.dir / "bundle"
        self.state = self.dir / "state"
        self.runc = runc
        # launcher_timing names runc's containers "<base name>-runc-<n>".
        self.id_prefix = f"{base.name}-runc-"

    def create(self, layer_dir: Path, args: list[str]) -> None:
        self.state.mkdir(parents=True)
        self.bundle.mkdir(parents=True)
        # cp -a keeps busybox's hardlinks; runc would mkdir /dev/pts etc. in a shared layer dir, so copy.
        subprocess.run(["cp", "-a", str(layer_dir), str(self.bundle / "rootfs")], check=True)
        subprocess.run([self.runc, "spec"], cwd=self.bundle, check=True, capture_output=True)
        config_path = self.bundle / "config.json"
        config = json.loads(config_path.read_text())
        config["process"]["terminal"] = False
        config["process"]["args"] = args
        config["root"] = {"path": "rootfs", "readonly": False}
        # Empty cgroupsPath: runc makes /<container id> in each hierarchy; our ids start with corral-bench.
        config["linux"].pop("cgroupsPath", None)
        config_path.write_text(json.dumps(config, indent=2))

    def argv(self, container_id: str) -> list[str]:
        return [self.runc, "--root", str(self.state), "run", "--bundle", str(self.bundle), container_id]

    def run(self, container_id: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            self.argv(container_id),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            check=False,
        )

    def version(self) -> str:
        out = subprocess.run([self.runc, "--version"], capture_output=True, text=True, check=False).stdout
        return out.splitlines()[0] if out else "unknown"

    def stop(self) -> list[str]:
        problems: list[str] = []
        if not self.state.exists():
            return problems
        listed = subprocess.run(
            [self.runc, "--root", str(self.state), "list", "-q"], capture_output=True, text=True, check=False
        ).stdout.split()
        for container_id in listed:
            problems.append(f"runc: container {container_id} was still there (deleted)")
            subprocess.run(
                [self.runc, "--root", str(self.state), "delete", "-f", container_id], capture_output=True, check=False
            )
        # runc removes its cgroups on delete; this only catches a failed run.
        for directory in cgroup_dirs_named(self.id_prefix):
            try:
                os.rmdir(directory)
                problems.append(f"runc left cgroup {directory} (removed)")
            except FileNotFoundError:
                pass
            except OSError as err:
                problems.append(f"runc left cgroup {directory}: {err}")
        unmounted = unmount_all_under(self.dir)
        if unmounted:
            problems.append(f"runc left mounts (unmounted): {unmounted[:3]}")
        return problems


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt like Ctrl-C, so every `finally` cleans up."""

    def handler(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
