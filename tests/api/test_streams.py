"""Streaming responses (headers first, disconnect cancels) and connection hijacking."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import TypeVar

import h11
import trio

from supervisor.api.http import HijackResponse, RawStream, Request, Router, StreamResponse
from supervisor.cli.client import Client, encode_frame, iter_frames

from .conftest import StartServer
from .rawhttp import RawConn

R = TypeVar("R")


class Producer:
    """A stream body whose progress and clean-up the test can observe."""

    def __init__(self) -> None:
        self.release = trio.Event()
        self.closed = trio.Event()
        self.started = False

    async def chunks(self) -> AsyncIterator[bytes]:
        self.started = True
        try:
            yield b"first\n"
            await self.release.wait()
            yield b"second\n"
            await trio.sleep_forever()
        finally:
            self.closed.set()


async def test_headers_go_out_before_the_first_chunk(start_server: StartServer) -> None:
    release = trio.Event()

    async def wait(request: Request) -> StreamResponse:
        async def body() -> AsyncIterator[bytes]:
            await release.wait()
            yield b'{"StatusCode":0}\n'

        return StreamResponse(body)

    router = Router()
    router.route("POST", "/containers/{id}/wait", wait)
    path = await start_server(router)
    conn = await RawConn.open(path)
    async with conn.stream:
        await conn.send_request("POST", "/v1.41/containers/x/wait?condition=removed")
        with trio.fail_after(2):
            head = await conn.next_event()
        assert type(head) is h11.Response and head.status_code == 200
        assert not release.is_set()
        assert (b"transfer-encoding", b"chunked") in head.headers
        release.set()
        with trio.fail_after(2):
            data = await conn.next_event()
            assert data.data == b'{"StatusCode":0}\n'
            assert type(await conn.next_event()) is h11.EndOfMessage
        # The stream ended cleanly, so the connection is reusable.
        conn.h11.start_next_cycle()
        await conn.send_request("POST", "/containers/y/wait")
        release_again = await conn.next_event()
        assert release_again.status_code == 200


async def test_client_disconnect_cancels_the_producer(start_server: StartServer) -> None:
    producer = Producer()
    router = Router()
    router.route("GET", "/logs", lambda r: _ret(StreamResponse(producer.chunks, content_type="text/plain")))
    path = await start_server(router)
    conn = await RawConn.open(path)
    await conn.send_request("GET", "/logs?follow=1")
    with trio.fail_after(2):
        assert (await conn.next_event()).status_code == 200
        assert (await conn.next_event()).data == b"first\n"
    await conn.aclose()
    with trio.fail_after(2):
        await producer.closed.wait()
    assert not producer.release.is_set()


async def test_disconnect_before_any_chunk(start_server: StartServer) -> None:
    """`docker run` killed while its `wait` has not produced a byte yet."""
    closed = trio.Event()

    async def body() -> AsyncIterator[bytes]:
        try:
            await trio.sleep_forever()
            yield b""
        finally:
            closed.set()

    router = Router()
    router.route("POST", "/wait", lambda r: _ret(StreamResponse(body())))
    path = await start_server(router)
    conn = await RawConn.open(path)
    await conn.send_request("POST", "/wait")
    with trio.fail_after(2):
        assert (await conn.next_event()).status_code == 200
    await conn.aclose()
    with trio.fail_after(2):
        await closed.wait()


async def test_sync_client_streams_chunks_as_they_arrive(start_server: StartServer) -> None:
    producer = Producer()
    router = Router()
    router.route("GET", "/logs", lambda r: _ret(StreamResponse(producer.chunks)))
    path = await start_server(router)

    def follow() -> list[bytes]:
        with Client(path) as client, client.stream("GET", "/logs", query={"follow": True}) as resp:
            assert resp.status == 200
            chunks = resp.iter_chunks()
            got = [next(chunks)]
            trio.from_thread.run_sync(producer.release.set)
            got.append(next(chunks))
            return got

    assert await trio.to_thread.run_sync(follow) == [b"first\n", b"second\n"]
    with trio.fail_after(2):
        await producer.closed.wait()


async def echo_framed(raw: RawStream) -> None:
    """Reads stdin to EOF, answers with it framed on stdout and a note on stderr."""
    received = b""
    while data := await raw.receive_some():
        received += data
    await raw.send_all(encode_frame(1, received) + encode_frame(2, b"bye"))
    await raw.send_eof()


async def attach(request: Request) -> HijackResponse:
    return HijackResponse(echo_framed)


def hijack_router() -> Router:
    router = Router()
    router.route("POST", "/containers/{id}/attach", attach)
    return router


async def test_hijack_upgrade_both_directions_and_half_close(start_server: StartServer) -> None:
    path = await start_server(hijack_router())
    async with await trio.open_unix_socket(str(path)) as stream:
        # Stdin bytes right behind the request, in the same write, must reach
        # the handler (h11 has them buffered).
        await stream.send_all(
            b"POST /v1.41/containers/x/attach?stdin=1&stream=1 HTTP/1.1\r\nHost: x\r\n"
            b"Content-Length: 0\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\nearly "
        )
        out = b""
        while b"\r\n\r\n" not in out:
            out += await stream.receive_some(65536)
        head, _, rest = out.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 UPGRADED\r\n")
        assert b"Content-Type: application/vnd.docker.raw-stream" in head
        assert b"Upgrade: tcp" in head and b"Connection: Upgrade" in head
        await stream.send_all(b"late")
        await stream.send_eof()
        with trio.fail_after(2):
            while data := await stream.receive_some(65536):
                rest += data
    assert rest == encode_frame(1, b"early late") + encode_frame(2, b"bye")


async def test_hijack_without_upgrade_is_200_then_raw(start_server: StartServer) -> None:
    async def talk(raw: RawStream) -> None:
        await raw.send_all(b"raw bytes, no framing")

    router = Router()
    router.route("POST", "/attach", lambda r: _ret(HijackResponse(talk, content_type="text/plain")))
    path = await start_server(router)
    conn = await RawConn.open(path)
    async with conn.stream:
        await conn.send_request("POST", "/attach")
        with trio.fail_after(2):
            out = await conn.read_until_eof()
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.split(b"\r\n") == [b"HTTP/1.1 200 OK", b"Content-Type: text/plain", b"Connection: close"]
    assert body == b"raw bytes, no framing"


async def test_sync_client_hijack(start_server: StartServer) -> None:
    path = await start_server(hijack_router())

    def run_attach() -> list[tuple[int, bytes]]:
        client = Client(path)
        with client.hijack("POST", "/containers/x/attach", query={"stdin": True, "stream": True}) as conn:
            conn.sendall(b"hello ")
            conn.sendall(b"world")
            conn.close_write()
            return list(iter_frames(conn.recv))

    assert await trio.to_thread.run_sync(run_attach) == [(1, b"hello world"), (2, b"bye")]


async def test_hijack_errors_before_upgrade_are_json(start_server: StartServer, sock_path: Path) -> None:
    from supervisor.cli.client import APIError
    from supervisor.errors import NotFound

    async def missing(request: Request) -> HijackResponse:
        raise NotFound(f"No such container: {request.params['id']}")

    router = Router()
    router.route("POST", "/containers/{id}/attach", missing)
    await start_server(router)

    def run() -> APIError:
        try:
            Client(sock_path).hijack("POST", "/containers/zz/attach")
        except APIError as err:
            return err
        raise AssertionError("no error")

    err = await trio.to_thread.run_sync(run)
    assert (err.status, str(err)) == (404, "No such container: zz")


async def _ret(value: R) -> R:
    return value
