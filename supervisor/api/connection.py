"""One client connection: h11 request/response cycles with keep-alive, streaming and hijack."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, unquote

import h11
import structlog
import trio

from supervisor.api.request import Request
from supervisor.api.responses import (
    EmptyResponse,
    Headers,
    HijackResponse,
    JSONResponse,
    RawStream,
    Response,
    StreamResponse,
    TextResponse,
)
from supervisor.api.router import Route, Router, split_version
from supervisor.errors import CorralError

log = structlog.get_logger("supervisor.api.http")

MAX_BODY = 64 * 1024 * 1024
_RECEIVE_SIZE = 64 * 1024
# Registry auth headers (X-Registry-Config) can be far larger than h11's 16 KiB default.
_MAX_HEAD = 1024 * 1024
# What a handler may leave unread and still have the connection reused.
_MAX_DRAIN = 1024 * 1024
_RESPONSE_TYPES = (JSONResponse, EmptyResponse, TextResponse, StreamResponse, HijackResponse)
_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}
# Public in h11 but missing from its __all__.
_MIGHT_SWITCH = h11.MIGHT_SWITCH_PROTOCOL  # type: ignore[attr-defined]


class PayloadTooLarge(CorralError):
    status = 413


class BadBody(CorralError):
    """The client broke the body's framing or hung up part-way through it."""

    status = 400


async def serve_connection(stream: trio.SocketStream, router: Router) -> None:
    async with stream:
        try:
            await _Connection(stream, router).run()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client went away mid-exchange; nothing to tell it
        except Exception:
            # One broken exchange must never take the server down.
            log.error("api.connection_failed", exc_info=True)


class _Connection:
    """One client connection: a keep-alive loop of request/response cycles."""

    def __init__(self, stream: trio.SocketStream, router: Router) -> None:
        self._stream = stream
        self._router = router
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_HEAD)

    async def run(self) -> None:
        while True:
            try:
                event = await self._next_event()
            except h11.RemoteProtocolError as err:
                await self._reject(err)
                return
            if type(event) is not h11.Request:
                return  # ConnectionClosed between requests: the normal end
            if not await self._exchange(event):
                return
            if not await self._discard_unread_body():
                return
            if self._h11.our_state is not h11.DONE or self._h11.their_state is not h11.DONE:
                return
            self._h11.start_next_cycle()

    async def _exchange(self, head: h11.Request) -> bool:
        """Answer one request; False if the connection must close afterwards."""
        started = time.perf_counter()
        method = head.method.decode("ascii")
        raw_path, _, raw_query = head.target.decode("latin-1").partition("?")
        raw_path, api_version = split_version(raw_path)
        match = self._router.match(method, raw_path)
        streamed = match.route is not None and match.route.stream_body
        request = Request(
            method=method,
            path=unquote(raw_path),
            api_version=api_version,
            query=parse_qs(raw_query, keep_blank_values=True) if raw_query else {},
            headers=_header_dict(head.headers),
            params=match.params,
            _receive_body=self._receive_body_chunk if streamed else None,
        )
        response = await self._call(request, match.route, match.path_known)
        status, keep_alive = await self._respond(request, response)
        if self._h11.their_state is h11.SEND_BODY and "100-continue" in request.headers.get("expect", ""):
            # Answered without reading: the client may never send the body it
            # was waiting to be asked for, so draining it could hang.
            keep_alive = False
        log.debug(
            "api.request",
            method=method,
            path=request.path,
            status=status,
            ms=round((time.perf_counter() - started) * 1000, 3),
        )
        return keep_alive

    async def _call(self, request: Request, route: Route | None, path_known: bool) -> Response:
        if route is None:
            if path_known:
                return _error(405, f"method {request.method} not allowed for {request.path}")
            return _error(404, "page not found")
        try:
            if not route.stream_body:
                declared = request.headers.get("content-length", "0")
                request.body = await self._read_body(int(declared) if declared.isdigit() else 0)
            response = await route.handler(request)
            if not isinstance(response, _RESPONSE_TYPES):
                raise TypeError(f"handler returned {response!r}, not a response")
            return response
        except CorralError as err:
            return _error(err.status, str(err))
        except Exception as err:
            log.error("api.request_failed", method=request.method, path=request.path, exc_info=True)
            return _error(500, str(err) or type(err).__name__)

    async def _respond(self, request: Request, response: Response) -> tuple[int, bool]:
        head_only = request.method == "HEAD"
        if isinstance(response, JSONResponse):
            body = response.encode()
            await self._send_complete(response.status, "application/json", body, response.headers, head_only)
        elif isinstance(response, TextResponse):
            body = response.encode()
            await self._send_complete(response.status, response.content_type, body, response.headers, head_only)
        elif isinstance(response, EmptyResponse):
            await self._send_complete(response.status, None, b"", response.headers, head_only)
        elif isinstance(response, StreamResponse):
            return response.status, await self._send_stream(response, head_only)
        else:
            return await self._hijack(request, response), False
        return response.status, True

    async def _send_complete(
        self, status: int, content_type: str | None, body: bytes, extra: Headers, head_only: bool = False
    ) -> None:
        headers: list[tuple[str, str]] = []
        if content_type is not None:
            headers.append(("Content-Type", content_type))
        if status not in (204, 304):
            headers.append(("Content-Length", str(len(body))))
        headers.extend(extra)
        # HEAD, 204 and 304 carry no body whatever Content-Length says (h11 enforces it).
        events: list[h11.Event] = [_response_head(status, headers)]
        if body and not head_only and status not in (204, 304):
            events.append(h11.Data(data=body))
        events.append(h11.EndOfMessage())
        await self._send(*events)

    async def _send_stream(self, response: StreamResponse, head_only: bool) -> bool:
        headers = [("Content-Type", response.content_type), *response.headers]
        # Headers first and at once: `docker run` waits for the response head of
        # its `wait` request before it starts the container.
        await self._send(_response_head(response.status, headers))
        if head_only or response.status in (204, 304):
            await self._send(h11.EndOfMessage())
            return True
        # Watching the socket only works once the request body is consumed;
        # a stream_body handler still reading it owns the receive side.
        watch = self._h11.their_state in (h11.DONE, _MIGHT_SWITCH)
        chunks = response.open()
        finished = False
        try:
            with trio.CancelScope() as client_gone:
                async with trio.open_nursery() as nursery:
                    if watch:
                        nursery.start_soon(self._watch_for_disconnect, client_gone)
                    try:
                        async for chunk in chunks:
                            if response.single:
                                await self._send(h11.Data(data=chunk), h11.EndOfMessage())
                                return True
                            if chunk:
                                await self._send(h11.Data(data=chunk))
                        finished = True
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        pass
                    except Exception:
                        # Headers are out, so the only way to report it is a
                        # truncated body: close without the final chunk.
                        log.error("api.stream_failed", exc_info=True)
                    finally:
                        nursery.cancel_scope.cancel()
        finally:
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                await aclose()
        if not finished:
            return False
        await self._send(h11.EndOfMessage())
        return True

    async def _watch_for_disconnect(self, client_gone: trio.CancelScope) -> None:
        buffered = 0
        while True:
            try:
                data = await self._stream.receive_some(_RECEIVE_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            buffered += len(data)
            if not data or buffered > _MAX_HEAD:
                client_gone.cancel()
                return
            # A pipelined next request: keep it for the next cycle.
            self._h11.receive_data(data)

    async def _hijack(self, request: Request, response: HijackResponse) -> int:
        if request.wants_upgrade and self._h11.their_state is _MIGHT_SWITCH:
            status = 101
            # An InformationalResponse, so h11 switches protocols and hands
            # over whatever the client already sent after its request.
            await self._send(
                h11.InformationalResponse(
                    status_code=101,
                    reason=b"UPGRADED",
                    headers=[
                        ("Content-Type", response.content_type),
                        ("Connection", "Upgrade"),
                        ("Upgrade", "tcp"),
                    ],
                )
            )
        else:
            status = 200
            # A body delimited by the connection closing has no h11 form for an
            # HTTP/1.1 peer (h11 insists on chunked), so this head is written
            # directly, exactly as dockerd writes it.
            content_type = response.content_type.encode("latin-1")
            await self._stream.send_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: " + content_type + b"\r\nConnection: close\r\n\r\n"
            )
        leftover, _ = self._h11.trailing_data
        try:
            await response.handler(RawStream(self._stream, leftover))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        except Exception:
            log.error("api.hijack_failed", path=request.path, exc_info=True)
        return status

    async def _read_body(self, declared: int) -> bytes:
        # Refuse early on Content-Length; h11 itself enforces the framing.
        if declared > MAX_BODY:
            raise PayloadTooLarge(f"request body of {declared} bytes exceeds the {MAX_BODY} byte limit")
        chunks: list[bytes] = []
        size = 0
        while chunk := await self._receive_body_chunk():
            size += len(chunk)
            if size > MAX_BODY:
                raise PayloadTooLarge(f"request body exceeds the {MAX_BODY} byte limit")
            chunks.append(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _receive_body_chunk(self) -> bytes:
        """The next piece of the request body, b"" at its end."""
        while self._h11.their_state is h11.SEND_BODY:
            if self._h11.they_are_waiting_for_100_continue:
                await self._send(h11.InformationalResponse(status_code=100, headers=[]))
            try:
                event = await self._next_event()
            except h11.RemoteProtocolError as err:
                raise BadBody(f"malformed request body: {err}") from None
            if type(event) is h11.Data:
                return bytes(event.data)
        return b""

    async def _discard_unread_body(self) -> bool:
        """Read what a handler left of the request body; False if the connection can't be reused."""
        drained = 0
        while self._h11.their_state is h11.SEND_BODY:
            try:
                event = await self._next_event()
            except h11.RemoteProtocolError:
                return False
            if type(event) is h11.Data:
                drained += len(event.data)
                if drained > _MAX_DRAIN:
                    return False
        return True

    async def _next_event(self) -> Any:
        while True:
            event = self._h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            try:
                data = await self._stream.receive_some(_RECEIVE_SIZE)
            except trio.BrokenResourceError:
                data = b""
            self._h11.receive_data(data)

    async def _send(self, *events: h11.Event) -> None:
        data = b"".join(self._h11.send(e) or b"" for e in events)
        await self._stream.send_all(data)

    async def _reject(self, err: h11.RemoteProtocolError) -> None:
        """Answer a request h11 could not parse, if the protocol state still allows it."""
        if self._h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        body = JSONResponse({"message": f"bad request: {err}"}).encode()
        with contextlib.suppress(h11.LocalProtocolError, trio.BrokenResourceError, trio.ClosedResourceError):
            await self._send_complete(err.error_status_hint, "application/json", body, ())


def _error(status: int, message: str) -> Response:
    if status == 304:
        return EmptyResponse(304)
    return JSONResponse({"message": message}, status=status)


def _response_head(status: int, headers: Iterable[tuple[str, str]]) -> h11.Response:
    return h11.Response(status_code=status, headers=list(headers), reason=_REASONS.get(status, b""))


def _header_dict(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in raw:
        key = name.decode("latin-1")
        text = value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return headers
