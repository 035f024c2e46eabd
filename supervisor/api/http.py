"""HTTP/1.1 server for the Docker-compatible API: h11 on trio streams over a unix socket.

Generic only: routing, request parsing, response framing, streaming with
disconnect detection, and connection hijacking. The Docker routes live elsewhere.
"""

from __future__ import annotations

import os
import socket
import stat
from functools import partial
from pathlib import Path

import structlog
import trio

from supervisor.api.connection import MAX_BODY, serve_connection
from supervisor.api.request import Request
from supervisor.api.responses import (
    EmptyResponse,
    HijackResponse,
    JSONResponse,
    RawStream,
    Response,
    StreamResponse,
    TextResponse,
)
from supervisor.api.router import Handler, Router

__all__ = [
    "EmptyResponse",
    "Handler",
    "HijackResponse",
    "JSONResponse",
    "MAX_BODY",
    "RawStream",
    "Request",
    "Response",
    "Router",
    "StreamResponse",
    "TextResponse",
    "serve_unix",
]

log = structlog.get_logger(__name__)


async def serve_unix(
    socket_path: Path,
    router: Router,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `router` on a unix socket (mode 0660) until cancelled, then remove the socket."""
    socket_path = Path(socket_path)
    await _remove_stale_socket(socket_path)
    with trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        # Bind under a temporary name and rename into place, so the socket is
        # never reachable with umask-derived permissions.
        tmp = socket_path.with_name(f".{socket_path.name}.{os.getpid()}")
        tmp.unlink(missing_ok=True)
        await sock.bind(str(tmp))
        try:
            os.chmod(tmp, 0o660)
            os.replace(tmp, socket_path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        ours = _identity(socket_path)
        try:
            sock.listen(socket.SOMAXCONN)
            listener = trio.SocketListener(sock)
            async with trio.open_nursery() as nursery:
                # serve_listeners rides out EMFILE and friends instead of dying.
                await nursery.start(trio.serve_listeners, partial(serve_connection, router=router), [listener])
                log.info("api.listening", socket=str(socket_path))
                task_status.started()
        finally:
            # Leave a socket that a newer daemon bound in our place alone.
            if _identity(socket_path) == ours:
                socket_path.unlink(missing_ok=True)


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


async def _remove_stale_socket(path: Path) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise FileExistsError(f"{path} exists and is not a socket; refusing to replace it")
    with trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            await probe.connect(str(path))
        except (ConnectionRefusedError, FileNotFoundError):
            path.unlink(missing_ok=True)
            return
    raise FileExistsError(f"another daemon is already listening on {path}")
