"""Fixtures for the HTTP layer: a real server on a unix socket in the test's nursery."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import trio

from supervisor.api.http import Router, serve_unix

StartServer = Callable[[Router], Awaitable[Path]]


@pytest.fixture
def sock_path(tmp_path: Path) -> Path:
    path = tmp_path / "api.sock"
    assert len(str(path)) < 100, "AF_UNIX paths are limited to 107 bytes"
    return path


@pytest.fixture
def start_server(nursery: trio.Nursery, sock_path: Path) -> StartServer:
    async def start(router: Router) -> Path:
        await nursery.start(serve_unix, sock_path, router)
        return sock_path

    return start
