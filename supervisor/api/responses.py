"""What a route handler returns; the server (http.py) turns each into bytes on the wire."""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import trio

Headers = Sequence[tuple[str, str]]

RAW_STREAM = "application/vnd.docker.raw-stream"


@dataclass(frozen=True, slots=True)
class JSONResponse:
    body: Any
    status: int = 200
    headers: Headers = ()

    def encode(self) -> bytes:
        # Compact plus a trailing newline: what Go's json.Encoder (and so dockerd) sends.
        return json.dumps(self.body, separators=(",", ":")).encode() + b"\n"


@dataclass(frozen=True, slots=True)
class EmptyResponse:
    status: int = 204
    headers: Headers = ()


@dataclass(frozen=True, slots=True)
class TextResponse:
    """A complete body known up front; also the one to use for bytes (set content_type)."""

    text: str | bytes
    status: int = 200
    content_type: str = "text/plain; charset=utf-8"
    headers: Headers = ()

    def encode(self) -> bytes:
        return self.text.encode() if isinstance(self.text, str) else self.text


@dataclass(frozen=True, slots=True)
class StreamResponse:
    """A body produced over time (logs -f, wait, events, pull progress).

    The status and headers go out before the first chunk is asked for, each
    chunk is sent as soon as it is yielded, and the iterator is closed (its
    `finally` runs) when the client goes away.
    """

    chunks: Callable[[], AsyncIterable[bytes]] | AsyncIterable[bytes]
    status: int = 200
    # Most Docker streams are JSON lines (wait, events, pull, build, stats).
    content_type: str = "application/json"
    headers: Headers = ()
    # The body is one chunk (wait): it goes out with the end of the message, in one write.
    single: bool = False

    def open(self) -> AsyncIterator[bytes]:
        source = self.chunks() if callable(self.chunks) else self.chunks
        return aiter(source)


@dataclass(slots=True)
class RawStream:
    """The client connection after a hijack (attach, exec start): plain bytes both ways.

    One task may receive while another sends (trio allows one of each at a time).
    """

    _stream: trio.SocketStream
    # Bytes the client sent right after its request, already read off the socket.
    _leftover: bytes = b""

    async def receive_some(self, max_bytes: int = 65536) -> bytes:
        """Up to max_bytes from the client; b"" once it has half-closed or gone."""
        if self._leftover:
            data, self._leftover = self._leftover[:max_bytes], self._leftover[max_bytes:]
            return data
        try:
            return await self._stream.receive_some(max_bytes)
        except trio.BrokenResourceError:
            return b""

    async def send_all(self, data: bytes) -> None:
        await self._stream.send_all(data)

    async def send_eof(self) -> None:
        """Half-close: the docker CLI waits for EOF on its read side before exiting."""
        await self._stream.send_eof()

    async def aclose(self) -> None:
        await self._stream.aclose()


@dataclass(frozen=True, slots=True)
class HijackResponse:
    """Take the connection over: 101 UPGRADED if the client asked, else 200 then raw bytes.

    The connection is closed once `handler` returns.
    """

    handler: Callable[[RawStream], Awaitable[None]]
    content_type: str = RAW_STREAM


Response = JSONResponse | EmptyResponse | TextResponse | StreamResponse | HijackResponse
