"""The daemon's side of the launcher: spawn or reconnect, then request/reply.

`open_launcher(run_dir)` is an async context manager yielding a
`LauncherClient`; a reader task in its own nursery routes each reply to
the request that awaits it. If the launcher goes away, every pending and
later request raises `LauncherLost`.
"""

from __future__ import annotations

import fcntl
import itertools
import os
import socket as stdlib_socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import structlog
import trio

from supervisor.errors import Conflict, StartFailed
from supervisor.isolation.launcher import protocol
from supervisor.isolation.launcher.replies import (
    Adopted,
    ExecStarted,
    ExitStatus,
    Known,
    Parked,
    Started,
    parked_from_reply,
    started_from_reply,
)
from supervisor.isolation.launcher.server import lock_path_for
from supervisor.isolation.spec import ExecSpec, LaunchSpec, Membership

log = structlog.get_logger(__name__)

_CONNECT_ATTEMPTS = 200
# How long a cancelled exec request waits for the launcher to take its kill.
_ABANDON_TIMEOUT = 5.0


class LauncherLost(Exception):
    """The launcher closed its socket or died; its containers may still run."""


class NotPrepared(Exception):
    """No prepared container to start (or a launcher from before `prepare` existed)."""


class _Pending:
    def __init__(self) -> None:
        self.event = trio.Event()
        self.reply: dict[str, Any] | None = None
        self.fds: list[int] = []


class LauncherClient:
    """Requests to the launcher; reconnects (starting a new launcher) when the old one is gone.

    A request in flight when the launcher dies raises LauncherLost; the next
    request connects again. Containers of a dead launcher are not known to
    its successor: the daemon follows those itself (reactor/orphans.py).
    """

    def __init__(self, run_dir: Path, nursery: trio.Nursery) -> None:
        self._run_dir = run_dir
        self._nursery = nursery
        self._sock: trio.socket.SocketType | None = None
        self.pid = 0
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._send_lock = trio.Lock()
        self._connect_lock = trio.Lock()

    @property
    def connected(self) -> bool:
        return self._sock is not None

    async def connect(self) -> None:
        """Connect to the run dir's launcher, starting one if none is alive; no-op when connected."""
        async with self._connect_lock:
            if self._sock is not None:
                return
            sock = await _connect_or_spawn(self._run_dir)
            self._sock = sock
            self._nursery.start_soon(self._read_replies, sock)
            self.pid = int((await self.request("hello"))[0]["pid"])
            log.info("launcher.connected", pid=self.pid)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    async def _read_replies(self, sock: trio.socket.SocketType) -> None:
        try:
            while True:
                data, ancdata, _flags, _addr = await sock.recvmsg(
                    protocol.MAX_MESSAGE, protocol.ancillary_space(), stdlib_socket.MSG_CMSG_CLOEXEC
                )
                fds = protocol.fds_from_ancillary(ancdata)
                if not data:
                    break
                reply = protocol.decode(data)
                reply_id = reply.get("id")
                pending = self._pending.pop(reply_id, None) if isinstance(reply_id, int) else None
                if pending is None:
                    for fd in fds:
                        protocol.close_quietly(fd)
                    continue
                pending.reply, pending.fds = reply, fds
                pending.event.set()
        except (OSError, trio.ClosedResourceError) as err:
            log.warning("launcher.connection_error", error=str(err))
        finally:
            if self._sock is sock:
                self._sock = None
                sock.close()
                for pending in self._pending.values():
                    pending.event.set()
                self._pending.clear()
                log.warning("launcher.lost", pid=self.pid)

    async def request(
        self, op: str, send_fds: list[int] | None = None, **fields: Any
    ) -> tuple[dict[str, Any], list[int]]:
        if self._sock is None and op != "hello":
            await self.connect()
        sock = self._sock
        if sock is None:
            raise LauncherLost("the launcher is gone")
        request_id = next(self._ids)
        pending = _Pending()
        self._pending[request_id] = pending
        try:
            async with self._send_lock:
                message = protocol.encode({"id": request_id, "op": op, **fields})
                await sock.sendmsg([message], protocol.fds_to_ancillary(send_fds or []))
            await pending.event.wait()
        except OSError:
            raise LauncherLost("the launcher is gone") from None
        finally:
            self._pending.pop(request_id, None)
        if pending.reply is None:
            raise LauncherLost("the launcher is gone")
        return pending.reply, pending.fds

    async def start(self, spec: LaunchSpec) -> Started:
        """Fork and start `spec`; answered at the process's point of no return before its exec."""
        return started_from_reply(*await self.request("start", spec=spec.to_json()))

    async def prepare(self, spec: LaunchSpec) -> Parked:
        """Fork `spec` and park it before its exec, until its go byte or `discard` (launcher/containers.py).

        Raises StartFailed as a start would; NotPrepared if this launcher cannot prepare.
        """
        reply, fds = await self.request("prepare", spec=spec.to_json())
        if str(reply.get("error", "")).startswith("unknown op"):
            raise NotPrepared(reply["error"])
        return parked_from_reply(reply, fds)

    async def spare(
        self, cid: str, cgroup: Membership | None, tree: tuple[LaunchSpec, LaunchSpec] | None = None
    ) -> None:
        """Fork a spare first process for the container `cid` will be, in its cgroup (launcher/spares.py).

        `tree` is (build, serves): the spare builds `build`'s tree ahead and is handed over with it
        only to a container whose spec has the tree of `serves`. NotPrepared if this launcher
        cannot; `discard(cid)` kills it.
        """
        reply, _ = await self.request(
            "spare",
            cid=cid,
            cgroup=None if cgroup is None else asdict(cgroup),
            tree=None if tree is None else {"build": tree[0].to_json(), "serves": tree[1].to_json()},
        )
        if "error" in reply:
            if str(reply["error"]).startswith("unknown op"):
                raise NotPrepared(reply["error"])
            raise RuntimeError(reply["error"])

    async def go(self, cid: str) -> Started:
        """Start a prepared container; NotPrepared if there is none parked under `cid`."""
        reply, fds = await self.request("go", cid=cid)
        if reply.get("not_prepared"):
            raise NotPrepared(reply["error"])
        return started_from_reply(reply, fds)

    async def discard(self, cid: str) -> None:
        """Kill a prepared container or a spare; returns once it is reaped."""
        reply, _ = await self.request("discard", cid=cid)
        if "error" in reply:
            raise RuntimeError(reply["error"])

    async def wait(self, cid: str) -> ExitStatus | None:
        """The exit status once the container has exited and its output is in the log; None if unknown."""
        reply, _ = await self.request("wait", cid=cid)
        if reply.get("unknown"):
            return None
        if "error" in reply:
            raise RuntimeError(reply["error"])
        return ExitStatus.from_json(reply["exit"])

    async def adopt(self, cid: str) -> Adopted | None:
        reply, fds = await self.request("adopt", cid=cid)
        if reply.get("unknown"):
            return None
        handles = dict(zip(reply["fds"], fds, strict=True))
        return Adopted(
            pid=reply["pid"],
            pidfd=handles["pidfd"],
            finished=reply["finished"],
            exit=ExitStatus.from_json(reply["exit"]) if reply.get("exit") else None,
            pty_fd=handles.get("pty"),
            outputs={name: fd for name, fd in handles.items() if name in ("stdout", "stderr")},
        )

    async def known(self) -> list[Known]:
        reply, _ = await self.request("list")
        return [
            Known(
                cid=e["cid"],
                pid=e["pid"],
                finished=e["finished"],
                exit=ExitStatus.from_json(e["exit"]) if e.get("exit") else None,
            )
            for e in reply["containers"]
        ]

    async def forget(self, cid: str) -> None:
        reply, _ = await self.request("forget", cid=cid)
        if "error" in reply:
            raise RuntimeError(reply["error"])

    async def exec(self, spec: ExecSpec, container_pidfd: int | None = None) -> ExecStarted:
        """Start `spec` in its running container; answered once the command is exec'd.

        `container_pidfd` is for a container this launcher did not start (its own launcher died):
        the launcher enters the container through it.

        Raises Conflict if the container's process is not running, StartFailed
        (exit code 127 not found, 126 otherwise) if the exec failed. If the
        caller is cancelled while waiting, the process is killed and
        forgotten (it may be stuck before its exec, on a container's file).
        """
        try:
            lent = None if container_pidfd is None else [container_pidfd]
            reply, fds = await self.request("exec", send_fds=lent, spec=spec.to_json())
        except trio.Cancelled:
            with trio.CancelScope(shield=True), trio.move_on_after(_ABANDON_TIMEOUT):
                try:
                    await self.forget_exec(spec.exec_id, kill=True)
                except LauncherLost:
                    pass
            raise
        if "error" in reply:
            for fd in fds:
                protocol.close_quietly(fd)
            if reply.get("not_running"):
                raise Conflict(reply["error"])
            raise StartFailed(reply["error"], int(reply.get("exit_code", 126)))
        named = dict(zip(reply["fds"], fds, strict=False))
        for fd in fds[len(reply["fds"]) :]:
            protocol.close_quietly(fd)
        return ExecStarted(
            pid=reply["pid"],
            pidfd=named["pidfd"],
            stdin_fd=named.get("stdin"),
            stdout_fd=named.get("stdout"),
            stderr_fd=named.get("stderr"),
            pty_fd=named.get("pty"),
        )

    async def wait_exec(self, exec_id: str) -> ExitStatus | None:
        """The exec's exit status once the launcher has reaped it; None if it does not know the exec."""
        reply, _ = await self.request("wait", eid=exec_id)
        if reply.get("unknown"):
            return None
        if "error" in reply:
            raise RuntimeError(reply["error"])
        return ExitStatus.from_json(reply["exit"])

    async def forget_exec(self, exec_id: str, *, kill: bool = False) -> None:
        """Drop a finished exec's status; with `kill`, SIGKILL it if it still runs and drop it once reaped."""
        reply, _ = await self.request("forget", eid=exec_id, kill=kill)
        if "error" in reply:
            raise RuntimeError(reply["error"])


async def _connect(path: Path) -> trio.socket.SocketType | None:
    sock = trio.socket.socket(stdlib_socket.AF_UNIX, stdlib_socket.SOCK_SEQPACKET)
    try:
        await sock.connect(str(path))
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        return None
    return sock


def _launcher_alive(socket_path: Path) -> bool:
    try:
        fd = os.open(lock_path_for(str(socket_path)), os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


async def _spawn(socket_path: Path, log_path: Path) -> None:
    ready_r, ready_w = os.pipe()
    with open(log_path, "ab") as log_file:
        process = await trio.lowlevel.open_process(
            [
                sys.executable,
                "-m",
                "supervisor.isolation.launcher",
                "--socket",
                str(socket_path),
                "--ready-fd",
                str(ready_w),
                "--detach",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            pass_fds=(ready_w,),
            start_new_session=True,
        )
    os.close(ready_w)
    async with trio.lowlevel.FdStream(ready_r) as ready:
        line = await ready.receive_some(64)
    # The first process only forks the real launcher and exits, so no daemon ever parents it.
    code = await process.wait()
    if not line:
        raise RuntimeError(f"the launcher exited before it was ready (status {code}); see {log_path}")
    log.info("launcher.spawned", pid=process.pid)


async def _connect_or_spawn(run_dir: Path) -> trio.socket.SocketType:
    socket_path = run_dir / "launcher.sock"
    for _attempt in range(_CONNECT_ATTEMPTS):
        sock = await _connect(socket_path)
        if sock is not None:
            return sock
        if _launcher_alive(socket_path):
            # Starting up or shutting down: either way it settles within milliseconds.
            await trio.sleep(0.01)
            continue
        await _spawn(socket_path, run_dir / "launcher.log")
    raise RuntimeError(f"cannot reach or start the launcher at {socket_path}")


@asynccontextmanager
async def open_launcher(run_dir: Path) -> AsyncIterator[LauncherClient]:
    """Connect to this run dir's launcher, starting one if none is alive."""
    async with trio.open_nursery() as nursery:
        client = LauncherClient(run_dir, nursery)
        try:
            try:
                await client.connect()
            except LauncherLost:
                raise RuntimeError(f"the launcher in {run_dir} closed the connection") from None
            yield client
        finally:
            # Stop the reader before closing the socket it waits on.
            nursery.cancel_scope.cancel()
    client.close()
