"""`GET /events`: the engine's event bus as Docker's stream of JSON messages."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from supervisor.api.request import Request
from supervisor.api.responses import StreamResponse
from supervisor.api.router import Router
from supervisor.errors import InvalidArgument
from supervisor.reactor.engine import Engine
from supervisor.reactor.events import SCOPE, Event, EventFilter, check_window
from supervisor.timestamps import parse_rfc3339_ns

_UNIX_TIME = re.compile(r"^(-?\d+)(?:\.(\d+))?$")


def parse_event_time(value: str | None, name: str) -> int | None:
    """Nanoseconds from Docker's `since`/`until`: `seconds[.fraction]` (what clients send) or RFC 3339.

    Absent or empty is None; `0` is the epoch (`--since 0` replays everything kept).
    """
    if not value:
        return None
    match = _UNIX_TIME.match(value)
    if match:
        seconds, fraction = match.groups()
        # As dockerd: the fraction is read as a decimal fraction of a second, past 9 digits dropped.
        return int(seconds) * 1_000_000_000 + int((fraction or "0")[:9].ljust(9, "0"))
    ns = parse_rfc3339_ns(value)
    if ns is None:
        raise InvalidArgument(
            f"invalid {name} timestamp: {value!r}: expected Unix seconds (with an optional fraction) or RFC 3339"
        )
    return ns


def parse_filters(raw: Any) -> dict[str, list[str]]:
    """Docker's `filters` JSON: {"type": ["container"]}, or the legacy {"type": {"container": true}}."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InvalidArgument("invalid filter: expected a JSON object")
    result: dict[str, list[str]] = {}
    for key, value in raw.items():
        if isinstance(value, dict):
            result[key] = [str(k) for k, v in value.items() if v]
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            result[key] = list(value)
        else:
            raise InvalidArgument(f"invalid filter '{key}': expected a list of strings")
    return result


def event_message(event: Event) -> dict[str, Any]:
    """Docker's events.Message, field for field and in its order.

    `status`, `id` and `from` are the pre-1.22 fields, still sent for container
    and image events (the docker CLI before v25 needs them); Go omits them empty.
    """
    message: dict[str, Any] = {}
    if event.type in ("container", "image"):
        message["status"] = event.action
        message["id"] = event.actor_id
        image = event.attributes.get("image", "") if event.type == "container" else ""
        if image:
            message["from"] = image
    message["Type"] = event.type
    message["Action"] = event.action
    message["Actor"] = {"ID": event.actor_id, "Attributes": dict(sorted(event.attributes.items()))}
    message["scope"] = SCOPE
    message["time"] = event.time_ns // 1_000_000_000
    message["timeNano"] = event.time_ns
    return message


def encode_event(event: Event) -> bytes:
    # Compact plus a newline, as Go's json.Encoder writes each message.
    return json.dumps(event_message(event), separators=(",", ":")).encode() + b"\n"


def register(router: Router, engine: Engine) -> None:
    async def events(request: Request) -> StreamResponse:
        since_ns = parse_event_time(request.q("since"), "since")
        until_ns = parse_event_time(request.q("until"), "until")
        check_window(since_ns, until_ns)
        event_filter = EventFilter.parse(parse_filters(request.q_json("filters")))
        # The stream starts here, not when its body is first asked for: nothing
        # published while the headers go out is missed.
        position = engine.events.position

        async def body() -> AsyncIterator[bytes]:
            watch = engine.events.watch(event_filter, since_ns, until_ns, after=position)
            async with aclosing(watch) as stream:
                async for event in stream:
                    yield encode_event(event)

        return StreamResponse(body, headers=(("Cache-Control", "no-cache"),))

    router.route("GET", "/events", events)
