"""`wait` with Docker's conditions: not-running (default), next-exit, removed."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from supervisor.errors import InvalidArgument
from supervisor.reactor.container import Container

Condition = Literal["not-running", "next-exit", "removed"]


@dataclass(frozen=True)
class WaitResult:
    status_code: int
    error: str


def parse_condition(text: str | None) -> Condition:
    value = text or "not-running"
    if value not in ("not-running", "next-exit", "removed"):
        raise InvalidArgument(f"invalid condition: {value!r}")
    return value  # type: ignore[return-value]


def waiter(container: Container, condition: Condition) -> Callable[[], Awaitable[WaitResult]]:
    """Capture the container's position now, so `next-exit` means the exit after this call."""
    exits = container.exit_count

    async def wait() -> WaitResult:
        if condition == "removed":
            await container.wait_until(lambda c: c.removed)
        elif condition == "next-exit":
            await container.wait_until(lambda c: c.exit_count > exits or c.removed)
        else:
            await container.wait_until(lambda c: not c.state.running or c.removed)
        return WaitResult(container.state.exit_code, container.state.error)

    return wait
