"""`corral events`: the daemon's event stream, printed as `docker events` prints it."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
import time
from collections.abc import Iterable, Iterator
from decimal import Decimal
from typing import Any

from supervisor.cli.client import ClientResponse
from supervisor.cli.context import CliContext, CommandFailed

# Go's time.ParseDuration: one or more decimal numbers, each with a unit.
_GO_DURATION = re.compile(r"^([-+]?)((?:(?:\d+\.?\d*|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+)$")
_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_NS = {
    "ns": Decimal(1),
    "us": Decimal(10**3),
    "µs": Decimal(10**3),
    "μs": Decimal(10**3),
    "ms": Decimal(10**6),
    "s": Decimal(10**9),
    "m": Decimal(60 * 10**9),
    "h": Decimal(3600 * 10**9),
}
_UNIX = re.compile(r"^-?\d+(?:\.\d+)?$")
_TIME = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})"
    r"(?:T(\d{2})(?::(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?)?"
    r"(Z|z|[+-]\d{2}:\d{2})?$"
)


def _duration_ns(text: str) -> int | None:
    match = _GO_DURATION.match(text)
    if not match:
        return None
    total = sum(Decimal(n) * _UNIT_NS[unit] for n, unit in _DURATION_PART.findall(match.group(2)))
    return int(-total if match.group(1) == "-" else total)


def cli_timestamp(value: str, now_ns: int | None = None) -> str:
    """The docker CLI's --since/--until: what it sends for `10m`, `2026-01-02T15:04:05`, `1700000000.5`, ...

    A Go duration counts back from now (whole seconds, as the docker CLI sends
    it); RFC 3339 times and dates without a zone are local; Unix seconds pass
    through. The result is `seconds.nanoseconds`.
    """
    now_ns = time.time_ns() if now_ns is None else now_ns
    ago = _duration_ns(value) if value != "0" else None
    if ago is not None:
        return str((now_ns - ago) // 1_000_000_000)
    match = _TIME.match(value)
    if match:
        year, month, day, hour, minute, second, fraction, zone = match.groups()
        tz: dt.tzinfo
        if zone in ("Z", "z"):
            tz = dt.UTC
        elif zone:
            sign = 1 if zone[0] == "+" else -1
            tz = dt.timezone(sign * dt.timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
        else:
            # As the docker CLI: the zone in force now, whatever the date.
            offset = dt.datetime.fromtimestamp(now_ns / 1e9).astimezone().utcoffset() or dt.timedelta(0)
            tz = dt.timezone(offset)
        try:
            moment = dt.datetime(
                int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0), tzinfo=tz
            )
        except ValueError as err:
            raise CommandFailed(f"invalid time {value!r}: {err}") from None
        nanos = int((fraction or "0").ljust(9, "0"))
        return f"{int(moment.timestamp())}.{nanos:09d}"
    if "-" in value.lstrip("-") or not _UNIX.match(value):
        raise CommandFailed(f"failed to parse value as time or duration: {value!r}")
    return value


def _local_rfc3339_nano(ns: int) -> str:
    """Go's `2006-01-02T15:04:05.000000000Z07:00` in the local zone, as `docker events` prints times."""
    seconds, nanos = divmod(ns, 1_000_000_000)
    moment = dt.datetime.fromtimestamp(seconds).astimezone()
    offset = moment.utcoffset() or dt.timedelta(0)
    if offset:
        minutes = int(offset.total_seconds()) // 60
        sign = "+" if minutes >= 0 else "-"
        zone = f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    else:
        zone = "Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos:09d}{zone}"


def format_event(message: dict[str, Any]) -> str:
    """One event as `docker events` prints it by default (time, type, action, actor, sorted attributes)."""
    parts = []
    ns = message.get("timeNano") or (message.get("time") or 0) * 1_000_000_000
    if ns:
        parts.append(_local_rfc3339_nano(ns) + " ")
    actor = message.get("Actor") or {}
    parts.append(f"{message.get('Type', '')} {message.get('Action', '')} {actor.get('ID', '')}")
    attributes = actor.get("Attributes") or {}
    if attributes:
        parts.append(" (" + ", ".join(f"{k}={attributes[k]}" for k in sorted(attributes)) + ")")
    return "".join(parts)


def parse_filter_flags(items: Iterable[str]) -> dict[str, list[str]]:
    """`-f key=value` flags as the docker CLI reads them: key lower-cased, both trimmed."""
    filters: dict[str, list[str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise CommandFailed(f"bad format of filter (expected name=value): {item!r}")
        filters.setdefault(key.strip().lower(), []).append(value.strip())
    return filters


def _lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    pending = b""
    for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        yield from (line for line in complete if line.strip())
    if pending.strip():
        yield pending


def cmd_events(ctx: CliContext, args: argparse.Namespace) -> int:
    if args.format not in (None, "", "json", "{{json .}}"):
        raise CommandFailed(f"unsupported format {args.format!r}: corral events prints its own lines or --format json")
    as_json = bool(args.format)
    query: dict[str, Any] = {}
    now_ns = time.time_ns()
    if args.since:
        query["since"] = cli_timestamp(args.since, now_ns)
    if args.until:
        query["until"] = cli_timestamp(args.until, now_ns)
    filters = parse_filter_flags(args.filter)
    if filters:
        query["filters"] = filters
    out = sys.stdout
    with ctx.client() as client, client.stream("GET", "/events", query=query) as response:
        if not response.ok:
            failure = ClientResponse(response.status, response.headers, b"".join(response.iter_chunks()))
            raise CommandFailed(f"Error response from daemon: {failure.message}", 1)
        for line in _lines(response.iter_chunks()):
            message = json.loads(line)
            out.write((json.dumps(message, separators=(",", ":")) if as_json else format_event(message)) + "\n")
            out.flush()
    return 0


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    events = commands.add_parser("events", help="get real time events from the daemon")
    events.add_argument("--since", help="show events since a timestamp, Unix time or duration (10m)")
    events.add_argument("--until", help="stream events until a timestamp, Unix time or duration")
    events.add_argument(
        "-f", "--filter", action="append", default=[], help="filter output (container=web, event=die, label=k=v, ...)"
    )
    events.add_argument("--format", help="'json': one JSON message per line")
    events.set_defaults(func=cmd_events)
