"""File-change wake-ups for trio, the one place pyinotify is imported.

One inotify instance serves the whole daemon (`InotifyHub`): creating one
per follower would run `ldconfig` (pyinotify looks libc up each time) and
closing one waits out an RCU grace period, both on the event loop. Each
follower holds a `FileWatch` on a path; the hub's reader task wakes it
when the kernel reports a change, so a quiet file costs nothing.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import trio

with warnings.catch_warnings():
    # pyinotify imports asyncore, deprecated since 3.6 and gone in 3.12 (pyasyncore fills in there).
    warnings.simplefilter("ignore", DeprecationWarning)
    import pyinotify

MODIFIED = (
    pyinotify.IN_MODIFY
    | pyinotify.IN_CLOSE_WRITE
    | pyinotify.IN_ATTRIB
    | pyinotify.IN_MOVE_SELF
    | pyinotify.IN_DELETE_SELF
)


# Entries created, deleted, renamed in or out, or rewritten: what a configs directory watcher wants.
DIRECTORY_CHANGES = (
    pyinotify.IN_CREATE
    | pyinotify.IN_DELETE
    | pyinotify.IN_MOVED_TO
    | pyinotify.IN_MOVED_FROM
    | pyinotify.IN_CLOSE_WRITE
    | pyinotify.IN_ATTRIB
)


class FileWatch:
    """Changes to one path since the last `wait()`."""

    def __init__(self) -> None:
        self._changed = False
        self._event = trio.Event()

    def notify(self) -> None:
        self._changed = True
        self._event.set()

    async def wait(self) -> None:
        """Return once the file has changed since the previous call (at once if it already has)."""
        while not self._changed:
            await self._event.wait()
        self._changed = False
        self._event = trio.Event()


class InotifyHub:
    def __init__(self) -> None:
        self._manager = pyinotify.WatchManager()
        self._notifier = pyinotify.Notifier(self._manager, default_proc_fun=self._dispatch, timeout=0)
        self._watches: dict[int, set[FileWatch]] = {}

    def _dispatch(self, event: pyinotify.Event) -> None:
        for watch in self._watches.get(event.wd, ()):
            watch.notify()

    async def run(self) -> None:
        """Read and dispatch events forever; run it in the nursery that outlives every watch."""
        try:
            while True:
                await trio.lowlevel.wait_readable(self._manager.get_fd())
                if self._notifier.check_events(timeout=0):
                    self._notifier.read_events()
                    self._notifier.process_events()
        finally:
            self._manager.close()

    @contextmanager
    def watch(self, path: Path, mask: int = MODIFIED) -> Iterator[FileWatch]:
        # Watching one inode twice gives the same descriptor, so watches share it and the last one removes it.
        result = self._manager.add_watch(str(path), mask, quiet=False)
        wd = result.get(str(path), -1)
        if wd < 0:
            raise FileNotFoundError(str(path))
        watch = FileWatch()
        self._watches.setdefault(wd, set()).add(watch)
        try:
            yield watch
        finally:
            watchers = self._watches.get(wd)
            if watchers is not None:
                watchers.discard(watch)
                if not watchers:
                    del self._watches[wd]
                    # quiet: the kernel drops the watch itself when the file is deleted.
                    self._manager.rm_watch(wd, quiet=True)
