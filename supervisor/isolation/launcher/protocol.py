"""Messages between the daemon and the launcher.

One JSON object per SOCK_SEQPACKET message, so message boundaries are the
kernel's; file descriptors (pidfds, a pty master, a stdin pipe) ride along
as SCM_RIGHTS. Requests carry an `id` the reply echoes. Both sides use
these pure helpers; only the socket calls differ (blocking vs trio).
"""

from __future__ import annotations

import array
import json
import os
import socket
from typing import Any

MAX_MESSAGE = 1 << 20
MAX_FDS = 16
PROTOCOL_VERSION = 1


def encode(message: dict[str, Any]) -> bytes:
    data = json.dumps(message, separators=(",", ":")).encode()
    if len(data) > MAX_MESSAGE:
        raise ValueError(f"launcher message too large: {len(data)} bytes")
    return data


def decode(data: bytes) -> dict[str, Any]:
    message = json.loads(data)
    if not isinstance(message, dict):
        raise ValueError("launcher message is not a JSON object")
    return message


def fds_to_ancillary(fds: list[int]) -> list[tuple[int, int, bytes]]:
    if not fds:
        return []
    return [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]


def ancillary_space() -> int:
    return socket.CMSG_SPACE(MAX_FDS * array.array("i").itemsize)


def fds_from_ancillary(ancdata: list[tuple[int, int, bytes]]) -> list[int]:
    fds = array.array("i")
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(data) - (len(data) % fds.itemsize)
            fds.frombytes(data[:usable])
    return list(fds)


def send_blocking(sock: socket.socket, message: dict[str, Any], fds: list[int] | None = None) -> None:
    sock.sendmsg([encode(message)], fds_to_ancillary(fds or []))


def receive_blocking(sock: socket.socket) -> tuple[dict[str, Any], list[int]] | None:
    """The next message and its descriptors, or None when the peer has gone."""
    data, ancdata, _flags, _addr = sock.recvmsg(MAX_MESSAGE, ancillary_space(), socket.MSG_CMSG_CLOEXEC)
    fds = fds_from_ancillary(ancdata)
    if not data:
        for fd in fds:
            close_quietly(fd)
        return None
    return decode(data), fds


def close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass
