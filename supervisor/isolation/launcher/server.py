"""The launcher: a single-threaded fork server that parents every container.

The daemon starts it once per state root, in its own session, and talks
to it over a SOCK_SEQPACKET unix socket (see protocol.py). It forks each
container (already pid 1 of a fresh pid namespace; started, or prepared
and started later: containers.py; or hands it to a spare forked ahead:
spares.py), drains its output into the log file,
reaps it, keeps its exit status until the daemon says `forget`, and hands
the daemon a pidfd per container. It outlives a
crashed daemon and exits by itself once no daemon is connected and no
container or unacknowledged exit is left.

No trio, no threads: one selector loop, so forking is safe.
"""

from __future__ import annotations

import fcntl
import os
import selectors
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from supervisor.isolation import syscalls
from supervisor.isolation.launcher import protocol
from supervisor.isolation.launcher.containers import Containers, handles
from supervisor.isolation.launcher.execs import Execs, is_pidfd, not_running
from supervisor.isolation.launcher.journal import log
from supervisor.isolation.spec import ExecSpec, LaunchSpec, Membership

_FIRST_CONNECT_GRACE = 30.0


@dataclass
class _Connection:
    sock: socket.socket


class Launcher:
    def __init__(self, listener: socket.socket) -> None:
        self._listener = listener
        self._selector = selectors.DefaultSelector()
        self._connections: dict[int, _Connection] = {}
        self._ever_connected = False
        self._started_at = time.monotonic()
        self._wakeup_r, self._wakeup_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._containers = Containers(self._selector, self._reply)
        self._execs = Execs(self._selector, self._reply)

    # -- main loop -------------------------------------------------------

    def serve(self) -> None:
        signal.set_wakeup_fd(self._wakeup_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        self._selector.register(self._listener, selectors.EVENT_READ, self._accept)
        self._selector.register(self._wakeup_r, selectors.EVENT_READ, self._on_signal)
        log.info("launcher.ready", pid=os.getpid())
        try:
            while not self._should_exit():
                for key, _ in self._selector.select(timeout=self._select_timeout()):
                    key.data(key.fileobj)
        finally:
            self._containers.spares.close()
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
        self._containers.drop_connection(conn)
        self._containers.spares.drop_connection(conn)
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
        try:
            self._dispatch(conn, message, fds)
        finally:
            for fd in fds:
                os.close(fd)

    def _dispatch(self, conn: _Connection, message: dict[str, Any], fds: list[int]) -> None:
        request_id = message.get("id")
        handlers: dict[str, Callable[[_Connection, Any, dict[str, Any]], None]] = {
            "hello": self._op_hello,
            "start": self._op_start,
            "prepare": self._op_prepare,
            "go": lambda c, r, m: self._containers.go(c, r, m["cid"]),
            "spare": self._op_spare,
            "discard": self._op_discard,
            "wait": self._op_wait,
            "adopt": self._op_adopt,
            "list": self._op_list,
            "forget": self._op_forget,
            "exec": lambda c, r, m: self._op_exec(c, r, m, fds),
        }
        handler = handlers.get(message.get("op", ""))
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
        self._containers.start(conn, request_id, LaunchSpec.from_json(message["spec"]), prepare=False)

    def _op_prepare(self, conn: _Connection, request_id: Any, message: dict[str, Any]) -> None:
        self._containers.start(conn, request_id, LaunchSpec.from_json(message["spec"]), prepare=True)

    def _op_spare(self, conn: _Connection, request_id: Any, message: dict[str, Any]) -> None:
        membership = Membership.from_json(message.get("cgroup"))
        tree = message.get("tree")
        ahead = (LaunchSpec.from_json(tree["build"]), LaunchSpec.from_json(tree["serves"])) if tree else None
        self._containers.spares.fork(conn, request_id, message["cid"], membership, ahead)

    def _op_discard(self, conn: _Connection, request_id: Any, message: dict[str, Any]) -> None:
        if message["cid"] in self._containers.spares:
            self._containers.spares.discard(conn, request_id, message["cid"])
        else:
            self._containers.discard(conn, request_id, message["cid"])

    def _op_exec(self, conn: _Connection, request_id: Any, message: dict[str, Any], fds: list[int]) -> None:
        spec = ExecSpec.from_json(message["spec"])
        container = self._containers.get(spec.container_id)
        if container is None and fds and is_pidfd(fds[0]):
            # Started by a launcher that died: the daemon, its subreaper now, lends its pidfd.
            self._execs.start(conn, request_id, spec, fds[0])
            return
        if container is not None and container.parked and container.exit is None:
            # The daemon only execs into what it started: the go byte is on its way.
            self._containers.when_started(container, lambda: self._op_exec(conn, request_id, message, []))
            return
        if container is None or container.exit is not None or not container.started:
            self._reply(conn, request_id, not_running(spec.container_id))
            return
        self._execs.start(conn, request_id, spec, container.pidfd)

    def _op_wait(self, conn: _Connection, request_id: Any, message: dict[str, Any]) -> None:
        if "eid" in message:
            self._execs.wait(conn, request_id, message["eid"])
        else:
            self._containers.wait(conn, request_id, message["cid"])

    def _op_adopt(self, conn: _Connection, request_id: Any, message: dict[str, Any]) -> None:
        container = self._containers.get(message["cid"])
        if container is None or not container.started:
            self._reply(conn, request_id, {"error": "unknown container", "unknown": True})
            return
        names, fds = handles(container)
        body = {"pid": container.pid, "finished": container.finished, "exit": container.exit, "fds": names}
        self._reply(conn, request_id, body, fds)

    def _op_list(self, conn: _Connection, request_id: Any, message: dict[str, Any]) -> None:
        limbo = self._containers.in_limbo()
        if limbo:
            # A new daemon's restore asks this first: answered once each released parked container has
            # started (listed, and adopted) or exited (not), not while it is still neither.
            self._containers.when_started(limbo[0], lambda: self._op_list(conn, request_id, message))
            return
        entries = [
            {"cid": c.id, "pid": c.pid, "finished": c.finished, "exit": c.exit} for c in self._containers.started()
        ]
        self._reply(conn, request_id, {"containers": entries})

    def _op_forget(self, conn: _Connection, request_id: Any, message: dict[str, Any]) -> None:
        if "eid" in message:
            self._execs.forget(conn, request_id, message["eid"], kill=bool(message.get("kill")))
        else:
            self._containers.forget(conn, request_id, message["cid"])

    # -- signals -----------------------------------------------------------

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
            if not self._containers.reaped(pid, status) and not self._containers.spares.reaped(pid):
                self._execs.reaped(pid, status)  # else an orphan we inherited as subreaper


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
