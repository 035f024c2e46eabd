"""Wake everyone waiting for a condition over changing state, without polling."""

from __future__ import annotations

from collections.abc import Callable

import trio


class Broadcast:
    """`notify()` after every change; `wait_until(predicate)` re-checks after each one."""

    def __init__(self) -> None:
        self._event = trio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = trio.Event()

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        while not predicate():
            await self._event.wait()
