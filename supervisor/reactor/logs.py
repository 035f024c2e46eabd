"""Reading a container's json-file log: tail, since/until, and following.

The log file is the single source of truth (the launcher writes it), so
`logs`, `logs -f` and attach all read it; followers sleep on inotify and
stop once the container's exit has been recorded, which happens only
after the launcher has drained its output into the file.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import trio

from supervisor.reactor.container import Container
from supervisor.reactor.inotify import InotifyHub
from supervisor.timestamps import parse_rfc3339_ns

_READ_CHUNK = 1 << 16


@dataclass(frozen=True)
class LogRecord:
    stream: str
    text: str
    time: str

    @property
    def time_ns(self) -> int:
        return parse_rfc3339_ns(self.time) or 0


@dataclass(frozen=True)
class LogQuery:
    stdout: bool = True
    stderr: bool = True
    tail: int | None = None  # None: all
    since_ns: int | None = None
    until_ns: int | None = None

    def accepts(self, record: LogRecord) -> bool:
        if record.stream == "stdout" and not self.stdout:
            return False
        if record.stream == "stderr" and not self.stderr:
            return False
        if self.since_ns is not None and record.time_ns < self.since_ns:
            return False
        if self.until_ns is not None and record.time_ns > self.until_ns:
            return False
        return True


def parse_record(line: bytes) -> LogRecord | None:
    try:
        data = json.loads(line)
        return LogRecord(stream=data["stream"], text=data["log"], time=data["time"])
    except (ValueError, KeyError, TypeError):
        return None


class LogReader:
    """Reads whole lines from a growing file, remembering where it stopped."""

    def __init__(self, path: Path) -> None:
        self._file = open(path, "rb")
        self._partial = b""

    def read_new(self) -> list[LogRecord]:
        data = self._partial + self._file.read()
        lines = data.split(b"\n")
        self._partial = lines.pop()
        return [r for r in map(parse_record, lines) if r is not None]

    def skip_to_end(self) -> None:
        self._file.seek(0, 2)
        self._partial = b""

    def close(self) -> None:
        self._file.close()


def select_records(records: Iterable[LogRecord], query: LogQuery) -> list[LogRecord]:
    chosen = [r for r in records if query.accepts(r)]
    if query.tail is None:
        return chosen
    if query.tail <= 0:
        return []
    return list(deque(chosen, maxlen=query.tail))


async def _first_of(*waits: Callable[[], object]) -> None:
    async with trio.open_nursery() as nursery:
        for wait in waits:

            async def run(wait: Callable[[], object] = wait) -> None:
                await wait()  # type: ignore[misc]
                nursery.cancel_scope.cancel()

            nursery.start_soon(run)


async def stream_log(
    container: Container,
    query: LogQuery,
    *,
    follow: bool,
    inotify: InotifyHub,
    from_end: bool = False,
    until_exit_after: int | None = None,
) -> AsyncIterator[LogRecord]:
    """Records matching `query`; with `follow`, new ones as they come until the container stops.

    `until_exit_after` (an exit count) makes the stream wait for that many
    exits instead of stopping while the container is not running yet — the
    shape attach needs, which connects before start.
    """
    reader = LogReader(container.files.log)
    try:
        # Watch from the moment the file is open, so no write between reading and watching is missed.
        with inotify.watch(container.files.log) if follow else nullcontext() as watch:
            if from_end:
                reader.skip_to_end()
            else:
                for record in select_records(reader.read_new(), query):
                    yield record
            if watch is None:
                return

            def finished(c: Container) -> bool:
                if c.removed:
                    return True
                if until_exit_after is not None:
                    return c.exit_count > until_exit_after
                return not c.state.running

            while True:
                done = finished(container)
                for record in reader.read_new():
                    if query.accepts(record):
                        yield record
                if done:
                    return
                await _first_of(watch.wait, lambda: container.wait_until(finished))
    finally:
        reader.close()
