"""The synchronous client: against the trio server, and its pure helpers."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import trio

from supervisor.api.http import JSONResponse, Request, Router
from supervisor.cli.client import (
    DEFAULT_SOCKET,
    Client,
    ClientError,
    DaemonUnreachable,
    encode_frame,
    iter_frames,
    resolve_socket,
)

from .conftest import StartServer


async def echo(request: Request) -> JSONResponse:
    return JSONResponse(
        {
            "path": request.path,
            "version": request.api_version,
            "query": dict(request.query),
            "body": request.json(),
            "auth": request.headers.get("x-registry-auth"),
        },
        status=201 if request.method == "POST" else 200,
    )


async def upload(request: Request) -> JSONResponse:
    sizes = [len(chunk) async for chunk in request.iter_body()]
    return JSONResponse({"total": sum(sizes)})


async def test_request_round_trip_and_keep_alive(start_server: StartServer) -> None:
    router = Router()
    router.route("GET", "/containers/{id}/json", echo)
    router.route("POST", "/containers/create", echo)
    router.route("DELETE", "/images/{name:path}", echo)
    router.route("POST", "/images/load", upload, stream_body=True)
    path = await start_server(router)

    def run() -> None:
        with Client(path) as client:
            resp = client.request(
                "GET", "/containers/abc/json", query={"size": True, "all": False, "skip": None, "n": 3}
            )
            assert resp.ok and resp.status == 200
            assert resp.json() == {
                "path": "/containers/abc/json",
                "version": "1.41",
                "query": {"size": ["1"], "all": ["0"], "n": ["3"]},
                "body": None,
                "auth": None,
            }
            first = client._idle
            resp = client.request(
                "POST",
                "/containers/create",
                query={"name": "web", "filters": {"label": ["a=b"]}},
                json={"Image": "busybox"},
                headers={"X-Registry-Auth": "e30="},
            )
            assert resp.status == 201
            data = resp.json()
            assert data["body"] == {"Image": "busybox"}
            assert data["query"] == {"name": ["web"], "filters": ['{"label": ["a=b"]}']}
            assert data["auth"] == "e30="
            assert client._idle is first, "the keep-alive connection was not reused"

            assert client.request("DELETE", "/images/user/app:v1").json()["path"] == "/images/user/app:v1"
            resp = client.request("POST", "/images/load", body=iter([b"a" * 70_000, b"b" * 5]))
            assert resp.json() == {"total": 70_005}
            resp = client.request("GET", "/nope")
            assert (resp.status, resp.ok, resp.message) == (404, False, "page not found")

    await trio.to_thread.run_sync(run)


async def test_client_reconnects_after_daemon_restart(nursery: trio.Nursery, sock_path: Path) -> None:
    from supervisor.api.http import serve_unix

    router = Router()
    router.route("GET", "/containers/{id}/json", echo)
    client = Client(sock_path)
    for _ in range(2):
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as inner:
                await inner.start(serve_unix, sock_path, router)
                resp = await trio.to_thread.run_sync(client.request, "GET", "/containers/a/json")
                assert resp.status == 200
                scope.cancel()
    client.close()


def test_daemon_unreachable(tmp_path: Path) -> None:
    missing = tmp_path / "none.sock"
    with pytest.raises(DaemonUnreachable) as info:
        Client(missing).request("GET", "/_ping")
    assert str(info.value) == f"cannot connect to the corral daemon at unix://{missing}: is it running?"


def test_resolve_socket_precedence() -> None:
    env = {"CORRAL_HOST": "unix:///c.sock", "DOCKER_HOST": "unix:///d.sock"}
    assert resolve_socket("unix:///h.sock", env) == Path("/h.sock")
    assert resolve_socket(None, env) == Path("/c.sock")
    assert resolve_socket(None, {"DOCKER_HOST": "unix:///d.sock"}) == Path("/d.sock")
    assert resolve_socket(None, {"DOCKER_HOST": ""}) == DEFAULT_SOCKET
    assert resolve_socket(None, {}) == Path("/run/corral/corral.sock")
    with pytest.raises(ClientError, match="unix sockets only"):
        resolve_socket("tcp://127.0.0.1:2375", {})
    with pytest.raises(ClientError, match="unix sockets only"):
        resolve_socket(None, {"DOCKER_HOST": "ssh://host"})
    with pytest.raises(ClientError, match="absolute"):
        resolve_socket("unix://relative.sock", {})


def test_frames_round_trip() -> None:
    wire = encode_frame(1, b"out\n") + encode_frame(2, b"") + encode_frame(2, b"err" * 1000)
    assert wire[:8] == b"\x01\x00\x00\x00\x00\x00\x00\x04"

    source = io.BytesIO(wire)

    def trickle(n: int) -> bytes:
        return source.read(min(n, 3))  # short reads, like a socket

    assert list(iter_frames(trickle)) == [(1, b"out\n"), (2, b""), (2, b"err" * 1000)]


def test_truncated_frames() -> None:
    with pytest.raises(EOFError, match="header"):
        list(iter_frames(io.BytesIO(b"\x01\x00\x00").read))
    with pytest.raises(EOFError, match="2 of 5"):
        list(iter_frames(io.BytesIO(encode_frame(1, b"hello")[:10]).read))
    assert list(iter_frames(io.BytesIO(b"").read)) == []


async def test_a_request_with_a_timeout_does_not_slow_the_next(start_server, sock_path) -> None:  # type: ignore[no-untyped-def]
    import time

    import trio

    from supervisor.api.http import JSONResponse, Router
    from supervisor.cli.client import Client

    router = Router()

    async def hello(_request):  # type: ignore[no-untyped-def]
        return JSONResponse({"ok": True})

    router.route("GET", "/hello", hello)
    await start_server(router)

    def two_requests() -> float:
        with Client(sock_path) as client:
            client.request("GET", "/hello", timeout=5)
            begin = time.monotonic()
            client.request("GET", "/hello", timeout=5)
            return time.monotonic() - begin

    assert await trio.to_thread.run_sync(two_requests) < 1.0
