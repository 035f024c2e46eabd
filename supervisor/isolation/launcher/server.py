"""The launcher: a single-threaded fork server that parents every container.

The daemon starts it once per state root, in its own session, and talks
to it over a SOCK_SEQPACKET unix socket (see protocol.py). It forks each
container (already pid 1 of a fresh pid namespace), drains its output
into the log file, reaps it, keeps its exit status until the daemon says
`forget`, and hands the daemon a pidfd per container. It outlives a
crashed daemon and exits by itself once no daemon is connected and no
container or unacknowledged exit is left.

No trio, no threads: one selector loop, so forking is safe.
"""

from __future__ import annotations

import errno
import fcntl
import os
import selectors
import signal
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from supervisor.isolation import syscalls
from supervisor.isolation.launcher import protocol
from supervisor.isolation.launcher.execs import Execs, exit_record, not_running
from supervisor.isolation.launcher.journal import log
from supervisor.isolation.launcher.logfile import LogFile
from supervisor.isolation.launcher.stdio import open_stdio
from supervisor.isolation.process import run_container_process
from supervisor.isolation.spec import ExecSpec, LaunchSpec

_READ_CHUNK = 65536
_FIRST_CONNECT_GRACE = 30.0


@dataclass
class _Connection:
    sock: socket.socket


@dataclass
class _Container:
    id: str
    pid: int
    pidfd: int
    log: LogFile
    outputs: dict[int, str]
    status_fd: int | None
    pty_master: int | None
    start_request: tuple[_Connection, Any] | None
    start_failed: bool = False
    exit: dict[str, Any] | None = None
    waiters: list[tuple[_Connection, Any]] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.exit is not None and not self.outputs and self.status_fd is None


class Launcher:
    def __init__(self, listener: socket.socket) -> None:
        self._listener = listener
        self._selector = selectors.DefaultSelector()
        self._connections: dict[int, _Connection] = {}
        self._containers: dict[str, _Container] = {}
        self._by_pid: dict[int, _Container] = {}
        self._ever_connected = False
        self._started_at = time.monotonic()
        self._wakeup_r, self._wakeup_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._execs = Execs(self._selector, self._reply)

    # -- main loop -------------------------------------------------------

    def serve(self) -> None:
        signal.set_wakeup_fd(self._wakeup_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        self._selector.register(self._listener, selectors.EVENT_READ, self._accept)
        self._selector.register(self._wakeup_r, selectors.EVENT_READ, self._on_signal)
        log.info("launcher.ready", pid=os.getpid())
        while not self._should_exit():
            for key, _ in self._selector.select(timeout=self._select_timeout()):
                key.data(key.fileobj)
        log.info("launcher.exiting")

    def _select_timeout(self) -> float | None:
        # Only bounded before the first daemon has connected, so an orphaned launcher goes away.
        return None if self._ever_connected else _FIRST_CONNECT_GRACE

    def _should_exit(self) -> bool:
        if self._connections or self._containers or self._execs.busy:
            return False
        if self._ever_connected:
            return True
        return time.monotonic() - self._started_at > _FIRST_CONNECT_GRACE

    # -- connections -----------------------------------------------------

    def _accept(self, _: object) -> None:
        sock, _addr = self._listener.accept()
        conn = _Connection(sock)
        self._connections[sock.fileno()] = conn
        self._ever_connected = True
        self._selector.register(sock, selectors.EVENT_READ, lambda _s: self._on_message(conn))

    def _drop_connection(self, conn: _Connection) -> None:
        self._selector.unregister(conn.sock)
        self._connections.pop(conn.sock.fileno(), None)
        for container in self._containers.values():
            container.waiters = [w for w in container.waiters if w[0] is not conn]
            if container.start_request and container.start_request[0] is conn:
                container.start_request = None
        self._execs.drop_connection(conn)
        conn.sock.close()

    def _reply(self, conn: _Connection, request_id: Any, body: dict[str, Any], fds: list[int] | None = None) -> None:
        try:
            protocol.send_blocking(conn.sock, {"id": request_id, **body}, fds)
        except OSError as err:
            log.warning("launcher.reply_failed", error=str(err))

    def _on_message(self, conn: _Connection) -> None:
        try:
            received = protocol.receive_blocking(conn.sock)
        except (OSError, ValueError) as err:
            log.warning("launcher.bad_message", error=str(err))
            received = None
        if received is None:
            self._drop_connection(conn)
            return
        message, fds = received
        for fd in fds:
            os.close(fd)
        request_id = message.get("id")
        handler = {
            "hello": self._op_hello,
            "start": self._op_start,
            "wait": self._op_wait,
            "adopt": self._op_adopt,
            "list": self._op_list,
            "forget": self._op_forget,
            "exec": self._op_exec,
        }.get(message.get("op", ""))
        if handler is None:
            self._reply(conn, request_id, {"error": f"unknown op {message.get('op')!r}"})
            return
        try:
            handler(conn, request_id, message)
        except Exception as err:  # noqa: BLE001 - one bad request must not take every container's parent down
            log.exception("launcher.request_failed", op=message.get("op"))
            self._reply(conn, request_id, {"error": f"{type(err).__name__}: {err}"})

    # -- operations ------------------------------------------------------

    def _op_hello(self, conn: _Connection, request_id: Any, _message: dict[str, Any]) -> None:
        self._reply(conn, request_id, {"pid": os.getpid(), "version": protocol.PROTOCOL_VERSION})

    def _op_start(self, conn: _Connection, request_id: Any, message: dict[str, Any]) -> None:
        spec = LaunchSpec.from_json(message["spec"])
        if spec.id in self._containers:
            self._reply(conn, request_id, {"error": f"container {spec.id} is already running"})
            return
        container = self._fork(spec)
        container.start_request = (conn, request_id)

    def _op_exec(self, conn: _Connection, request_id: Any, message: dict[str, Any]) -> None:
        spec = ExecSpec.from_json(message["spec"])
        container = self._containers.get(spec.container_id)
        if container is None or container.exit is not None or container.start_failed or container.start_request:
            self._reply(conn, request_id, not_running(spec.container_id))
            return
        self._execs.start(conn, request_id, spec, container.pidfd)

    def _op_wait(self, conn: _Connection, request_id: Any, message: dict[str, Any]) -> None:
        if "eid" in message:
            self._execs.wait(conn, request_id, message["eid"])
            return
        container = self._containers.get(message["cid"])
        if container is None:
            self._reply(conn, request_id, {"error": "unknown container", "unknown": True})
        elif container.finished:
            self._reply(conn, request_id, {"exit": container.exit})
        else:
            container.waiters.append((conn, request_id))

    def _op_adopt(self, conn: _Connection, request_id: Any, message: dict[str, Any]) -> None:
        container = self._containers.get(message["cid"])
        if container is None:
            self._reply(conn, request_id, {"error": "unknown container", "unknown": True})
            return
        names, fds = _handles(container)
        body = {"pid": container.pid, "finished": container.finished, "exit": container.exit, "fds": names}
        self._reply(conn, request_id, body, fds)

    def _op_list(self, conn: _Connection, request_id: Any, _message: dict[str, Any]) -> None:
        entries = [
            {"cid": c.id, "pid": c.pid, "finished": c.finished, "exit": c.exit}
            for c in self._containers.values()
            if not c.start_failed and c.start_request is None
        ]
        self._reply(conn, request_id, {"containers": entries})

    def _op_forget(self, conn: _Connection, request_id: Any, message: dict[str, Any]) -> None:
        if "eid" in message:
            self._execs.forget(conn, request_id, message["eid"], kill=bool(message.get("kill")))
            return
        container = self._containers.get(message["cid"])
        if container is not None and not container.finished:
            self._reply(conn, request_id, {"error": "container is still running"})
            return
        if container is not None:
            self._discard(container)
        self._reply(conn, request_id, {})

    # -- container lifecycle ---------------------------------------------

    def _fork(self, spec: LaunchSpec) -> _Container:
        stdio = open_stdio(tty=spec.tty, open_stdin=spec.open_stdin)
        status_r, status_w = os.pipe2(os.O_CLOEXEC)
        logfile = LogFile(spec.log_path, max_size=spec.log_max_size, max_files=spec.log_max_files)
        cgroup_fd = None
        if spec.cgroup is not None and spec.cgroup.v2_dir is not None:
            cgroup_fd = os.open(spec.cgroup.v2_dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            try:
                pid, pidfd = syscalls.clone_process(syscalls.CLONE_NEWPID, cgroup_fd)
            except OSError:
                logfile.close()
                stdio.close_all()
                os.close(status_r)
                os.close(status_w)
                raise
            if pid == 0:
                try:
                    signal.set_wakeup_fd(-1)
                    for signum in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGCHLD):
                        signal.signal(signum, signal.SIG_DFL)
                    run_container_process(spec, stdio.child, status_w)
                finally:
                    os._exit(125)
        finally:
            if cgroup_fd is not None:
                os.close(cgroup_fd)

        stdio.close_child_ends()
        os.close(status_w)
        container = _Container(
            id=spec.id,
            pid=pid,
            pidfd=pidfd,
            log=logfile,
            outputs=stdio.outputs,
            status_fd=status_r,
            pty_master=stdio.pty_master,
            start_request=None,
        )
        self._containers[spec.id] = container
        self._by_pid[pid] = container
        for fd in stdio.outputs:
            os.set_blocking(fd, False)
            self._selector.register(fd, selectors.EVENT_READ, lambda f, c=container: self._on_output(c, f))
        self._selector.register(
            status_r, selectors.EVENT_READ, lambda f, c=container, w=stdio.stdin_write: self._on_status(c, w)
        )
        return container

    def _on_status(self, container: _Container, stdin_write: int | None) -> None:
        assert container.status_fd is not None
        data = b""
        while True:
            chunk = os.read(container.status_fd, 65536)
            if not chunk:
                break
            data += chunk
        self._selector.unregister(container.status_fd)
        os.close(container.status_fd)
        container.status_fd = None
        request = container.start_request
        container.start_request = None
        if data:
            container.start_failed = True
            failure = protocol.decode(data)
            if stdin_write is not None:
                os.close(stdin_write)
            if request:
                self._reply(request[0], request[1], {"error": failure["message"], "exit_code": failure["exit_code"]})
            log.info("container.start_failed", cid=container.id, error=failure["message"])
        else:
            names, fds = _handles(container, stdin_write)
            if request:
                self._reply(request[0], request[1], {"pid": container.pid, "fds": names}, fds)
            if stdin_write is not None:
                os.close(stdin_write)
            log.info("container.exec", cid=container.id, pid=container.pid)
        self._maybe_finish(container)

    def _on_output(self, container: _Container, fd: int) -> None:
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

    def _on_signal(self, _: object) -> None:
        try:
            while os.read(self._wakeup_r, 4096):
                pass
        except BlockingIOError:
            pass
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            container = self._by_pid.pop(pid, None)
            if container is None:
                self._execs.reaped(pid, status)  # else an orphan we inherited as subreaper
                continue
            container.exit = exit_record(status)
            log.info("container.exited", cid=container.id, pid=pid, **container.exit)
            self._maybe_finish(container)

    def _maybe_finish(self, container: _Container) -> None:
        if not container.finished:
            return
        container.log.close()
        if container.pty_master is not None and container.pty_master not in container.outputs:
            os.close(container.pty_master)
            container.pty_master = None
        if container.start_failed:
            self._discard(container)
            return
        for conn, request_id in container.waiters:
            self._reply(conn, request_id, {"exit": container.exit})
        container.waiters.clear()

    def _discard(self, container: _Container) -> None:
        self._containers.pop(container.id, None)
        os.close(container.pidfd)


def _handles(container: _Container, stdin_write: int | None = None) -> tuple[list[str], list[int]]:
    """What the daemon gets of a container, named: its pidfd, its input, and copies of its output
    read ends. The daemon never reads those while the launcher lives; they keep the pipes open, so
    if the launcher dies the container's output does not hit a closed pipe and the daemon can
    take over writing its log."""
    handles: list[tuple[str, int]] = [("pidfd", container.pidfd)]
    if container.pty_master is not None:
        handles.append(("pty", container.pty_master))
    else:
        if stdin_write is not None:
            handles.append(("stdin", stdin_write))
        handles.extend((stream, fd) for fd, stream in container.outputs.items())
    return [name for name, _ in handles], [fd for _, fd in handles]


def lock_path_for(socket_path: str) -> str:
    return socket_path + ".lock"


def main(socket_path: str, ready_fd: int | None) -> int:
    # The lock tells a starting daemon whether a launcher is alive on this run dir.
    lock_fd = os.open(lock_path_for(socket_path), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        log.info("launcher.already_running", socket=socket_path)
        return 3
    syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 1)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    try:
        os.unlink(socket_path)
    except FileNotFoundError:
        pass
    listener.bind(socket_path)
    os.chmod(socket_path, 0o600)
    listener.listen(16)
    launcher = Launcher(listener)
    if ready_fd is not None:
        os.write(ready_fd, b"ready\n")
        os.close(ready_fd)
    try:
        launcher.serve()
    finally:
        try:
            os.unlink(socket_path)
        except FileNotFoundError:
            pass
        listener.close()
    return 0
