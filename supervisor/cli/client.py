"""Synchronous client for the corral daemon: blocking unix socket, h11 framing.

Used by the `corral` CLI and by tests. One Client per thread; it keeps one
idle keep-alive connection and reuses it while the daemon keeps it open.
"""

from __future__ import annotations

import json as jsonlib
import socket
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import h11

import supervisor

DEFAULT_SOCKET = Path("/run/corral/corral.sock")
_RECV_SIZE = 64 * 1024
_FRAME_HEAD = struct.Struct(">BxxxL")
_USER_AGENT = f"corral-cli/{supervisor.__version__}"

QueryValue = str | int | bool | None | Mapping[str, Any] | list[Any]


class ClientError(Exception):
    """Talking to the daemon failed; `str(err)` is meant for the user."""


class DaemonUnreachable(ClientError):
    pass


class APIError(ClientError):
    """The daemon answered with an error where the caller could not take one (hijack)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def resolve_socket(host_flag: str | None, env: Mapping[str, str]) -> Path:
    """`-H`, then CORRAL_HOST, then DOCKER_HOST, then the default socket; unix:// only."""
    host = host_flag or env.get("CORRAL_HOST") or env.get("DOCKER_HOST")
    if not host:
        return DEFAULT_SOCKET
    scheme, sep, rest = host.partition("://")
    if not sep or scheme != "unix":
        raise ClientError(f"unsupported daemon address {host!r}: corral listens on unix sockets only (unix:///path)")
    if not rest.startswith("/"):
        raise ClientError(f"invalid daemon address {host!r}: expected unix:///absolute/path")
    return Path(rest)


def encode_frame(stream: int, data: bytes) -> bytes:
    """One frame of Docker's multiplexed stream (0 stdin, 1 stdout, 2 stderr)."""
    return _FRAME_HEAD.pack(stream, len(data)) + data


def iter_frames(read: Callable[[int], bytes]) -> Iterator[tuple[int, bytes]]:
    """(stream, payload) per frame; `read(n)` returns up to n bytes, b"" at EOF."""
    while True:
        head = _read_exactly(read, _FRAME_HEAD.size)
        if not head:
            return
        if len(head) < _FRAME_HEAD.size:
            raise EOFError("stream ended inside a frame header")
        stream, length = _FRAME_HEAD.unpack(head)
        payload = _read_exactly(read, length)
        if len(payload) < length:
            raise EOFError(f"stream ended inside a frame ({len(payload)} of {length} bytes)")
        yield stream, payload


def _read_exactly(read: Callable[[int], bytes], n: int) -> bytes:
    parts: list[bytes] = []
    got = 0
    while got < n:
        chunk = read(n - got)
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return parts[0] if len(parts) == 1 else b"".join(parts)


@dataclass(frozen=True, slots=True)
class ClientResponse:
    status: int
    # Lower-cased names; repeated headers joined with ", ".
    headers: dict[str, str]
    body: bytes

    @property
    def ok(self) -> bool:
        return self.status < 400

    def json(self) -> Any:
        return jsonlib.loads(self.body) if self.body else None

    @property
    def message(self) -> str:
        """The error text of a Docker-style `{"message": ...}` body."""
        return _error_message(self.body)


@dataclass(slots=True)
class _Conn:
    sock: socket.socket
    h11: h11.Connection = field(default_factory=lambda: h11.Connection(h11.CLIENT))

    def next_event(self) -> Any:
        while True:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as err:
                raise ClientError(f"bad response from the daemon: {err}") from None
            if event is not h11.NEED_DATA:
                return event
            try:
                data = self.sock.recv(_RECV_SIZE)
            except ConnectionResetError:
                data = b""  # h11 then reports where in the message it happened
            self.h11.receive_data(data)

    def reusable(self) -> bool:
        return self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE

    def alive(self) -> bool:
        # An idle keep-alive connection the daemon closed (restart) reads as EOF. The peek must not
        # wait: with a timeout set on the socket, Python would wait it out before MSG_DONTWAIT applies.
        timeout = self.sock.gettimeout()
        self.sock.settimeout(0)
        try:
            return self.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
        except BlockingIOError:
            return True
        except OSError:
            return False
        finally:
            self.sock.settimeout(timeout)


class StreamingResponse:
    """A response whose body is read as it arrives (logs -f, events, wait)."""

    def __init__(self, conn: _Conn, head: h11.Response) -> None:
        self.status: int = head.status_code
        self.headers: dict[str, str] = _header_dict(head.headers)
        self._conn = conn
        self._buffer = b""
        self.complete = False

    @property
    def ok(self) -> bool:
        return self.status < 400

    def iter_chunks(self) -> Iterator[bytes]:
        if self._buffer:
            data, self._buffer = self._buffer, b""
            yield data
        while not self.complete:
            event = self._conn.next_event()
            if type(event) is h11.Data:
                yield bytes(event.data)
            elif type(event) is h11.EndOfMessage:
                self.complete = True

    def read(self, n: int) -> bytes:
        """Up to n bytes of body, b"" at its end; suits `iter_frames(resp.read)`."""
        while not self._buffer and not self.complete:
            event = self._conn.next_event()
            if type(event) is h11.Data:
                self._buffer = bytes(event.data)
            elif type(event) is h11.EndOfMessage:
                self.complete = True
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data


class HijackedConnection:
    """The raw connection after `101 UPGRADED`: stdin out, (framed) output in."""

    def __init__(self, sock: socket.socket, leftover: bytes) -> None:
        self._sock = sock
        self._leftover = leftover

    @property
    def has_buffered(self) -> bool:
        """Bytes already read off the socket: call recv() before select() on fileno()."""
        return bool(self._leftover)

    def recv(self, n: int) -> bytes:
        if self._leftover:
            data, self._leftover = self._leftover[:n], self._leftover[n:]
            return data
        return self._sock.recv(n)

    def sendall(self, data: bytes) -> None:
        self._sock.sendall(data)

    def close_write(self) -> None:
        """Half-close: tells the container its stdin ended."""
        self._sock.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._sock.close()

    def fileno(self) -> int:
        return self._sock.fileno()

    def settimeout(self, timeout: float | None) -> None:
        self._sock.settimeout(timeout)

    def __enter__(self) -> HijackedConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Client:
    def __init__(self, socket_path: str | Path, api_version: str = "1.41") -> None:
        self.socket_path = Path(socket_path)
        self.api_version = api_version
        self._idle: _Conn | None = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._idle is not None:
            self._idle.sock.close()
            self._idle = None

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, QueryValue] | None = None,
        json: Any = None,
        body: bytes | Iterable[bytes] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> ClientResponse:
        with self.stream(method, path, query=query, json=json, body=body, headers=headers, timeout=timeout) as resp:
            data = b"".join(resp.iter_chunks())
            return ClientResponse(resp.status, resp.headers, data)

    @contextmanager
    def stream(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, QueryValue] | None = None,
        json: Any = None,
        body: bytes | Iterable[bytes] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Iterator[StreamingResponse]:
        conn = self._checkout(timeout)
        try:
            self._send(conn, method, path, query, json, body, headers, ())
            head = conn.next_event()
            while type(head) is h11.InformationalResponse:  # 100 Continue
                head = conn.next_event()
            resp = StreamingResponse(conn, head)
            yield resp
        except BaseException:
            conn.sock.close()
            raise
        if resp.complete and conn.reusable():
            conn.h11.start_next_cycle()
            self._checkin(conn)
        else:
            conn.sock.close()

    def hijack(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, QueryValue] | None = None,
        json: Any = None,
        timeout: float | None = None,
    ) -> HijackedConnection:
        """Send the request asking to upgrade (attach, exec start); raises APIError unless 101."""
        conn = self._checkout(timeout)
        try:
            upgrade = (("Connection", "Upgrade"), ("Upgrade", "tcp"))
            self._send(conn, method, path, query, json, None, None, upgrade)
            head = conn.next_event()
            if type(head) is h11.InformationalResponse and head.status_code == 101:
                leftover, _ = conn.h11.trailing_data
                return HijackedConnection(conn.sock, leftover)
            resp = StreamingResponse(conn, head)
            raise APIError(resp.status, _error_message(b"".join(resp.iter_chunks())))
        except BaseException:
            conn.sock.close()
            raise

    def _checkout(self, timeout: float | None) -> _Conn:
        conn, self._idle = self._idle, None
        if conn is not None and not conn.alive():
            conn.sock.close()
            conn = None
        if conn is None:
            conn = _Conn(self._connect())
        conn.sock.settimeout(timeout)
        return conn

    def _checkin(self, conn: _Conn) -> None:
        if self._idle is not None:
            self._idle.sock.close()
        self._idle = conn

    def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(str(self.socket_path))
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
            raise DaemonUnreachable(
                f"cannot connect to the corral daemon at unix://{self.socket_path}: is it running?"
            ) from None
        except PermissionError:
            sock.close()
            raise DaemonUnreachable(
                f"permission denied connecting to the corral daemon at unix://{self.socket_path}"
            ) from None
        except BaseException:
            sock.close()
            raise
        return sock

    def _send(
        self,
        conn: _Conn,
        method: str,
        path: str,
        query: Mapping[str, QueryValue] | None,
        json: Any,
        body: bytes | Iterable[bytes] | None,
        headers: Mapping[str, str] | None,
        extra: Iterable[tuple[str, str]],
    ) -> None:
        target = f"/v{self.api_version}{quote(path, safe=_PATH_SAFE)}"
        if query:
            target += "?" + urlencode(_query_pairs(query))
        hdrs: list[tuple[str, str]] = [("Host", "corral"), ("User-Agent", _USER_AGENT)]
        if json is not None:
            body = jsonlib.dumps(json).encode()
            hdrs.append(("Content-Type", "application/json"))
        if isinstance(body, bytes):
            hdrs.append(("Content-Length", str(len(body))))
        elif body is not None:
            hdrs.append(("Transfer-Encoding", "chunked"))
        hdrs.extend((headers or {}).items())
        hdrs.extend(extra)
        out = conn.h11.send(h11.Request(method=method, target=target, headers=hdrs)) or b""
        if isinstance(body, bytes):
            if body:
                out += conn.h11.send(h11.Data(data=body)) or b""
        elif body is not None:
            conn.sock.sendall(out)
            for chunk in body:
                if chunk:
                    conn.sock.sendall(conn.h11.send(h11.Data(data=chunk)) or b"")
            out = b""
        out += conn.h11.send(h11.EndOfMessage()) or b""
        conn.sock.sendall(out)


# RFC 3986 pchar plus '/': image references (`user/app:v1`) pass through unescaped.
_PATH_SAFE = "/:@!$&'()*+,;=-._~"


def _query_pairs(query: Mapping[str, QueryValue]) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for key, value in query.items():
        if value is None:
            continue
        if isinstance(value, list):
            pairs.extend((key, str(v)) for v in value)
        elif isinstance(value, bool):
            pairs.append((key, "1" if value else "0"))
        elif isinstance(value, Mapping):
            pairs.append((key, jsonlib.dumps(value)))
        else:
            pairs.append((key, str(value)))
    return pairs


def _header_dict(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in raw:
        key, text = name.decode("latin-1"), value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return headers


def _error_message(body: bytes) -> str:
    try:
        message = jsonlib.loads(body)["message"]
        if isinstance(message, str):
            return message
    except (ValueError, KeyError, TypeError):
        pass
    return body.decode(errors="replace").strip()
