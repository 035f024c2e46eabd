"""The container's first process, from fork to exec.

Runs in a child of the launcher that is already pid 1 of a new pid
namespace and in its v2 cgroup: freshly cloned, or a spare cloned ahead
(launcher/spares.py), which has joined its v1 cgroups and made its
SPARE_NAMESPACES already, and maybe its tree (build_tree_ahead). It joins
its v1 cgroups (if the host has them), unshares the other namespaces,
builds the root filesystem, drops privileges and execs the user's command.

It talks to the launcher over `status_fd`: any failure before the exec is
one JSON object (`message`, `exit_code`) and then its exit; `EXECUTING`
is written at the point of no return, after every check runc makes
before its exec (the command found and executable by the user), so the
launcher answers a start as `runc start` does, without waiting for the
kernel to tear down this forked copy of the launcher. An exec that still
fails after that (a corrupt binary) is a message on the container's
stderr and exit 126 or 127, as under runc.

A prepared child (`go_fd` given, launcher/containers.py) does all of that
at create time, writes `PARKED` and waits for the launcher's go byte:
the start is then only that byte. It exits quietly if the launcher goes
away instead (`launcher_pidfd` becomes readable) or the go pipe closes.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import socket
import stat
import struct
import termios
from dataclasses import dataclass
from typing import NoReturn

from supervisor.errors import CorralError
from supervisor.isolation import capabilities, rootfs, syscalls
from supervisor.isolation.spec import DEFAULT_PATH, LaunchSpec
from supervisor.isolation.users import resolve_user

# What a container's first process unshares (its pid namespace came with the clone); an exec enters them.
CONTAINER_NAMESPACES = (
    syscalls.CLONE_NEWNS
    | syscalls.CLONE_NEWUTS
    | syscalls.CLONE_NEWIPC
    | syscalls.CLONE_NEWNET
    | syscalls.CLONE_NEWCGROUP
)
# What a spare makes before it has a container (launcher/spares.py): nothing of a container's is in them.
SPARE_NAMESPACES = syscalls.CLONE_NEWUTS | syscalls.CLONE_NEWIPC | syscalls.CLONE_NEWNET
PARKED = b"R"
EXECUTING = b"X"
GO = b"g"
# What the launcher writes down the go pipe of a parked child whose daemon went away: behind a go
# byte that daemon wrote (the child starts), or first (the child exits, unstarted).
NO_GO = b"n"
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1


@dataclass(frozen=True)
class Stdio:
    """Descriptors to become 0, 1 and 2; `tty` is the pty slave when there is one."""

    stdin: int
    stdout: int
    stderr: int
    tty: int | None = None


class ExecFailed(Exception):
    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as file:
            return file.read()
    except OSError:
        return ""


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock, _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | _IFF_UP))


def base_environment(items: tuple[str, ...], home: str) -> dict[str, str]:
    """The process environment from "K=V" items, with PATH (Docker's default) and HOME filled in."""
    env: dict[str, str] = {}
    for item in items:
        key, _, value = item.partition("=")
        env[key] = value
    env.setdefault("PATH", DEFAULT_PATH)
    env.setdefault("HOME", home)
    return env


def _env_with_defaults(spec: LaunchSpec, home: str) -> dict[str, str]:
    env = base_environment(spec.env, home)
    env.setdefault("HOSTNAME", spec.hostname)
    if spec.tty:
        env.setdefault("TERM", "xterm")
    return env


def find_executable(name: str, path: str) -> str:
    """Resolve argv[0] the way runc does: as given if it has a slash, else through PATH."""
    if "/" in name:
        return name
    for directory in path.split(":"):
        candidate = os.path.join(directory or ".", name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise ExecFailed(f'exec: "{name}": executable file not found in $PATH', 127)


def _setup_stdio(stdio: Stdio) -> None:
    if stdio.tty is not None:
        os.setsid()
        fcntl.ioctl(stdio.tty, termios.TIOCSCTTY, 0)
    else:
        os.setsid()
    os.dup2(stdio.stdin, 0)
    os.dup2(stdio.stdout, 1)
    os.dup2(stdio.stderr, 2)


def join_v1_cgroups(tasks_files: tuple[str, ...]) -> None:
    # Its own thread through `tasks`: unlike cgroup.procs, that skips an RCU grace period (spec.Membership).
    for path in tasks_files:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, b"0")
        finally:
            os.close(fd)


def make_spare_namespaces() -> None:
    """A spare's namespaces, made before it has a container: net (loopback up), uts and ipc."""
    syscalls.unshare(SPARE_NAMESPACES)
    _loopback_up()


def build_tree_ahead(forecast: LaunchSpec) -> int:
    """A spare's mount and cgroup namespaces and the tree `forecast` describes, pivoted into.

    The spare is in its cgroups already, so that cgroup is its namespace's root. Returns a
    descriptor of the mount namespace it left (the host's, close-on-exec): leave_tree goes back
    to it if the container it becomes wants another tree.
    """
    host = os.open("/proc/self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    try:
        syscalls.unshare(syscalls.CLONE_NEWNS | syscalls.CLONE_NEWCGROUP)
        rootfs.build_rootfs(forecast)
    except BaseException:
        os.close(host)
        raise
    return host


def leave_tree(host_mount_ns: int) -> None:
    """Back in the host's mount namespace (and its root), as a spare before build_tree_ahead.

    The namespace left had the tree's only reference: it goes, and its overlay with it, before
    this returns to Python (mounts are released as the syscall returns), so the overlay the
    container then mounts over the same upper dir is the only one.
    """
    syscalls.setns(host_mount_ns, syscalls.CLONE_NEWNS)
    os.close(host_mount_ns)


@dataclass(frozen=True)
class Command:
    program: str
    argv: list[str]
    env: dict[str, str]


def check_executable(program: str, name: str) -> None:
    """What execve would refuse, checked as the user who runs it (access() uses the real uid)."""
    try:
        mode = os.stat(program).st_mode
    except OSError as err:
        raise ExecFailed(f'exec: "{name}": stat {program}: {(err.strerror or str(err)).lower()}', 127) from None
    if stat.S_ISDIR(mode) or not os.access(program, os.X_OK):
        raise ExecFailed(f'exec: "{name}": permission denied', 126)


def _prepare_exec(spec: LaunchSpec) -> Command:
    exec_user = resolve_user(spec.user, _read("/etc/passwd"), _read("/etc/group"))
    env = _env_with_defaults(spec, exec_user.home)
    cwd = spec.cwd or "/"
    os.makedirs(cwd, exist_ok=True)
    os.chdir(cwd)
    if not spec.args:
        raise ExecFailed("no command specified", 125)
    program = find_executable(spec.args[0], env["PATH"])

    capabilities.restrict_bounding_set(frozenset(spec.capabilities))
    if spec.no_new_privileges:
        syscalls.prctl(syscalls.PR_SET_NO_NEW_PRIVS, 1)
    os.setgroups(list(exec_user.additional_gids))
    os.setgid(exec_user.gid)
    os.setuid(exec_user.uid)
    check_executable(program, spec.args[0])
    return Command(program, list(spec.args), env)


def _exec(command: Command, status_fd: int) -> NoReturn:
    os.write(status_fd, EXECUTING)
    try:
        os.execve(command.program, command.argv, command.env)
    except OSError as err:
        code = 127 if isinstance(err, FileNotFoundError) else 126
        try:
            os.write(2, f"exec {command.argv[0]}: {err.strerror}\n".encode())
        finally:
            os._exit(code)


def _park(status_fd: int, go_fd: int, launcher_pidfd: int) -> None:
    """Wait for the launcher's go; exit if it discards this child or dies."""
    os.write(status_fd, PARKED)
    while True:
        readable, _, _ = select.select([go_fd, launcher_pidfd], [], [])
        if launcher_pidfd in readable:
            os._exit(0)
        try:
            if os.read(go_fd, 1) == GO:
                return
        except InterruptedError:
            continue
        os._exit(0)


def run_container_process(
    spec: LaunchSpec,
    stdio: Stdio,
    status_fd: int,
    go: tuple[int, int] | None = None,
    *,
    spare: bool = False,
    built: LaunchSpec | None = None,
) -> NoReturn:
    """Never returns: execs the command, or reports why not and exits.

    `go` is (go_fd, launcher_pidfd) for a prepared child that parks before its exec.
    A `spare` (launcher/spares.py) is in its cgroups and SPARE_NAMESPACES already, and
    in the tree made for `built` (build_tree_ahead) if one was.
    """
    try:
        _setup_stdio(stdio)
        if built is not None:
            _enter_built_tree(built, spec)
        else:
            if spec.cgroup is not None and not spare:
                join_v1_cgroups(spec.cgroup.v1_tasks)
            # The cgroup namespace after the joins, so that the container's cgroup is its root.
            syscalls.unshare(CONTAINER_NAMESPACES & ~SPARE_NAMESPACES if spare else CONTAINER_NAMESPACES)
            socket.sethostname(spec.hostname)
            if not spare:
                _loopback_up()
            rootfs.build_rootfs(spec, tty_slave_fd=0 if stdio.tty is not None else None)
        command = _prepare_exec(spec)
        if go is not None:
            _park(status_fd, *go)
    except ExecFailed as err:
        _report(status_fd, str(err), err.exit_code)
    except CorralError as err:
        _report(status_fd, str(err), 125)
    except BaseException as err:  # noqa: BLE001 - anything here must become a start error, never a stray launcher
        _report(status_fd, f"container init: {type(err).__name__}: {err}", 125)
    _exec(command, status_fd)


def _enter_built_tree(built: LaunchSpec, spec: LaunchSpec) -> None:
    # The launcher hands a spare over with its tree only to a spec of that tree (launcher/spares.py);
    # a misfit here is a bug, and a start error is better than a container on the wrong tree.
    if not rootfs.same_shape(built, spec):
        raise CorralError("the tree made ahead does not fit this container")
    socket.sethostname(spec.hostname)
    rootfs.refresh_etc_files(built, spec)


def _report(status_fd: int, message: str, exit_code: int) -> NoReturn:
    try:
        os.write(status_fd, json.dumps({"message": message, "exit_code": exit_code}).encode())
    finally:
        os._exit(exit_code)
