"""Unit tests of the event bus: Docker's filter model, history replay, time windows, the wire shape."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import aclosing
from typing import Any

import pytest
import trio

from supervisor.api.events import encode_event, event_message, parse_event_time, parse_filters
from supervisor.cli.context import CommandFailed
from supervisor.cli.events import cli_timestamp, format_event, parse_filter_flags
from supervisor.errors import InvalidArgument
from supervisor.reactor.events import Event, EventBus, EventFilter, check_window

CID = "3f9e" + "0" * 60
OTHER = "a1b2" + "1" * 60


def ev(action: str = "start", actor: str = CID, type_: str = "container", t: int = 0, **attrs: str) -> Event:
    attributes = {"image": "busybox", "name": "web", **attrs} if type_ == "container" else dict(attrs)
    return Event(type_, action, actor, attributes, time_ns=t or time.time_ns())


def flt(**args: list[str]) -> EventFilter:
    return EventFilter.parse(args)


@pytest.mark.parametrize(
    ("args", "event", "expected"),
    [
        ({}, ev(), True),
        ({"type": ["container"]}, ev(), True),
        ({"type": ["image"]}, ev(), False),
        ({"type": ["image", "container"]}, ev(), True),
        ({"event": ["start"]}, ev(), True),
        ({"event": ["start", "die"]}, ev("die"), True),
        ({"event": ["stop"]}, ev("start"), False),
        ({"event": ["sta"]}, ev("start"), False),  # exact, no prefix
        # Docker #25798: health_status (or exec_*) in the filter makes every value a prefix.
        ({"event": ["health_status"]}, ev("health_status: healthy"), True),
        ({"event": ["health_status"]}, ev("health_status: unhealthy"), True),
        ({"event": ["health_status: healthy"]}, ev("health_status: healthy"), True),
        ({"event": ["health_status: healthy"]}, ev("health_status: unhealthy"), False),
        ({"event": ["health_status", "die"]}, ev("die"), True),
        ({"event": ["health_status"]}, ev("start"), False),
        ({"event": ["exec_start"]}, ev("exec_start: sh -c true"), True),
        # container: full id, id prefix, name, name prefix.
        ({"container": [CID]}, ev(), True),
        ({"container": [CID[:12]]}, ev(), True),
        ({"container": ["web"]}, ev(), True),
        ({"container": ["we"]}, ev(), True),
        ({"container": ["db"]}, ev(), False),
        ({"container": ["db", "web"]}, ev(), True),
        ({"container": [OTHER]}, ev(), False),
        # The per-type keys apply to every event, as in dockerd.
        ({"network": ["bridge"]}, ev(), False),
        ({"volume": [CID[:4]]}, ev(), True),
        # image: the container's image, with or without a tag; an image event's own name.
        ({"image": ["busybox"]}, ev(), True),
        ({"image": ["busybox"]}, ev(image="busybox:latest"), True),
        ({"image": ["busybox"]}, ev(image="docker.io/library/busybox:1.36"), True),
        ({"image": ["busybox:latest"]}, ev(image="busybox:latest"), True),
        ({"image": ["busybox:latest"]}, ev(), False),
        ({"image": ["alpine"]}, ev(), False),
        ({"image": ["busybox"]}, ev("tag", "sha256:abc", "image", name="busybox:latest"), True),
        ({"image": ["sha256:abc"]}, ev("delete", "sha256:abc", "image"), True),
        # label: key, key=value, all of them; matched against every attribute.
        ({"label": ["tier"]}, ev(tier="web"), True),
        ({"label": ["tier=web"]}, ev(tier="web"), True),
        ({"label": ["tier=db"]}, ev(tier="web"), False),
        ({"label": ["tier"]}, ev(), False),
        ({"label": ["tier=web", "team=a"]}, ev(tier="web"), False),
        ({"label": ["tier=web", "team=a"]}, ev(tier="web", team="a"), True),
        ({"label": ["name=web"]}, ev(), True),
        ({"scope": ["local"]}, ev(), True),
        ({"scope": ["swarm"]}, ev(), False),
        # Keys combine with AND.
        ({"container": ["web"], "event": ["die"]}, ev("die", exitCode="3"), True),
        ({"container": ["web"], "event": ["die"]}, ev("start"), False),
        ({"container": ["db"], "event": ["die"]}, ev("die"), False),
    ],
)
def test_filter_matching(args: dict[str, list[str]], event: Event, expected: bool) -> None:
    assert EventFilter.parse(args).matches(event) is expected


def test_unknown_filter_key_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="invalid filter 'evnt'"):
        EventFilter.parse({"evnt": ["start"]})


def test_parse_filters_json_forms() -> None:
    assert parse_filters(None) == {}
    assert parse_filters({"event": ["start", "die"]}) == {"event": ["start", "die"]}
    # The legacy map form; false values do not count.
    assert parse_filters({"event": {"start": True, "die": False}}) == {"event": ["start"]}
    for bad in (["event"], {"event": "start"}, {"event": [1]}):
        with pytest.raises(InvalidArgument):
            parse_filters(bad)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, None),
        ("", None),
        ("0", 0),
        ("1", 1_000_000_000),
        ("1700000000.5", 1_700_000_000_500_000_000),
        ("1700000000.000000001", 1_700_000_000_000_000_001),
        ("1700000000.1234567891", 1_700_000_000_123_456_789),
        ("2023-11-14T22:13:20Z", 1_700_000_000_000_000_000),
        ("2023-11-14T23:13:20.25+01:00", 1_700_000_000_250_000_000),
    ],
)
def test_event_times(text: str | None, expected: int | None) -> None:
    assert parse_event_time(text, "since") == expected


@pytest.mark.parametrize("text", ["yesterday", "1.2.3", "10m", "2023-11-14"])
def test_bad_event_times(text: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid since timestamp"):
        parse_event_time(text, "since")


def test_window_check() -> None:
    check_window(None, 5)
    check_window(5, 5)
    with pytest.raises(InvalidArgument, match="cannot be after"):
        check_window(6, 5)


def test_message_has_dockers_shape() -> None:
    event = Event("container", "die", CID, {"name": "web", "image": "busybox", "exitCode": "3"}, 1_700_000_000_123)
    message = event_message(event)
    assert list(message) == ["status", "id", "from", "Type", "Action", "Actor", "scope", "time", "timeNano"]
    assert message == {
        "status": "die",
        "id": CID,
        "from": "busybox",
        "Type": "container",
        "Action": "die",
        "Actor": {"ID": CID, "Attributes": {"exitCode": "3", "image": "busybox", "name": "web"}},
        "scope": "local",
        "time": 1_700,
        "timeNano": 1_700_000_000_123,
    }
    assert list(message["Actor"]["Attributes"]) == ["exitCode", "image", "name"]
    line = encode_event(event)
    assert line.endswith(b"\n") and b" " not in line and json.loads(line) == message
    # Other types carry no legacy fields; Go leaves out an empty `from`.
    network = event_message(Event("network", "connect", "n1", {}, 5))
    assert "status" not in network and "id" not in network and "from" not in network
    image = event_message(Event("image", "tag", "sha256:x", {"name": "busybox:latest"}, 5))
    assert image["status"] == "tag" and image["id"] == "sha256:x" and "from" not in image


# -- the bus ---------------------------------------------------------------------


def test_history_is_bounded_and_windowed() -> None:
    bus = EventBus(history_limit=3)
    for i in range(1, 6):
        bus.publish(ev(str(i), t=i * 10))
    assert bus.position == 5
    assert [e.action for e in bus.history(0)] == ["3", "4", "5"]
    assert [e.action for e in bus.history(40)] == ["4", "5"]
    assert [e.action for e in bus.history(0, 40)] == ["3", "4"]
    assert [e.action for e in bus.history(None, 30)] == ["3"]
    # Past a position, whatever the times.
    assert [e.action for e in bus.history(100, after=4)] == ["5"]
    assert [e.action for e in bus.history(after=4)] == ["5"]
    assert len(bus.history()) == 3


async def test_publisher_never_waits_for_a_slow_subscriber() -> None:
    bus = EventBus()
    with bus.subscribe() as slow:
        for _ in range(3000):  # more than its buffer
            bus.publish(ev())
        received = 0
        while True:
            try:
                slow.receive_nowait()
            except trio.WouldBlock:
                break
            received += 1
    assert 0 < received < 3000
    assert not bus._subscribers


async def collect(stream: Any, limit: int | None = None) -> list[Event]:
    out: list[Event] = []
    async with aclosing(stream) as events:
        async for event in events:
            out.append(event)
            if limit is not None and len(out) == limit:
                break
    return out


async def test_watch_replays_since_then_follows() -> None:
    bus = EventBus()
    now = time.time_ns()
    bus.publish(ev("create", t=now - 3_000_000_000))
    bus.publish(ev("start", t=now - 2_000_000_000, name="db"))
    bus.publish(ev("die", t=now - 1_000_000_000))
    got: list[Event] = []

    async def reader() -> None:
        got.extend(await collect(bus.watch(flt(container=["web"]), since_ns=now - 2_500_000_000), limit=2))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        bus.publish(ev("start", name="db"))  # filtered out
        bus.publish(ev("destroy"))
    assert [e.action for e in got] == ["die", "destroy"]
    assert not bus._subscribers  # closing the stream unsubscribed


async def test_watch_without_times_is_live_only() -> None:
    bus = EventBus()
    bus.publish(ev("create"))
    got: list[Event] = []

    async def reader() -> None:
        got.extend(await collect(bus.watch(), limit=1))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        bus.publish(ev("start"))
    assert [e.action for e in got] == ["start"]


async def test_watch_after_position_misses_nothing() -> None:
    bus = EventBus()
    bus.publish(ev("create"))
    position = bus.position
    bus.publish(ev("start"))  # published before the reader subscribed
    got: list[Event] = []

    async def reader() -> None:
        got.extend(await collect(bus.watch(after=position), limit=2))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        bus.publish(ev("die"))
    assert [e.action for e in got] == ["start", "die"]


async def test_until_in_the_past_replays_and_ends() -> None:
    bus = EventBus()
    now = time.time_ns()
    for i, action in enumerate(["create", "start", "die", "destroy"]):
        bus.publish(ev(action, t=now - (10 - i) * 1_000_000_000))
    got = await collect(bus.watch(since_ns=now - 9_500_000_000, until_ns=now - 7_500_000_000))
    assert [e.action for e in got] == ["start", "die"]
    # Only `until`: everything kept up to it (dockerd does the same).
    got = await collect(bus.watch(until_ns=now - 8_500_000_000))
    assert [e.action for e in got] == ["create", "start"]
    assert not bus._subscribers


async def test_until_in_the_future_follows_then_ends(autojump_clock: trio.abc.Clock) -> None:
    bus = EventBus()
    until = time.time_ns() + 5_000_000_000
    got: list[Event] = []

    async def reader() -> None:
        got.extend(await collect(bus.watch(until_ns=until)))

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await trio.testing.wait_all_tasks_blocked()
            bus.publish(ev("start"))
            bus.publish(ev("die", t=until + 1))  # stamped past `until`: left out
    assert [e.action for e in got] == ["start"]
    assert not bus._subscribers


async def test_watch_refuses_until_before_since() -> None:
    with pytest.raises(InvalidArgument):
        await collect(EventBus().watch(since_ns=10, until_ns=5))


# -- the CLI's side ------------------------------------------------------------


@pytest.fixture
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


NOW = 1_700_000_000_250_000_000  # 2023-11-14T22:13:20.25Z


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10m", "1699999400"),
        ("1h30m", "1699994600"),
        ("1.5s", "1699999998"),
        ("0", "0"),
        ("1700000000", "1700000000"),
        ("1700000000.5", "1700000000.5"),
        ("2023-11-14T22:13:20Z", "1700000000.000000000"),
        ("2023-11-14T22:13:20.000000001Z", "1700000000.000000001"),
        ("2023-11-14T23:13:20+01:00", "1700000000.000000000"),
        ("2023-11-14T22:13:20", "1700000000.000000000"),
        ("2023-11-14T22:13", "1699999980.000000000"),
        ("2023-11-14", "1699920000.000000000"),
    ],
)
def test_cli_timestamps(utc: None, text: str, expected: str) -> None:
    assert cli_timestamp(text, NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "2023-13-01", "10 minutes", "1.2.3"])
def test_bad_cli_timestamps(utc: None, text: str) -> None:
    with pytest.raises(CommandFailed):
        cli_timestamp(text, NOW)


def test_default_line_format(utc: None) -> None:
    message = event_message(
        Event("container", "start", CID, {"name": "web", "image": "busybox", "tier": "a"}, 1_700_000_000_000_000_042)
    )
    assert format_event(message) == (
        f"2023-11-14T22:13:20.000000042Z container start {CID} (image=busybox, name=web, tier=a)"
    )
    assert format_event(event_message(Event("network", "prune", "", {}, 1_700_000_000_000_000_000))) == (
        "2023-11-14T22:13:20.000000000Z network prune "
    )


def test_default_line_format_local_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    try:
        message = event_message(Event("container", "die", CID, {}, 1_700_000_000_000_000_000))
        assert format_event(message).startswith("2023-11-15T03:43:20.000000000+05:30 container die ")
    finally:
        monkeypatch.undo()
        time.tzset()


def test_filter_flags() -> None:
    assert parse_filter_flags(["container=web", " Event = die", "event=start", "label=a=b"]) == {
        "container": ["web"],
        "event": ["die", "start"],
        "label": ["a=b"],
    }
    with pytest.raises(CommandFailed):
        parse_filter_flags(["container"])
