"""Execs in the launcher: more processes inside a running container, handed to the daemon.

`exec` clones the process straight into the container's pid namespace:
the launcher points its own pid_for_children at the container
(`setns(container pidfd, CLONE_NEWPID)`), clones (clone3 with
CLONE_INTO_CGROUP into the container's v2 cgroup) and points it back at
its own namespace. One clone, no intermediate process, and the exec is the
launcher's own child, which it reaps. The child (isolation/enter.py)
enters the container's other namespaces and execs.

Unlike a container's output, an exec's goes to the daemon, not to the log:
the reply to `exec` carries the exec's pidfd and the daemon's ends of its
stdio (stdout and stderr read ends and the stdin write end, or the pty
master, which the child opens in the container's devpts and sends back on
its status socket); a detached exec gets /dev/null and hands back only
the pidfd. A container started by a launcher that died is entered
through the pidfd its daemon (the subreaper that inherited it) lends with
the request. The launcher keeps the exit status until the daemon `forget`s
it. An exec is owned by the connection that started it: once that
daemon is gone nobody can ask for its status, so a finished exec is
dropped then and a running one when it is reaped. The launcher does not
exit while it still parents an unreaped exec (one cannot outlive its
container's pid namespace anyway: the kernel kills it with the init).
"""

from __future__ import annotations

import errno
import os
import selectors
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from supervisor.isolation import syscalls
from supervisor.isolation.enter import run_exec_process
from supervisor.isolation.launcher import protocol
from supervisor.isolation.launcher.journal import log
from supervisor.isolation.launcher.stdio import open_stdio
from supervisor.isolation.process import Stdio
from supervisor.isolation.spec import ExecSpec
from supervisor.timestamps import rfc3339_nano

Reply = Callable[[Any, Any, dict[str, Any], "list[int] | None"], None]


def exit_record(wait_status: int) -> dict[str, Any]:
    code = os.waitstatus_to_exitcode(wait_status)
    return {
        "exit_code": 128 - code if code < 0 else code,
        "signal": -code if code < 0 else None,
        "finished_at": rfc3339_nano(time.time_ns()),
    }


@dataclass
class _Exec:
    id: str
    container_id: str
    owner: Any
    pid: int
    # The launcher's own pidfd: kills it for a `forget` with `kill` until it is reaped.
    pidfd: int
    status: socket.socket | None
    # The daemon's ends of the stdio, by name, in the order the reply lists them.
    handoff: dict[str, int]
    request: tuple[Any, Any] | None
    failure: dict[str, Any] | None = None
    exit: dict[str, Any] | None = None
    waiters: list[tuple[Any, Any]] = field(default_factory=list)
    # Nobody will ask for its status any more: drop it once it is finished.
    abandoned: bool = False

    @property
    def finished(self) -> bool:
        return self.exit is not None and self.status is None


class Execs:
    def __init__(self, selector: selectors.BaseSelector, reply: Reply) -> None:
        self._selector = selector
        self._reply = reply
        self._by_id: dict[str, _Exec] = {}
        self._by_pid: dict[int, _Exec] = {}
        # Where pid_for_children goes back to after each clone into a container.
        self._own_pid_ns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)

    @property
    def busy(self) -> bool:
        """The launcher still parents an exec it has not reaped."""
        return bool(self._by_pid)

    # -- requests ----------------------------------------------------------

    def start(self, conn: Any, request_id: Any, spec: ExecSpec, container_pidfd: int) -> None:
        if spec.exec_id in self._by_id:
            self._reply(conn, request_id, {"error": f"exec {spec.exec_id} already exists"}, None)
            return
        try:
            ex = self._spawn(conn, spec, container_pidfd)
        except ProcessLookupError:
            # The container's init is gone (or going): its pid namespace takes no new process.
            self._reply(conn, request_id, not_running(spec.container_id), None)
            return
        ex.request = (conn, request_id)
        log.info("exec.cloned", cid=spec.container_id, eid=spec.exec_id, pid=ex.pid)

    def wait(self, conn: Any, request_id: Any, exec_id: str) -> None:
        ex = self._by_id.get(exec_id)
        if ex is None or ex.failure is not None:
            self._reply(conn, request_id, {"error": "unknown exec", "unknown": True}, None)
        elif ex.finished:
            self._reply(conn, request_id, {"exit": ex.exit}, None)
        else:
            ex.waiters.append((conn, request_id))

    def forget(self, conn: Any, request_id: Any, exec_id: str, *, kill: bool) -> None:
        """Drop a finished exec's status; with `kill`, SIGKILL a running one and drop it once reaped."""
        ex = self._by_id.get(exec_id)
        if ex is not None and not ex.finished:
            if not kill:
                self._reply(conn, request_id, {"error": "exec is still running"}, None)
                return
            if ex.exit is None:
                try:
                    signal.pidfd_send_signal(ex.pidfd, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            ex.request = None
            ex.abandoned = True
        elif ex is not None:
            self._discard(ex)
        self._reply(conn, request_id, {}, None)

    def drop_connection(self, conn: Any) -> None:
        for ex in list(self._by_id.values()):
            ex.waiters = [w for w in ex.waiters if w[0] is not conn]
            if ex.owner is conn:
                ex.request = None
                ex.abandoned = True
                self._maybe_finish(ex)

    def reaped(self, pid: int, wait_status: int) -> bool:
        """Record an exec's exit; False if `pid` is no exec of ours."""
        ex = self._by_pid.pop(pid, None)
        if ex is None:
            return False
        ex.exit = exit_record(wait_status)
        log.info("exec.exited", cid=ex.container_id, eid=ex.id, pid=pid, **ex.exit)
        self._maybe_finish(ex)
        return True

    # -- the process -------------------------------------------------------

    def _spawn(self, conn: Any, spec: ExecSpec, container_pidfd: int) -> _Exec:
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        child_stdio: Stdio | None = None
        handoff: dict[str, int] = {}
        cgroup_fd = None
        try:
            child_stdio, handoff = _open_exec_stdio(spec)
            if spec.cgroup is not None and spec.cgroup.v2_dir is not None:
                cgroup_fd = os.open(spec.cgroup.v2_dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            pid, pidfd = self._clone_into(container_pidfd, cgroup_fd)
            if pid == 0:
                try:
                    signal.set_wakeup_fd(-1)
                    for signum in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGCHLD):
                        signal.signal(signum, signal.SIG_DFL)
                    parent_end.close()
                    run_exec_process(spec, container_pidfd, child_stdio, child_end)
                finally:
                    os._exit(126)
        except BaseException:
            parent_end.close()
            for fd in handoff.values():
                os.close(fd)
            raise
        finally:
            child_end.close()
            if child_stdio is not None:
                for fd in {child_stdio.stdin, child_stdio.stdout, child_stdio.stderr}:
                    os.close(fd)
            if cgroup_fd is not None:
                os.close(cgroup_fd)
        ex = _Exec(
            id=spec.exec_id,
            container_id=spec.container_id,
            owner=conn,
            pid=pid,
            pidfd=pidfd,
            status=parent_end,
            handoff=handoff,
            request=None,
        )
        self._by_id[ex.id] = ex
        self._by_pid[pid] = ex
        self._selector.register(parent_end, selectors.EVENT_READ, lambda _s: self._on_status(ex))
        return ex

    def _clone_into(self, container_pidfd: int, cgroup_fd: int | None) -> tuple[int, int]:
        """Clone a child that is born in the container's pid namespace; only our pid_for_children moves."""
        try:
            syscalls.setns(container_pidfd, syscalls.CLONE_NEWPID)
        except OSError as err:
            # ESRCH: the container's init has exited.
            if err.errno == errno.ESRCH:
                raise ProcessLookupError(str(err)) from None
            raise
        try:
            pid, pidfd = syscalls.clone_process(0, cgroup_fd)
        except BaseException as err:
            syscalls.setns(self._own_pid_ns, syscalls.CLONE_NEWPID)
            # ENOMEM: the namespace's init is exiting, and the namespace admits no one.
            if isinstance(err, OSError) and err.errno == errno.ENOMEM:
                raise ProcessLookupError(str(err)) from None
            raise
        if pid != 0:
            # In the child this would fail (its own namespace is the container's) and is not needed.
            syscalls.setns(self._own_pid_ns, syscalls.CLONE_NEWPID)
        return pid, pidfd

    def _on_status(self, ex: _Exec) -> None:
        assert ex.status is not None
        try:
            received = protocol.receive_blocking(ex.status)
        except (OSError, ValueError) as err:
            log.warning("exec.bad_status", eid=ex.id, error=str(err))
            received = None
        if received is not None:
            message, fds = received
            if message.get("pty") and fds and "pty" not in ex.handoff:
                ex.handoff["pty"] = fds.pop(0)
            elif "message" in message:
                ex.failure = message
            for fd in fds:
                os.close(fd)
            return
        # EOF: the child has exec'd (CLOEXEC) or reported why not and exited.
        self._selector.unregister(ex.status)
        ex.status.close()
        ex.status = None
        request, ex.request = ex.request, None
        if ex.failure is not None:
            log.info("exec.failed", cid=ex.container_id, eid=ex.id, error=ex.failure.get("message"))
            if request is not None:
                failure = ex.failure
                body = {"error": failure.get("message", "exec failed"), "exit_code": failure.get("exit_code", 126)}
                self._reply(request[0], request[1], body, None)
        elif request is not None:
            body = {"pid": ex.pid, "fds": ["pidfd", *ex.handoff]}
            self._reply(request[0], request[1], body, [ex.pidfd, *ex.handoff.values()])
        self._close_handoff(ex)
        self._maybe_finish(ex)

    def _maybe_finish(self, ex: _Exec) -> None:
        if not ex.finished:
            return
        if ex.failure is not None or ex.abandoned:
            self._discard(ex)
            return
        for conn, request_id in ex.waiters:
            self._reply(conn, request_id, {"exit": ex.exit}, None)
        ex.waiters.clear()

    def _close_handoff(self, ex: _Exec) -> None:
        for fd in ex.handoff.values():
            os.close(fd)
        ex.handoff.clear()

    def _discard(self, ex: _Exec) -> None:
        self._by_id.pop(ex.id, None)
        self._close_handoff(ex)
        if ex.status is not None:
            self._selector.unregister(ex.status)
            ex.status.close()
            ex.status = None
        if ex.pidfd >= 0:
            os.close(ex.pidfd)
            ex.pidfd = -1


def not_running(container_id: str) -> dict[str, Any]:
    """The reply to an exec into a container whose first process is not (or no longer) running."""
    return {"error": f"Container {container_id} is not running", "not_running": True}


def is_pidfd(fd: int) -> bool:
    """`fd` is a pidfd (anon_inode:[pidfd], or pidfd:[...] where pidfs names it), nothing else."""
    try:
        target = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return False
    return target == "anon_inode:[pidfd]" or target.startswith("pidfd:")


def _open_exec_stdio(spec: ExecSpec) -> tuple[Stdio | None, dict[str, int]]:
    """The child's stdio (None: it opens a pty itself) and the daemon's ends, by name."""
    if spec.detach:
        null = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
        return Stdio(null, null, null), {}
    if spec.tty:
        return None, {}
    stdio = open_stdio(tty=False, open_stdin=spec.open_stdin)
    by_name = {name: fd for fd, name in stdio.outputs.items()}
    handoff = {"stdout": by_name["stdout"], "stderr": by_name["stderr"]}
    if stdio.stdin_write is not None:
        handoff["stdin"] = stdio.stdin_write
    return stdio.child, handoff
