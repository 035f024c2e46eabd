"""A test-side async HTTP client on one connection, for byte-level checks."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h11
import trio


class RawConn:
    """A test-side async HTTP client on one connection, for byte-level checks."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.h11 = h11.Connection(h11.CLIENT)

    @classmethod
    async def open(cls, path: Path) -> RawConn:
        return cls(await trio.open_unix_socket(str(path)))

    async def send_request(
        self, method: str, target: str, headers: Sequence[tuple[str, str]] = (), body: bytes = b""
    ) -> None:
        hdrs = [("Host", "test"), *headers]
        if body:
            hdrs.append(("Content-Length", str(len(body))))
        data = self.h11.send(h11.Request(method=method, target=target, headers=hdrs))
        if body:
            data += self.h11.send(h11.Data(data=body))
        data += self.h11.send(h11.EndOfMessage())
        await self.stream.send_all(data)

    async def next_event(self) -> Any:
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            self.h11.receive_data(await self.stream.receive_some(65536))

    async def read_response(self) -> tuple[h11.Response, bytes]:
        head = await self.next_event()
        body = b""
        while type(event := await self.next_event()) is not h11.EndOfMessage:
            body += event.data
        self.h11.start_next_cycle()
        return head, body

    async def read_until_eof(self) -> bytes:
        out = b""
        while data := await self.stream.receive_some(65536):
            out += data
        return out

    async def aclose(self) -> None:
        await self.stream.aclose()
