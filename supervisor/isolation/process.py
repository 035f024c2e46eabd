"""The container's first process, from fork to exec.

Runs in a freshly cloned child of the launcher that is already pid 1 of a
new pid namespace and in its v2 cgroup. It joins its v1 cgroups (if the
host has them), unshares the other namespaces,
builds the root filesystem, drops privileges and execs the user's
command. Any failure before the exec is written to `status_fd` as one
JSON object (`message`, `exit_code`); a successful exec closes the
CLOEXEC `status_fd`, which the launcher reads as success.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import struct
import termios
from dataclasses import dataclass
from typing import NoReturn

from supervisor.errors import CorralError
from supervisor.isolation import capabilities, rootfs, syscalls
from supervisor.isolation.spec import DEFAULT_PATH, LaunchSpec
from supervisor.isolation.users import resolve_user

_NAMESPACES = (
    syscalls.CLONE_NEWNS
    | syscalls.CLONE_NEWUTS
    | syscalls.CLONE_NEWIPC
    | syscalls.CLONE_NEWNET
    | syscalls.CLONE_NEWCGROUP
)
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
    for path in tasks_files:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, b"0")
        finally:
            os.close(fd)


def _exec(spec: LaunchSpec) -> NoReturn:
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
    try:
        os.execve(program, list(spec.args), env)
    except PermissionError:
        raise ExecFailed(f'exec: "{spec.args[0]}": permission denied', 126) from None
    except FileNotFoundError:
        raise ExecFailed(f'exec: "{spec.args[0]}": no such file or directory', 127) from None
    except OSError as err:
        raise ExecFailed(f'exec: "{spec.args[0]}": {err.strerror}', 126) from None


def run_container_process(spec: LaunchSpec, stdio: Stdio, status_fd: int) -> NoReturn:
    """Never returns: execs the command, or reports why not and exits."""
    try:
        _setup_stdio(stdio)
        if spec.cgroup is not None:
            join_v1_cgroups(spec.cgroup.v1_tasks)
        syscalls.unshare(_NAMESPACES)
        socket.sethostname(spec.hostname)
        _loopback_up()
        rootfs.build_rootfs(spec, tty_slave_fd=0 if stdio.tty is not None else None)
        _exec(spec)
    except ExecFailed as err:
        _report(status_fd, str(err), err.exit_code)
    except CorralError as err:
        _report(status_fd, str(err), 125)
    except BaseException as err:  # noqa: BLE001 - anything here must become a start error, never a stray launcher
        _report(status_fd, f"container init: {type(err).__name__}: {err}", 125)


def _report(status_fd: int, message: str, exit_code: int) -> NoReturn:
    try:
        os.write(status_fd, json.dumps({"message": message, "exit_code": exit_code}).encode())
    finally:
        os._exit(exit_code)
