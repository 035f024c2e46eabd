"""An exec'd process, from clone to exec: enter a running container and run a command there.

Runs in a child the launcher cloned straight into the container's pid
namespace (the launcher set its own pid_for_children with setns first)
and into its v2 cgroup (CLONE_INTO_CGROUP). Here it makes itself
non-dumpable (until it execs, nothing in the container may ptrace it or
open its /proc files: it is still a copy of the launcher, with its
descriptors), joins the v1 cgroups by their `tasks` files, enters the
container's mount, uts, ipc, net and cgroup namespaces with one setns on
the container's pidfd, opens its pty in the container's own devpts (the
master goes back to the launcher on `status`), resolves the user in the
container's /etc/passwd, drops privileges as the container's first
process did, changes to the working directory as that user, and execs.

A failure before exec is sent on the CLOEXEC `status` socket as one JSON
object (`message`, `exit_code`: Docker's 127 for a command not found,
126 for anything else); EOF there means the exec happened.
"""

from __future__ import annotations

import fcntl
import os
import socket
import stat
import termios
from typing import NoReturn

from supervisor.errors import CorralError
from supervisor.isolation import capabilities, syscalls
from supervisor.isolation.launcher import protocol
from supervisor.isolation.process import (
    CONTAINER_NAMESPACES,
    ExecFailed,
    Stdio,
    base_environment,
    find_executable,
    join_v1_cgroups,
)
from supervisor.isolation.spec import ExecSpec
from supervisor.isolation.terminal import DEFAULT_WINDOW, set_window
from supervisor.isolation.users import ExecUser, resolve_user

_PR_SET_DUMPABLE = 4
# /etc/passwd and /etc/group belong to the container: read them without following it anywhere slow.
_MAX_ACCOUNT_FILE = 1 << 20
# Docker's exit code for an exec that could not start, unless the command was not found (127).
EXEC_FAILED = 126


def _read_account_file(path: str) -> str:
    """The file's text, or "" if it is missing or not a regular file (a FIFO must not hang us)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError:
        return ""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return ""
        return os.read(fd, _MAX_ACCOUNT_FILE).decode("utf-8", errors="replace")
    except OSError:
        return ""
    finally:
        os.close(fd)


def _open_console(spec: ExecSpec, status: socket.socket) -> Stdio:
    """A pty of the container's devpts instance (so `tty` names it there); its master goes to the launcher."""
    master, slave = os.openpty()
    set_window(master, *(spec.console_size or DEFAULT_WINDOW))
    protocol.send_blocking(status, {"pty": True}, [master])
    os.close(master)
    return Stdio(slave, slave, slave, tty=slave)


def _setup_stdio(stdio: Stdio) -> None:
    os.setsid()
    if stdio.tty is not None:
        fcntl.ioctl(stdio.tty, termios.TIOCSCTTY, 0)
    os.dup2(stdio.stdin, 0)
    os.dup2(stdio.stdout, 1)
    os.dup2(stdio.stderr, 2)


def _environment(spec: ExecSpec, user: ExecUser) -> dict[str, str]:
    return base_environment(spec.env, user.home)


def _drop_privileges(spec: ExecSpec, user: ExecUser, tty: int | None) -> None:
    if tty is not None:
        try:
            os.fchown(tty, user.uid, -1)
        except OSError:
            pass  # the terminal still works; only reopening /dev/tty would not
    capabilities.restrict_bounding_set(frozenset(spec.capabilities))
    if spec.no_new_privileges:
        syscalls.prctl(syscalls.PR_SET_NO_NEW_PRIVS, 1)
    os.setgroups(list(user.additional_gids))
    os.setgid(user.gid)
    os.setuid(user.uid)


def _exec(spec: ExecSpec, stdio: Stdio) -> NoReturn:
    if not spec.args:
        raise ExecFailed("no command specified", EXEC_FAILED)
    user = resolve_user(spec.user, _read_account_file("/etc/passwd"), _read_account_file("/etc/group"))
    env = _environment(spec, user)
    _drop_privileges(spec, user, stdio.tty)
    # As the user, as runc does: a directory the user may not enter is an error, not a detour.
    cwd = spec.cwd or "/"
    try:
        os.chdir(cwd)
    except OSError as err:
        raise ExecFailed(f'chdir to cwd ("{cwd}") failed: {(err.strerror or str(err)).lower()}', EXEC_FAILED) from None
    program = find_executable(spec.args[0], env["PATH"])
    try:
        os.execve(program, list(spec.args), env)
    except PermissionError:
        raise ExecFailed(f'exec: "{spec.args[0]}": permission denied', EXEC_FAILED) from None
    except FileNotFoundError:
        raise ExecFailed(f'exec: "{spec.args[0]}": no such file or directory', 127) from None
    except OSError as err:
        raise ExecFailed(f'exec: "{spec.args[0]}": {err.strerror}', EXEC_FAILED) from None


def run_exec_process(spec: ExecSpec, container_pidfd: int, stdio: Stdio | None, status: socket.socket) -> NoReturn:
    """Never returns: execs the command, or reports why not and exits. `stdio` is None for a tty."""
    try:
        syscalls.prctl(_PR_SET_DUMPABLE, 0)
        if spec.cgroup is not None:
            join_v1_cgroups(spec.cgroup.v1_tasks)
        syscalls.setns(container_pidfd, CONTAINER_NAMESPACES)
        if stdio is None:
            stdio = _open_console(spec, status)
        _setup_stdio(stdio)
        _exec(spec, stdio)
    except ExecFailed as err:
        _report(status, str(err), err.exit_code)
    except CorralError as err:
        _report(status, str(err), EXEC_FAILED)
    except BaseException as err:  # noqa: BLE001 - anything here must become an exec error, never a stray launcher
        _report(status, f"exec: {type(err).__name__}: {err}", EXEC_FAILED)


def _report(status: socket.socket, message: str, exit_code: int) -> NoReturn:
    try:
        protocol.send_blocking(status, {"message": message, "exit_code": exit_code})
    finally:
        os._exit(exit_code)
