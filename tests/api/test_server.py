"""The server over a real unix socket: routing, errors, keep-alive, socket lifecycle."""

from __future__ import annotations

import json
import os
import socket
import stat
from pathlib import Path
from typing import TypeVar

import pytest
import structlog
import trio

from supervisor.api import connection
from supervisor.api.http import (
    EmptyResponse,
    JSONResponse,
    Request,
    Router,
    TextResponse,
    serve_unix,
)
from supervisor.errors import Conflict, NotFound, NotModified

from .conftest import StartServer
from .rawhttp import RawConn

R = TypeVar("R")


async def echo(request: Request) -> JSONResponse:
    return JSONResponse(
        {
            "method": request.method,
            "path": request.path,
            "api_version": request.api_version,
            "params": request.params,
            "query": dict(request.query),
            "json": request.json(),
        }
    )


async def ping(request: Request) -> TextResponse:
    return TextResponse("OK", headers=[("Api-Version", "1.41"), ("Ostype", "linux")])


async def fail(request: Request) -> JSONResponse:
    errors = {"nf": NotFound("no such container: x"), "cf": Conflict("name in use"), "nm": NotModified("already")}
    raise errors.get(request.params["kind"]) or RuntimeError("boom")


def make_router() -> Router:
    router = Router()
    router.route("GET", "/_ping", ping)
    router.route("POST", "/containers/{id}/start", echo)
    router.route("POST", "/containers/create", echo)
    router.route("DELETE", "/images/{name:path}", echo)
    router.route("GET", "/fail/{kind}", fail)
    router.route("POST", "/nocontent", lambda r: _async(EmptyResponse()))
    router.route("GET", "/wrongtype", lambda r: _async("not a response"))  # type: ignore[arg-type]
    return router


async def _async(value: R) -> R:
    return value


async def request(path: Path, method: str, target: str, body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    conn = await RawConn.open(path)
    async with conn.stream:
        await conn.send_request(method, target, body=body)
        head, data = await conn.read_response()
    headers = {k.decode(): v.decode() for k, v in head.headers}
    return head.status_code, headers, data


async def test_route_params_prefix_and_query(start_server: StartServer) -> None:
    path = await start_server(make_router())
    status, headers, body = await request(path, "POST", "/v1.41/containers/abc/start?t=1&x=a&x=b")
    assert status == 200
    assert headers["content-type"] == "application/json"
    data = json.loads(body)
    assert data == {
        "method": "POST",
        "path": "/containers/abc/start",
        "api_version": "1.41",
        "params": {"id": "abc"},
        "query": {"t": ["1"], "x": ["a", "b"]},
        "json": None,
    }
    status, _, body = await request(path, "POST", "/containers/create", body=b'{"Image":"busybox"}')
    assert json.loads(body)["api_version"] is None
    assert json.loads(body)["json"] == {"Image": "busybox"}


async def test_greedy_param(start_server: StartServer) -> None:
    path = await start_server(make_router())
    _, _, body = await request(path, "DELETE", "/v1.41/images/user/app:v1")
    assert json.loads(body)["params"] == {"name": "user/app:v1"}
    _, _, body = await request(path, "DELETE", "/images/localhost%3A5000%2Fapp")
    assert json.loads(body)["params"] == {"name": "localhost:5000/app"}


async def test_head_falls_back_to_get(start_server: StartServer) -> None:
    path = await start_server(make_router())
    conn = await RawConn.open(path)
    async with conn.stream:
        await conn.send_request("HEAD", "/_ping")
        head, body = await conn.read_response()
        assert head.status_code == 200 and body == b""
        assert (b"api-version", b"1.41") in head.headers
        assert (b"content-length", b"2") in head.headers
        # The connection is still in sync after a bodiless HEAD answer.
        await conn.send_request("GET", "/_ping")
        head, body = await conn.read_response()
        assert body == b"OK"


async def test_404_and_405(start_server: StartServer) -> None:
    path = await start_server(make_router())
    status, _, body = await request(path, "GET", "/v1.41/nope")
    assert (status, body) == (404, b'{"message":"page not found"}\n')
    status, _, body = await request(path, "DELETE", "/_ping")
    assert status == 405
    assert b"not allowed" in body


async def test_malformed_json_is_400(start_server: StartServer) -> None:
    path = await start_server(make_router())
    status, _, body = await request(path, "POST", "/containers/create", body=b"{not json")
    assert status == 400
    assert body.startswith(b'{"message":"invalid JSON: ')


async def test_corral_errors_map_to_status(start_server: StartServer) -> None:
    path = await start_server(make_router())
    assert (await request(path, "GET", "/fail/nf"))[::2] == (404, b'{"message":"no such container: x"}\n')
    assert (await request(path, "GET", "/fail/cf"))[0] == 409
    status, headers, body = await request(path, "GET", "/fail/nm")
    assert (status, body) == (304, b"")
    assert "content-length" not in headers


async def test_unexpected_errors_are_500_and_logged(start_server: StartServer) -> None:
    path = await start_server(make_router())
    with structlog.testing.capture_logs() as logs:
        status, _, body = await request(path, "GET", "/fail/other")
        assert (status, body) == (500, b'{"message":"boom"}\n')
        status, _, body = await request(path, "GET", "/wrongtype")
        assert status == 500 and b"not a response" in body
    failures = [e for e in logs if e["event"] == "api.request_failed"]
    assert len(failures) == 2 and failures[0]["exc_info"] is True
    # And the server still answers.
    assert (await request(path, "GET", "/_ping"))[0] == 200


async def test_keep_alive(start_server: StartServer) -> None:
    path = await start_server(make_router())
    conn = await RawConn.open(path)
    async with conn.stream:
        for i in range(5):
            await conn.send_request("POST", f"/containers/c{i}/start")
            head, body = await conn.read_response()
            assert head.status_code == 200 and f'"c{i}"'.encode() in body
        # A body the handler never looked at is drained, not mistaken for the next request.
        await conn.send_request("POST", "/nocontent", body=b"ignored")
        head, body = await conn.read_response()
        assert head.status_code == 204 and body == b""
        await conn.send_request("GET", "/_ping")
        head, body = await conn.read_response()
        assert body == b"OK"


async def test_pipelined_requests(start_server: StartServer) -> None:
    path = await start_server(make_router())
    async with await trio.open_unix_socket(str(path)) as stream:
        raw = b"".join(b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n" for _ in range(3))
        await stream.send_all(raw + b"GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        out = b""
        while data := await stream.receive_some(65536):
            out += data
    assert out.count(b"HTTP/1.1 200 OK\r\n") == 4
    assert out.endswith(b"OK")


async def test_bad_request_line_gets_400(start_server: StartServer) -> None:
    path = await start_server(make_router())
    async with await trio.open_unix_socket(str(path)) as stream:
        await stream.send_all(b"NOT HTTP AT ALL\r\n\r\n")
        out = b""
        while data := await stream.receive_some(65536):
            out += data
    assert out.startswith(b"HTTP/1.1 400 ")


async def test_oversized_body_is_413(start_server: StartServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connection, "MAX_BODY", 1000)
    path = await start_server(make_router())
    status, _, body = await request(path, "POST", "/containers/create", body=b"x" * 1001)
    assert status == 413 and b"limit" in body


async def test_streamed_request_body(start_server: StartServer) -> None:
    received: list[int] = []

    async def load(request: Request) -> JSONResponse:
        assert request.body == b""
        async for chunk in request.iter_body():
            received.append(len(chunk))
        return JSONResponse({"total": sum(received)})

    router = Router()
    router.route("POST", "/images/load", load, stream_body=True)
    path = await start_server(router)
    conn = await RawConn.open(path)
    async with conn.stream:
        await conn.send_request("POST", "/images/load", body=b"y" * 300_000)
        head, body = await conn.read_response()
    assert body == b'{"total":300000}\n'
    assert len(received) > 1


async def test_socket_mode_stale_removal_and_cleanup(nursery: trio.Nursery, sock_path: Path) -> None:
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(sock_path))
    stale.close()  # a dead daemon's leftover socket file
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as inner:
            await inner.start(serve_unix, sock_path, make_router())
            st = os.stat(sock_path)
            assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660
            assert (await request(sock_path, "GET", "/_ping"))[0] == 200
            # A second server must not steal a live socket.
            with pytest.raises(FileExistsError, match="already listening"):
                await serve_unix(sock_path, make_router())
            scope.cancel()
    assert not sock_path.exists()
    assert list(sock_path.parent.iterdir()) == []


async def test_refuses_to_replace_a_regular_file(sock_path: Path) -> None:
    sock_path.write_text("precious")
    with pytest.raises(FileExistsError, match="not a socket"):
        await serve_unix(sock_path, make_router())
    assert sock_path.read_text() == "precious"
