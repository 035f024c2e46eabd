"""The real docker CLI and docker-py can talk to the server (ping negotiation, JSON)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from supervisor.api.http import (
    EmptyResponse,
    HijackResponse,
    JSONResponse,
    RawStream,
    Request,
    Router,
    StreamResponse,
    TextResponse,
)
from supervisor.cli.client import encode_frame

from .conftest import StartServer

DOCKER = shutil.which("docker") or "/usr/local/bin/docker"
PING_HEADERS = [
    ("Api-Version", "1.41"),
    ("Ostype", "linux"),
    ("Docker-Experimental", "false"),
    ("Cache-Control", "no-cache, no-store, must-revalidate"),
    ("Pragma", "no-cache"),
]


async def ping(request: Request) -> TextResponse:
    return TextResponse("OK", headers=PING_HEADERS)


async def version(request: Request) -> JSONResponse:
    return JSONResponse(
        {
            "Platform": {"Name": "corral"},
            "Version": "0.1.0",
            "ApiVersion": "1.41",
            "MinAPIVersion": "1.12",
            "GitCommit": "test",
            "GoVersion": "python3.11",
            "Os": "linux",
            "Arch": "amd64",
            "KernelVersion": os.uname().release,
            "BuildTime": "2026-11-27T00:00:00Z",
            "Components": [{"Name": "Engine", "Version": "0.1.0", "Details": {"ApiVersion": "1.41"}}],
        }
    )


def docker_router() -> Router:
    router = Router()
    router.route("GET", "/_ping", ping)
    router.route("GET", "/version", version)
    return router


def docker_env(sock: Path, config_dir: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DOCKER_HOST": f"unix://{sock}",
        "DOCKER_CONFIG": str(config_dir),
    }


needs_docker = pytest.mark.skipif(not os.access(DOCKER, os.X_OK), reason="docker CLI not installed")


@needs_docker
async def test_docker_version(start_server: StartServer, tmp_path: Path) -> None:
    sock = await start_server(docker_router())
    with trio.fail_after(8):
        result = await trio.run_process(
            [DOCKER, "version", "--format", "{{.Server.Version}} {{.Server.APIVersion}} {{.Server.Os}}"],
            env=docker_env(sock, tmp_path),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().strip() == "0.1.0 1.41 linux"


@needs_docker
async def test_docker_run_shaped_exchange(start_server: StartServer, tmp_path: Path) -> None:
    """`docker run --rm` without a TTY: attach (hijack), wait (stream, headers first), start."""
    exited = trio.Event()

    async def create(request: Request) -> JSONResponse:
        return JSONResponse({"Id": "c" * 64, "Warnings": []}, status=201)

    async def attach(request: Request) -> HijackResponse:
        async def relay(raw: RawStream) -> None:
            await exited.wait()
            await raw.send_all(encode_frame(1, b"out\n") + encode_frame(2, b"err\n"))
            await raw.send_eof()

        return HijackResponse(relay)

    async def wait(request: Request) -> StreamResponse:
        async def body() -> AsyncIterator[bytes]:
            await exited.wait()
            yield b'{"StatusCode":3,"Error":null}\n'

        return StreamResponse(body)

    async def start(request: Request) -> EmptyResponse:
        exited.set()
        return EmptyResponse()

    router = docker_router()
    router.route("POST", "/containers/create", create)
    router.route("POST", "/containers/{id}/attach", attach)
    router.route("POST", "/containers/{id}/wait", wait)
    router.route("POST", "/containers/{id}/start", start)
    sock = await start_server(router)
    with trio.fail_after(8):
        result = await trio.run_process(
            [DOCKER, "run", "--rm", "--pull", "never", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3"],
            env=docker_env(sock, tmp_path),
            capture_stdout=True,
            capture_stderr=True,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    assert (result.returncode, result.stdout, result.stderr) == (3, b"out\n", b"err\n")


async def test_docker_py_ping_and_version(start_server: StartServer) -> None:
    docker = pytest.importorskip("docker")
    sock = await start_server(docker_router())

    def talk() -> tuple[bool, str]:
        client = docker.DockerClient(base_url=f"unix://{sock}", version="1.41")
        try:
            return client.ping(), client.version()["Version"]
        finally:
            client.close()

    assert await trio.to_thread.run_sync(talk) == (True, "0.1.0")


@needs_docker
async def test_docker_run_interactive_stdin_half_close(start_server: StartServer, tmp_path: Path) -> None:
    """`echo hello | docker run -i --rm busybox cat`: stdin arrives, then the CLI half-closes."""
    started = trio.Event()
    echoed = trio.Event()

    async def create(request: Request) -> JSONResponse:
        return JSONResponse({"Id": "d" * 64, "Warnings": []}, status=201)

    async def attach(request: Request) -> HijackResponse:
        assert request.q_bool("stdin")

        async def cat(raw: RawStream) -> None:
            received = b""
            while data := await raw.receive_some():
                received += data
            await started.wait()
            await raw.send_all(encode_frame(1, received))
            await raw.send_eof()
            echoed.set()

        return HijackResponse(cat)

    async def wait(request: Request) -> StreamResponse:
        async def body() -> AsyncIterator[bytes]:
            await echoed.wait()
            yield b'{"StatusCode":0}\n'

        return StreamResponse(body)

    async def start(request: Request) -> EmptyResponse:
        started.set()
        return EmptyResponse()

    router = docker_router()
    router.route("POST", "/containers/create", create)
    router.route("POST", "/containers/{id}/attach", attach)
    router.route("POST", "/containers/{id}/wait", wait)
    router.route("POST", "/containers/{id}/start", start)
    sock = await start_server(router)
    with trio.fail_after(8):
        result = await trio.run_process(
            [DOCKER, "run", "-i", "--rm", "--pull", "never", "busybox", "cat"],
            env=docker_env(sock, tmp_path),
            stdin=b"hello\n",
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert (result.returncode, result.stdout, result.stderr) == (0, b"hello\n", b"")
