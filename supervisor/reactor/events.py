"""Typed engine events on an in-process bus; each is also a structlog line.

Subscribers get a bounded memory channel; a subscriber that stops reading
loses events (logged) rather than stalling the engine.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import structlog
import trio

log = structlog.get_logger("supervisor.events")

_SUBSCRIBER_BUFFER = 1024


@dataclass(frozen=True)
class Event:
    type: str  # "container", "image", ...
    action: str  # "create", "start", "die", "oom", "kill", "stop", "destroy", ...
    actor_id: str
    attributes: dict[str, str] = field(default_factory=dict)
    time_ns: int = field(default_factory=time.time_ns)


class EventBus:
    def __init__(self) -> None:
        self._subscribers: set[trio.MemorySendChannel[Event]] = set()

    def publish(self, event: Event) -> None:
        log.info(f"{event.type}.{event.action}", id=event.actor_id, **event.attributes)
        for channel in list(self._subscribers):
            try:
                channel.send_nowait(event)
            except trio.WouldBlock:
                log.warning("events.subscriber_lagging", dropped=f"{event.type}.{event.action}")
            except trio.BrokenResourceError:
                self._subscribers.discard(channel)

    @contextmanager
    def subscribe(self) -> Iterator[trio.MemoryReceiveChannel[Event]]:
        send, receive = trio.open_memory_channel[Event](_SUBSCRIBER_BUFFER)
        self._subscribers.add(send)
        try:
            with receive:
                yield receive
        finally:
            self._subscribers.discard(send)
            send.close()
