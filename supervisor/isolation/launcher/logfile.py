"""A container's log file in Docker's json-file shape, written by the launcher.

One JSON object per line: {"log": text, "stream": "stdout"|"stderr",
"time": RFC 3339 with nanoseconds}. Each output chunk is split at
newlines so a record is one line (or the unfinished tail of one, written
at once rather than held back, so prompts show and nothing waits in
memory if the launcher dies). Concatenating the `log` fields of a stream
gives back its bytes (decoded as UTF-8, invalid bytes replaced).

Rotation (Docker's json-file `max-size`/`max-file`): before a record that
would take `json.log` past `max_size` bytes, the file moves to
`json.log.1`, older ones shift up (`.1` -> `.2` ...), the one beyond
`max_files - 1` rotated files goes, and a fresh `json.log` starts; so a
file holds whole records and exceeds `max_size` only when one record
alone does. Every step is a rename or a link, so `json.log` always names
a file (the new one replaces the old in one rename), and a reader that
compares inode numbers can tell when its file was rotated away: the
launcher writes nothing more to a file once a newer one is `json.log`.
A crash between steps leaves `json.log` also linked as `json.log.1`;
the next `LogFile` on the path finishes that rotation.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator

from supervisor.isolation.launcher.journal import log
from supervisor.timestamps import rfc3339_nano

_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
_MODE = 0o640


def iter_records(stream: str, chunk: bytes, now_ns: int) -> Iterator[bytes]:
    """One encoded record (a JSON line ending in a newline) per line of `chunk`."""
    stamp = rfc3339_nano(now_ns)
    for line in chunk.splitlines(keepends=True):
        record = {"log": line.decode("utf-8", errors="replace"), "stream": stream, "time": stamp}
        yield json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def encode_records(stream: str, chunk: bytes, now_ns: int) -> bytes:
    return b"".join(iter_records(stream, chunk, now_ns))


def rotated_path(path: str, n: int) -> str:
    return f"{path}.{n}"


class LogFile:
    """Appends records to `path`, rotating it at `max_size` bytes (None: never) into `max_files` files in all.

    `max_files` counts `json.log` itself, as Docker's does: 1 keeps only the
    current file (a full one is replaced by an empty one).
    """

    def __init__(self, path: str, max_size: int | None = None, max_files: int = 1) -> None:
        self._path = path
        self._max_size = max_size if max_size and max_size > 0 else None
        self._max_files = max(1, max_files)
        self._recover()
        self._fd = os.open(path, _FLAGS, _MODE)
        self._size = os.fstat(self._fd).st_size

    def write(self, stream: str, chunk: bytes) -> None:
        now = time.time_ns()
        if self._max_size is None:
            self._write_all(encode_records(stream, chunk, now))
            return
        batch: list[bytes] = []
        pending = 0
        for record in iter_records(stream, chunk, now):
            if batch or self._size:
                if self._size + pending + len(record) > self._max_size:
                    self._write_batch(batch)
                    batch, pending = [], 0
                    self._rotate()
            batch.append(record)
            pending += len(record)
        self._write_batch(batch)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    # -- internals --------------------------------------------------------

    def _write_batch(self, batch: list[bytes]) -> None:
        if batch:
            self._write_all(b"".join(batch))

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            self._size += written
            view = view[written:]

    def _rotate(self) -> None:
        try:
            for n in range(self._max_files - 2, 0, -1):
                try:
                    os.rename(rotated_path(self._path, n), rotated_path(self._path, n + 1))
                except FileNotFoundError:
                    pass
            if self._max_files > 1:
                # json.log keeps its name until the new file replaces it: link, then rename the link into place.
                link = self._path + ".link"
                _unlink_quietly(link)
                os.link(self._path, link)
                os.rename(link, rotated_path(self._path, 1))
            fd = self._fresh_file()
        except OSError as err:
            # Keep appending to the current file; try again once another max_size has been written.
            log.warning("container.log_rotate_failed", path=self._path, error=str(err))
            self._size = 0
            return
        os.close(self._fd)
        self._fd = fd
        self._size = 0

    def _fresh_file(self) -> int:
        """An empty file renamed over `json.log` in one step; readers never find the path missing."""
        new = self._path + ".new"
        fd = os.open(new, _FLAGS | os.O_TRUNC, _MODE)
        try:
            os.rename(new, self._path)
        except OSError:
            os.close(fd)
            _unlink_quietly(new)
            raise
        return fd

    def _recover(self) -> None:
        """Finish a rotation a crash interrupted: `json.log` still also named `json.log.1` gets its successor."""
        _unlink_quietly(self._path + ".link")
        _unlink_quietly(self._path + ".new")
        try:
            current = os.stat(self._path)
            first = os.stat(rotated_path(self._path, 1))
        except FileNotFoundError:
            return
        if (current.st_dev, current.st_ino) == (first.st_dev, first.st_ino):
            os.close(self._fresh_file())


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
