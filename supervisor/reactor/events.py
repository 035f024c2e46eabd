"""Typed engine events on an in-process bus; each is also a structlog line.

Publishing never blocks and never waits: every subscriber gets a bounded
memory channel, and one that stops reading loses events (logged) rather
than stalling the engine. The bus also keeps the last `HISTORY_LIMIT`
events, so a reader can replay from a point in time (`since`) or from a
position in the stream (`position`), as Docker's `/events` does.

`EventFilter` is Docker's event filter model (daemon/events/filter.go):
`type`, `event` and `scope` match exactly; `image` matches a container's
image (or an image's name) with or without its tag; `label` (key or
key=value) the actor's attributes; the per-type keys (`container`,
`network`, `volume`, ...) the actor's id or name, exactly or as a prefix.
Values of one key are alternatives (labels excepted: all must match);
every key given must match.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncGenerator, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog
import trio

from supervisor.errors import InvalidArgument
from supervisor.storage.reference import parse_reference

if TYPE_CHECKING:
    from supervisor.reactor.container import Container

log = structlog.get_logger("supervisor.events")

_SUBSCRIBER_BUFFER = 1024
# Docker keeps 256 events in memory; a little more costs nothing.
HISTORY_LIMIT = 1024
# Every event corral produces is about this host.
SCOPE = "local"


@dataclass(frozen=True)
class Event:
    type: str  # "container", "image", ...
    # "create", "start", "die", "oom", "kill", "stop", "restart", "destroy",
    # "health_status: healthy" (Docker's spelling) ...
    action: str
    actor_id: str
    attributes: dict[str, str] = field(default_factory=dict)
    time_ns: int = field(default_factory=time.time_ns)


def container_attributes(container: Container, **extra: str) -> dict[str, str]:
    """A container event's attributes as Docker builds them: extras, then labels, then image and name."""
    return {**extra, **container.spec.labels, "image": container.spec.image, "name": container.name}


# -- filters -----------------------------------------------------------------

# Keys matched by actor id or name, exactly or by prefix (each is also an event type).
_NAME_KEYS = ("container", "daemon", "plugin", "volume", "network", "node", "service", "secret", "config")
FILTER_KEYS = frozenset({"type", "event", "scope", "label", "image", *_NAME_KEYS})
# Docker (#25798): with one of these as an `event` filter, every `event` value matches as a prefix,
# so `event=health_status` takes in `health_status: healthy`.
_PREFIX_ACTIONS = frozenset({"health_status", "exec_create", "exec_start"})


def _familiar(image: str) -> str:
    """Docker's stripTag: `busybox:latest` -> `busybox`; anything that is no reference stays as it is."""
    try:
        return parse_reference(image).familiar
    except InvalidArgument:
        return image


@dataclass(frozen=True)
class EventFilter:
    """Docker's event filters: {key: {values}}; an empty filter takes every event."""

    args: Mapping[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def parse(cls, args: Mapping[str, Iterable[str]]) -> EventFilter:
        unknown = sorted(set(args) - FILTER_KEYS)
        if unknown:
            raise InvalidArgument(f"invalid filter '{unknown[0]}'")
        return cls({key: frozenset(values) for key, values in args.items()})

    def matches(self, event: Event) -> bool:
        return (
            self._match_action(event.action)
            and self._exact("type", event.type)
            and self._exact("scope", SCOPE)
            and all(self._match_name(key, event) for key in _NAME_KEYS)
            and self._match_image(event)
            and self._match_labels(event.attributes)
        )

    def _exact(self, key: str, value: str) -> bool:
        wanted = self.args.get(key)
        return not wanted or value in wanted

    def _fuzzy(self, key: str, value: str) -> bool:
        wanted = self.args.get(key)
        return not wanted or value in wanted or any(value.startswith(prefix) for prefix in wanted)

    def _match_action(self, action: str) -> bool:
        if self.args.get("event", frozenset()) & _PREFIX_ACTIONS:
            return self._fuzzy("event", action)
        return self._exact("event", action)

    def _match_name(self, key: str, event: Event) -> bool:
        # As Docker: applies to events of every type, and an empty prefix matches anything.
        return self._fuzzy(key, event.actor_id) or self._fuzzy(key, event.attributes.get("name", ""))

    def _match_image(self, event: Event) -> bool:
        wanted = self.args.get("image")
        if not wanted:
            return True
        # Container events by the image they were created from, image events by their own name.
        name = event.attributes.get("name" if event.type == "image" else "image", "")
        return bool({event.actor_id, name, _familiar(event.actor_id), _familiar(name)} & wanted)

    def _match_labels(self, attributes: Mapping[str, str]) -> bool:
        for label in self.args.get("label", ()):
            key, sep, value = label.partition("=")
            if key not in attributes or (sep and attributes[key] != value):
                return False
        return True


def check_window(since_ns: int | None, until_ns: int | None) -> None:
    """Docker refuses an `until` before `since` (equal is fine)."""
    if since_ns is not None and until_ns is not None and until_ns < since_ns:
        raise InvalidArgument("`since` time cannot be after `until` time")


def in_window(event: Event, since_ns: int | None, until_ns: int | None) -> bool:
    return (since_ns is None or event.time_ns >= since_ns) and (until_ns is None or event.time_ns <= until_ns)


# -- the bus -------------------------------------------------------------------


class EventBus:
    def __init__(self, history_limit: int = HISTORY_LIMIT) -> None:
        self._subscribers: set[trio.MemorySendChannel[Event]] = set()
        # (position, event), oldest first.
        self._history: deque[tuple[int, Event]] = deque(maxlen=history_limit)
        self._position = 0

    @property
    def position(self) -> int:
        """How many events have been published: `watch(after=bus.position)` misses none published later."""
        return self._position

    def publish(self, event: Event) -> None:
        # Attributes nested: a label may be called `event` or `id`.
        log.info(f"{event.type}.{event.action}", id=event.actor_id, attributes=event.attributes)
        self._position += 1
        self._history.append((self._position, event))
        for channel in list(self._subscribers):
            try:
                channel.send_nowait(event)
            except trio.WouldBlock:
                log.warning("events.subscriber_lagging", dropped=f"{event.type}.{event.action}", id=event.actor_id)
            except trio.BrokenResourceError:
                self._subscribers.discard(channel)

    def history(
        self, since_ns: int | None = None, until_ns: int | None = None, *, after: int | None = None
    ) -> list[Event]:
        """Kept events, oldest first: those in [since, until] and those past position `after`; no bounds: all."""
        windowed = since_ns is not None or until_ns is not None
        if not windowed and after is None:
            return [event for _, event in self._history]
        return [
            event
            for position, event in self._history
            if (windowed and in_window(event, since_ns, until_ns)) or (after is not None and position > after)
        ]

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

    async def watch(
        self,
        event_filter: EventFilter | None = None,
        since_ns: int | None = None,
        until_ns: int | None = None,
        *,
        after: int | None = None,
    ) -> AsyncGenerator[Event, None]:
        """Docker's `/events`: replay, then follow until `until` (forever without one).

        Kept events are replayed when `since` or `until` is given (with only
        `until`, all of them up to it, as dockerd does), and those published
        after position `after`. An `until` already past ends the stream after
        the replay. Close the iterator (aclose) to unsubscribe early.
        """
        check_window(since_ns, until_ns)
        chosen = event_filter or EventFilter()
        with self.subscribe() as live:
            # No checkpoint between subscribing and the snapshot: nothing is missed or repeated.
            if since_ns is None and until_ns is None:
                replay = self.history(after=after) if after is not None else []
            else:
                replay = self.history(since_ns or 0, until_ns, after=after)
            now_ns = time.time_ns()
            for event in replay:
                if chosen.matches(event):
                    yield event
            if until_ns is not None and until_ns < now_ns:
                return
            deadline = trio.current_time() + (until_ns - now_ns) / 1e9 if until_ns is not None else float("inf")
            while True:
                # The cancel scope covers the wait only, never a yield.
                received: Event | None = None
                with trio.move_on_at(deadline):
                    received = await live.receive()
                if received is None:
                    return
                if chosen.matches(received) and in_window(received, since_ns, until_ns):
                    yield received
