"""File-change wake-ups for trio, the one place pyinotify is imported.

pyinotify brings its own loop; we only borrow its watch manager and
event reading, and wait on its descriptor with trio, so a follower costs
nothing while the file is quiet.
"""

from __future__ import annotations

import warnings
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


class FileWatch:
    """Wakes `wait()` after the watched file changes; use as a context manager."""

    def __init__(self, path: Path, mask: int = MODIFIED) -> None:
        self._manager = pyinotify.WatchManager()
        self._notifier = pyinotify.Notifier(self._manager, default_proc_fun=_ignore, timeout=0)
        result = self._manager.add_watch(str(path), mask, quiet=False)
        if result.get(str(path), -1) < 0:
            self._manager.close()
            raise FileNotFoundError(str(path))

    async def wait(self) -> None:
        await trio.lowlevel.wait_readable(self._manager.get_fd())
        # check_events with timeout 0 only tells whether to read; read_events drains the queue.
        if self._notifier.check_events(timeout=0):
            self._notifier.read_events()
            self._notifier.process_events()

    def close(self) -> None:
        self._manager.close()

    def __enter__(self) -> FileWatch:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _ignore(_event: object) -> None:
    return None
