"""Containers in the launcher: fork, start or park, drain output, reap, keep the exit.

A container's first process is forked either for a `start` (it runs up to
its exec and execs) or for a `prepare` (it runs up to its exec and parks,
isolation/process.py). A prepared container is the create/start split of
runc: the daemon prepares at create time, and the start is one `go`
byte, so a `docker run` pays for namespaces, mounts and the fork while the
client is still busy with its attach and wait requests. A prepared
container belongs to the connection that prepared it until it goes;
`discard`, or that connection closing, kills it.

Either way the start is answered at the child's point of no return
(`EXECUTING`, written after the checks runc makes before its exec). The
launcher then holds the container's mount namespace until the daemon
`forget`s the exit, so the kernel's unmount of the rootfs (an overlay
unmount syncs the upper file system) comes when the daemon cleans up after
the exit, not while the exit is being reported.
"""

from __future__ import annotations

import errno
import os
import select
import selectors
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from supervisor.isolation import syscalls
from supervisor.isolation.launcher import protocol
from supervisor.isolation.launcher.execs import exit_record
from supervisor.isolation.launcher.journal import log
from supervisor.isolation.launcher.logfile import LogFile
from supervisor.isolation.launcher.spares import Spares
from supervisor.isolation.launcher.stdio import open_stdio
from supervisor.isolation.process import EXECUTING, GO, NO_GO, PARKED, Stdio, run_container_process
from supervisor.isolation.spec import LaunchSpec
from supervisor.isolation.syscalls import close_fds_except

Reply = Callable[[Any, Any, dict[str, Any], "list[int] | None"], None]

_READ_CHUNK = 65536
_EXITED_EARLY = {"message": "container init: exited before its exec", "exit_code": 125}


@dataclass
class Container:
    id: str
    pid: int
    pidfd: int
    log: LogFile
    outputs: dict[int, str]
    status_fd: int | None
    pty_master: int | None
    stdin_write: int | None
    # Prepared: the go pipe's write end and who prepared it, until it goes (or is discarded).
    go_fd: int | None = None
    owner: Any = None
    parked: bool = False
    prepare_request: tuple[Any, Any] | None = None
    start_request: tuple[Any, Any] | None = None
    started: bool = False
    start_failed: bool = False
    status_buffer: bytes = b""
    # Its mount namespace, held from the exec until the daemon forgets its exit.
    mount_ns: int | None = None
    exit: dict[str, Any] | None = None
    waiters: list[tuple[Any, Any]] = field(default_factory=list)
    # Requests that need it started (an exec), held while a parked one's go byte is on its way.
    until_started: list[Callable[[], None]] = field(default_factory=list)
    # Parked, and its daemon gone: it starts or exits on the byte ahead in its go pipe (release_parked).
    released: bool = False

    @property
    def finished(self) -> bool:
        return self.exit is not None and not self.outputs and self.status_fd is None


class Containers:
    def __init__(self, selector: selectors.BaseSelector, reply: Reply) -> None:
        self._selector = selector
        self._reply = reply
        self._by_id: dict[str, Container] = {}
        self._by_pid: dict[int, Container] = {}
        # A parked child or a spare watches this to go away with the launcher (process.py).
        self._own_pidfd = os.pidfd_open(os.getpid())
        self.spares = Spares(self._own_pidfd, reply)

    def __bool__(self) -> bool:
        return bool(self._by_id)

    def get(self, cid: str) -> Container | None:
        return self._by_id.get(cid)

    def started(self) -> list[Container]:
        return [c for c in self._by_id.values() if c.started]

    # -- requests ----------------------------------------------------------

    def start(self, conn: Any, request_id: Any, spec: LaunchSpec, *, prepare: bool) -> None:
        if spec.id in self._by_id:
            self._reply(conn, request_id, {"error": f"container {spec.id} is already running"}, None)
            return
        container = self._fork(spec, prepare=prepare)
        if prepare:
            container.owner = conn
            container.prepare_request = (conn, request_id)
        else:
            container.start_request = (conn, request_id)

    def go(self, conn: Any, request_id: Any, cid: str) -> None:
        container = self._by_id.get(cid)
        if container is None or not container.parked or container.go_fd is None:
            self._reply(conn, request_id, {"error": f"container {cid} is not prepared", "not_prepared": True}, None)
            return
        container.start_request = (conn, request_id)
        container.owner = None
        container.parked = False
        go_fd, container.go_fd = container.go_fd, None
        try:
            os.write(go_fd, GO)
        finally:
            os.close(go_fd)

    def discard(self, conn: Any, request_id: Any, cid: str) -> None:
        """Kill a prepared container; answered once it is reaped (so its cgroup can go)."""
        container = self._by_id.get(cid)
        if container is None:
            self._reply(conn, request_id, {}, None)
            return
        if container.started or container.start_request is not None:
            self._reply(conn, request_id, {"error": f"container {cid} is not a prepared one"}, None)
            return
        container.waiters.append((conn, request_id))
        self._kill_prepared(container)
        self._maybe_finish(container)

    def wait(self, conn: Any, request_id: Any, cid: str) -> None:
        container = self._by_id.get(cid)
        # A parked one may be starting: its go byte comes from the daemon, its `EXECUTING` after.
        if container is None or not (container.started or container.parked):
            self._reply(conn, request_id, {"error": "unknown container", "unknown": True}, None)
        elif container.finished:
            self._reply(conn, request_id, {"exit": container.exit}, None)
        else:
            container.waiters.append((conn, request_id))

    def forget(self, conn: Any, request_id: Any, cid: str) -> None:
        container = self._by_id.get(cid)
        if container is not None and not container.finished:
            self._reply(conn, request_id, {"error": "container is still running"}, None)
            return
        if container is not None:
            self._discard(container)
        self._reply(conn, request_id, {}, None)

    def drop_connection(self, conn: Any) -> None:
        for container in list(self._by_id.values()):
            container.waiters = [w for w in container.waiters if w[0] is not conn]
            if container.start_request and container.start_request[0] is conn:
                container.start_request = None
            if container.prepare_request and container.prepare_request[0] is conn:
                container.prepare_request = None
            if container.owner is conn and container.status_fd is not None:
                # The closed daemon may have started it just before: an `EXECUTING` waiting in
                # the status pipe makes it a started container, not a prepared one to kill.
                if select.select([container.status_fd], [], [], 0)[0]:
                    self._on_status(container)
            if container.owner is conn:
                if container.parked and container.go_fd is not None:
                    self._release_parked(container)
                else:
                    self._kill_prepared(container)
                    self._maybe_finish(container)

    def reaped(self, pid: int, wait_status: int) -> bool:
        """Record a container's exit; False if `pid` is no container of ours."""
        container = self._by_pid.pop(pid, None)
        if container is None:
            return False
        container.exit = exit_record(wait_status)
        if container.started:
            log.info("container.exited", cid=container.id, pid=pid, **container.exit)
        self._maybe_finish(container)
        return True

    # -- the process -------------------------------------------------------

    def _fork(self, spec: LaunchSpec, *, prepare: bool) -> Container:
        stdio = open_stdio(tty=spec.tty, open_stdin=spec.open_stdin, console_size=spec.console_size)
        status_r, status_w = os.pipe2(os.O_CLOEXEC)
        go_r, go_w = os.pipe2(os.O_CLOEXEC) if prepare else (None, None)
        logfile = LogFile(spec.log_path, max_size=spec.log_max_size, max_files=spec.log_max_files)
        try:
            taken = self.spares.take(spec, stdio.child, status_w, go_r)
            pid, pidfd = taken if taken is not None else self._clone(spec, stdio.child, status_w, go_r)
        except OSError:
            logfile.close()
            stdio.close_all()
            for fd in (status_r, status_w, go_r, go_w):
                if fd is not None:
                    os.close(fd)
            raise

        stdio.close_child_ends()
        os.close(status_w)
        if go_r is not None:
            os.close(go_r)
        container = Container(
            id=spec.id,
            pid=pid,
            pidfd=pidfd,
            log=logfile,
            outputs=stdio.outputs,
            status_fd=status_r,
            pty_master=stdio.pty_master,
            stdin_write=stdio.stdin_write,
            go_fd=go_w,
        )
        self._by_id[spec.id] = container
        self._by_pid[pid] = container
        for fd in stdio.outputs:
            os.set_blocking(fd, False)
            self._selector.register(fd, selectors.EVENT_READ, lambda f, c=container: self._on_output(c, f))
        self._selector.register(status_r, selectors.EVENT_READ, lambda f, c=container: self._on_status(c))
        return container

    def _clone(self, spec: LaunchSpec, child: Stdio, status_w: int, go_r: int | None) -> tuple[int, int]:
        """Fork the container's first process afresh, born in its v2 cgroup; (pid, pidfd)."""
        cgroup_fd = None
        if spec.cgroup is not None and spec.cgroup.v2_dir is not None:
            cgroup_fd = os.open(spec.cgroup.v2_dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            pid, pidfd = syscalls.clone_process(syscalls.CLONE_NEWPID, cgroup_fd)
        finally:
            if cgroup_fd is not None:
                os.close(cgroup_fd)
        if pid == 0:
            try:
                signal.set_wakeup_fd(-1)
                for signum in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGCHLD):
                    signal.signal(signum, signal.SIG_DFL)
                go = (go_r, self._own_pidfd) if go_r is not None else None
                # Only its own: a parked child may wait seconds, and a copy of another
                # container's stdin pipe would keep that one from ever seeing EOF.
                keep = {child.stdin, child.stdout, child.stderr, status_w, *(go or ())}
                close_fds_except(keep | ({child.tty} if child.tty is not None else set()))
                run_container_process(spec, child, status_w, go)
            finally:
                os._exit(125)
        return pid, pidfd

    def _on_status(self, container: Container) -> None:
        assert container.status_fd is not None
        chunk = os.read(container.status_fd, _READ_CHUNK)
        if chunk:
            container.status_buffer += chunk
            while container.status_buffer[:1] in (PARKED, EXECUTING):
                marker, container.status_buffer = container.status_buffer[:1], container.status_buffer[1:]
                if marker == PARKED:
                    self._on_parked(container)
                else:
                    self._on_executing(container)
                    return
            return
        # End of file before the exec: the child reported a failure, or died, or was discarded.
        failure = protocol.decode(container.status_buffer) if container.status_buffer else _EXITED_EARLY
        self._close_status(container)
        container.start_failed = True
        if container.stdin_write is not None:
            os.close(container.stdin_write)
            container.stdin_write = None
        body = {"error": failure["message"], "exit_code": failure["exit_code"]}
        for request in (container.start_request, container.prepare_request):
            if request:
                self._reply(request[0], request[1], body, None)
        container.start_request = container.prepare_request = None
        if container.released:
            log.info("container.released_unstarted", cid=container.id)
        else:
            log.info("container.start_failed", cid=container.id, error=failure["message"])
        container.parked = False
        self._run_until_started(container)
        self._maybe_finish(container)

    def when_started(self, container: Container, request: Callable[[], None]) -> None:
        """Run `request` once the parked `container` has started (or failed to); the daemon's start
        writes the go byte itself, so an exec can come before the child's `EXECUTING` does."""
        container.until_started.append(request)

    def _run_until_started(self, container: Container) -> None:
        requests, container.until_started = container.until_started, []
        for request in requests:
            request()

    def _on_parked(self, container: Container) -> None:
        container.parked = True
        container.mount_ns = _open_mount_ns(container.pid)
        request, container.prepare_request = container.prepare_request, None
        if request:
            # Its handles now, and a copy of the go pipe: the daemon starts it with one byte of its
            # own, without a round trip through here (the exec's `EXECUTING` tells us).
            names, fds = handles(container)
            if container.go_fd is not None:
                names.append("go")
                fds.append(container.go_fd)
            self._reply(request[0], request[1], {"pid": container.pid, "fds": names}, fds)
        log.info("container.prepared", cid=container.id, pid=container.pid)

    def _on_executing(self, container: Container) -> None:
        self._close_status(container)
        container.started = True
        # Started through its go pipe by the daemon, or by our `go`: either way no longer prepared.
        container.owner = None
        container.parked = False
        if container.go_fd is not None:
            os.close(container.go_fd)
            container.go_fd = None
        if container.mount_ns is None:
            container.mount_ns = _open_mount_ns(container.pid)
        request, container.start_request = container.start_request, None
        if request:
            names, fds = handles(container)
            self._reply(request[0], request[1], {"pid": container.pid, "fds": names}, fds)
        if container.stdin_write is not None:
            os.close(container.stdin_write)
            container.stdin_write = None
        log.info("container.exec", cid=container.id, pid=container.pid)
        self._run_until_started(container)
        self._maybe_finish(container)

    def _close_status(self, container: Container) -> None:
        if container.status_fd is not None:
            self._selector.unregister(container.status_fd)
            os.close(container.status_fd)
            container.status_fd = None

    def in_limbo(self) -> list[Container]:
        """Released parked containers whose child has not yet said whether it started."""
        return [c for c in self._by_id.values() if c.released and c.parked]

    def _release_parked(self, container: Container) -> None:
        """A parked container whose daemon went away: the daemon may have written its go byte just
        before (it starts the container itself, launcher/containers.py knows only from `EXECUTING`).
        NO_GO behind it in the pipe settles it: the child reads the go byte first and starts, or reads
        NO_GO and exits; its status pipe then says which."""
        assert container.go_fd is not None
        container.owner = None
        container.released = True
        try:
            os.write(container.go_fd, NO_GO)
        except OSError:
            self._kill_prepared(container)  # it died meanwhile: nothing reads the pipe
            self._maybe_finish(container)
            return
        os.close(container.go_fd)
        container.go_fd = None

    def _kill_prepared(self, container: Container) -> None:
        container.start_failed = True
        container.owner = None
        container.parked = False
        self._run_until_started(container)
        if container.go_fd is not None:
            os.close(container.go_fd)
            container.go_fd = None
        if container.exit is None:
            try:
                signal.pidfd_send_signal(container.pidfd, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def _on_output(self, container: Container, fd: int) -> None:
        try:
            chunk = os.read(fd, _READ_CHUNK)
        except BlockingIOError:
            return
        except OSError as err:
            # A pty master reads EIO once the last slave descriptor is closed.
            if err.errno != errno.EIO:
                raise
            chunk = b""
        if chunk:
            container.log.write(container.outputs[fd], chunk)
            return
        self._selector.unregister(fd)
        del container.outputs[fd]
        if fd != container.pty_master:
            os.close(fd)
        self._maybe_finish(container)

    def _maybe_finish(self, container: Container) -> None:
        if not container.finished:
            return
        container.log.close()
        if container.pty_master is not None and container.pty_master not in container.outputs:
            os.close(container.pty_master)
            container.pty_master = None
        for conn, request_id in container.waiters:
            self._reply(conn, request_id, {"exit": container.exit}, None)
        container.waiters.clear()
        if container.start_failed:
            self._discard(container)

    def _discard(self, container: Container) -> None:
        self._by_id.pop(container.id, None)
        for fd in (container.pidfd, container.mount_ns, container.go_fd, container.stdin_write):
            _close_quietly(fd)
        container.mount_ns = container.go_fd = container.stdin_write = None


def handles(container: Container) -> tuple[list[str], list[int]]:
    """What the daemon gets of a container, named: its pidfd, its input, and copies of its output
    read ends. The daemon never reads those while the launcher lives; they keep the pipes open, so
    if the launcher dies the container's output does not hit a closed pipe and the daemon can
    take over writing its log."""
    named: list[tuple[str, int]] = [("pidfd", container.pidfd)]
    if container.pty_master is not None:
        named.append(("pty", container.pty_master))
    else:
        if container.stdin_write is not None:
            named.append(("stdin", container.stdin_write))
        named.extend((stream, fd) for fd, stream in container.outputs.items())
    return [name for name, _ in named], [fd for _, fd in named]


def _open_mount_ns(pid: int) -> int | None:
    try:
        return os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None  # already gone: nothing to hold


def _close_quietly(fd: int | None) -> None:
    if fd is not None:
        protocol.close_quietly(fd)
