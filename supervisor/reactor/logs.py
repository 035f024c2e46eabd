"""Reading a container's json-file log: tail, since/until, and following, across rotated files.

The log files are the single source of truth (the launcher writes them,
`isolation/launcher/logfile.py`), so `logs`, `logs -f` and attach all
read them; followers sleep on inotify and stop once the container's exit
has been recorded, which happens only after the launcher has drained its
output into the file.

Rotation: `json.log.N` ... `json.log.1` hold older records (the highest N
the oldest), `json.log` the newest. Every file is read through its own
descriptor, so a rotation or a deletion never takes a file away
mid-read. A reader opens the files from the oldest down to `json.log`
(files only ever move to higher numbers, so that order can never put an
older file after a newer one) and checks that no rotation moved them
meanwhile. A follower watches the container's directory (one inotify
watch for every file the log will have) and knows its file was rotated
away when `json.log` names another inode; the launcher writes nothing to
a file after a newer one took its name, so the follower reads its file
to the end, then goes on with the files after it (found by inode number)
from their starts: no record lost or read twice. A follower more than
`max_files - 1` rotations behind finds the files in between deleted; it
goes on with the oldest one left, as Docker's do.
"""

from __future__ import annotations

import json
import os
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import ExitStack, aclosing
from dataclasses import dataclass
from pathlib import Path

import trio

from supervisor.reactor.container import Container
from supervisor.reactor.inotify import FileWatch, InotifyHub
from supervisor.timestamps import parse_rfc3339_ns

_READ_CHUNK = 1 << 16
# Opening the files again when a rotation moved them between open and check; then take what was opened.
_SNAPSHOT_ATTEMPTS = 20

Inode = tuple[int, int]
# Followers watch the container's directory (<sys/inotify.h> values): writes to json.log, and a new
# json.log renamed into place at a rotation. One watch for every file the log will have.
_IN_MODIFY, _IN_MOVED_TO = 0x2, 0x80
_CHANGES = _IN_MODIFY | _IN_MOVED_TO


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


def select_records(records: Iterable[LogRecord], query: LogQuery) -> list[LogRecord]:
    chosen = [r for r in records if query.accepts(r)]
    if query.tail is None:
        return chosen
    if query.tail <= 0:
        return []
    return list(deque(chosen, maxlen=query.tail))


class LogReader:
    """One log file, by descriptor, read from `pos` — always a line boundary.

    A record still being written (no newline yet) is left for the next read.
    """

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        st = os.fstat(self._fd)
        self.inode: Inode = (st.st_dev, st.st_ino)
        self.pos = 0

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _forward(self, start: int) -> Iterator[tuple[list[bytes], int]]:
        """Batches of complete lines from `start`, each with the offset just past it."""
        size = _READ_CHUNK
        while True:
            data = os.pread(self._fd, size, start)
            end = data.rfind(b"\n")
            if end < 0:
                if len(data) < size:
                    return
                size *= 2  # one line longer than a chunk
                continue
            start += end + 1
            size = _READ_CHUNK
            yield data[:end].split(b"\n"), start

    def read_new(self) -> Iterator[LogRecord]:
        for lines, after in self._forward(self.pos):
            self.pos = after
            for line in lines:
                record = parse_record(line)
                if record is not None:
                    yield record

    def lines_backward(self, end: int) -> Iterator[bytes]:
        """The lines before offset `end` (a line boundary), the last first."""
        pos, rest = end, b""
        while pos > 0:
            n = min(_READ_CHUNK, pos)
            pos -= n
            lines = (os.pread(self._fd, n, pos) + rest).split(b"\n")
            rest = lines[0]
            for line in reversed(lines[1:]):
                if line:
                    yield line
        if rest:
            yield rest

    def end_of_lines(self) -> int:
        """The offset just past the last complete line."""
        pos = os.fstat(self._fd).st_size
        while pos > 0:
            n = min(_READ_CHUNK, pos)
            data = os.pread(self._fd, n, pos - n)
            newline = data.rfind(b"\n")
            if newline >= 0:
                return pos - n + newline + 1
            pos -= n
        return 0

    def first_record(self) -> LogRecord | None:
        for lines, _ in self._forward(0):
            for line in lines:
                record = parse_record(line)
                if record is not None:
                    return record
        return None

    def last_record(self, end: int) -> LogRecord | None:
        for line in self.lines_backward(end):
            record = parse_record(line)
            if record is not None:
                return record
        return None

    def records_backward(self, end: int) -> Iterator[LogRecord]:
        for line in self.lines_backward(end):
            record = parse_record(line)
            if record is not None:
                yield record


def rotated_files(path: Path) -> list[Path]:
    """`json.log.N` beside `path`, the oldest (highest N) first; gaps (a crash mid-rotation) are fine."""
    prefix = path.name + "."
    found = []
    for name in os.listdir(path.parent):
        suffix = name[len(prefix) :]
        if name.startswith(prefix) and suffix.isascii() and suffix.isdigit():
            found.append((int(suffix), name))
    return [path.parent / name for _, name in sorted(found, reverse=True)]


def _inode(path: Path) -> Inode | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino)


def open_files(path: Path) -> list[LogReader]:
    """Every file of the log, oldest first and `path` (json.log) last, as one snapshot.

    Raises FileNotFoundError when `path` is missing (the container's
    directory is gone).
    """
    for attempt in range(_SNAPSHOT_ATTEMPTS):
        names = [*rotated_files(path), path]
        readers: list[LogReader] = []
        opened: list[tuple[Path, Inode]] = []
        try:
            for name in names:
                try:
                    reader = LogReader(name)
                except FileNotFoundError:
                    if name == path:
                        raise
                    continue
                opened.append((name, reader.inode))
                if readers and readers[-1].inode == reader.inode:
                    # Mid-rotation json.log is also linked as json.log.1 for a moment: one file.
                    reader.close()
                    continue
                readers.append(reader)
            last = attempt == _SNAPSHOT_ATTEMPTS - 1
            if last or (
                len(opened) == len(names)
                and [*rotated_files(path), path] == names
                and all(_inode(name) == inode for name, inode in opened)
            ):
                return readers
        except BaseException:
            for reader in readers:
                reader.close()
            raise
        for reader in readers:
            reader.close()
    raise AssertionError("unreachable")


def newer_files(path: Path, inode: Inode) -> list[LogReader]:
    """The log's files written after the one with `inode`, oldest first."""
    readers = open_files(path)
    for i, reader in enumerate(readers):
        if reader.inode == inode:
            for older in readers[: i + 1]:
                older.close()
            return readers[i + 1 :]
    # That file is gone: files are deleted oldest first, so every file left is newer.
    return readers


def _may_match(reader: LogReader, end: int, query: LogQuery) -> bool:
    """Whether a file can hold a record in since/until, judged by its first and last record."""
    if query.since_ns is not None:
        last = reader.last_record(end)
        if last is None or last.time_ns < query.since_ns:
            return False
    if query.until_ns is not None:
        first = reader.first_record()
        if first is None or first.time_ns > query.until_ns:
            return False
    return True


def _tail(readers: list[LogReader], current_end: int, query: LogQuery, count: int) -> list[LogRecord]:
    """The last `count` matching records, newest first, reading each file backwards from its end."""
    picked: list[LogRecord] = []
    if count <= 0:
        return picked
    for reader in reversed(readers):
        end = current_end if reader is readers[-1] else reader.end_of_lines()
        if not _may_match(reader, end, query):
            continue
        for record in reader.records_backward(end):
            if query.accepts(record):
                picked.append(record)
                if len(picked) == count:
                    return picked
    return picked


def history(readers: list[LogReader], query: LogQuery) -> Iterator[LogRecord]:
    """Records matching `query` across the files, oldest first.

    The last reader (json.log) is left past the last complete line it
    held, where following goes on.
    """
    current = readers[-1]
    current_end = current.end_of_lines()
    if query.tail is not None:
        yield from reversed(_tail(readers, current_end, query, query.tail))
    else:
        for reader in readers:
            end = current_end if reader is current else reader.end_of_lines()
            if not _may_match(reader, end, query):
                continue
            for record in reader.read_new():
                if query.accepts(record):
                    yield record
    current.pos = max(current.pos, current_end)


async def _first_of(*waits: Callable[[], Awaitable[object]]) -> None:
    async with trio.open_nursery() as nursery:
        for wait in waits:

            async def run(wait: Callable[[], Awaitable[object]] = wait) -> None:
                await wait()
                nursery.cancel_scope.cancel()

            nursery.start_soon(run)


async def read_log(
    path: Path,
    query: LogQuery,
    *,
    follow: bool,
    inotify: InotifyHub,
    from_end: bool = False,
    done: Callable[[], bool] = lambda: True,
    wait_done: Callable[[], Awaitable[object]] = trio.sleep_forever,
) -> AsyncGenerator[LogRecord, None]:
    """Records of the log at `path` matching `query`; with `follow`, new ones until `done()`.

    `done()` must turn true only once every record is in the files; then
    the follower reads what is left (across rotations) and stops.
    `wait_done` sleeps until it may have.
    """
    readers = open_files(path)
    current = readers.pop()
    pending: list[LogReader] = []
    try:
        if from_end:
            current.pos = current.end_of_lines()
        else:
            for record in history([*readers, current], query):
                yield record
        for reader in readers:
            reader.close()
        readers.clear()
        if not follow:
            return
        with ExitStack() as watching:
            # Watched before the first read below, so no write after that read can go unnoticed.
            watch = _watch_directory(inotify, path.parent, watching)
            if watch is None:
                return
            while True:
                finished = done()
                for record in current.read_new():
                    if query.accepts(record):
                        yield record
                newest = _inode(path)
                if newest is None:
                    return  # the container's directory is gone
                if newest == current.inode:
                    if finished:
                        return
                    await _first_of(watch.wait, wait_done)
                    continue
                # Rotated away. json.log names a newer file only after the last write to this one: finish it.
                for record in current.read_new():
                    if query.accepts(record):
                        yield record
                if not pending:
                    try:
                        pending = newer_files(path, current.inode)
                    except FileNotFoundError:
                        return
                if not pending:
                    await trio.sleep(0.001)  # a snapshot taken mid-rotation; look again
                    continue
                current.close()
                current = pending.pop(0)
    finally:
        for reader in [*readers, current, *pending]:
            reader.close()


def _watch_directory(inotify: InotifyHub, directory: Path, stack: ExitStack) -> FileWatch | None:
    """A watch on the log's directory, which outlives every rotation.

    The directory stays open until the watch is gone: the kernel drops a
    watch by itself when its inode goes, and pyinotify complains about
    removing it then.
    """
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    stack.callback(os.close, fd)
    try:
        return stack.enter_context(inotify.watch(directory, _CHANGES))
    except FileNotFoundError:
        return None


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

    def finished(c: Container) -> bool:
        if c.removed:
            return True
        if until_exit_after is not None:
            return c.exit_count > until_exit_after
        return not c.state.running

    records = read_log(
        container.files.log,
        query,
        follow=follow,
        inotify=inotify,
        from_end=from_end,
        done=lambda: finished(container),
        wait_done=lambda: container.wait_until(finished),
    )
    async with aclosing(records):
        async for record in records:
            yield record
