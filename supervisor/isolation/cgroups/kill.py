"""Sending SIGKILL to the processes listed in a cgroup."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterable

from supervisor.isolation.cgroups.fs import read_pids

KILL_ROUNDS = 50


def kill_pids(pids: Iterable[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def kill_listed(procs_file: str, *, rounds: int = KILL_ROUNDS) -> None:
    """Without a freezer: SIGKILL what cgroup.procs lists until it lists nothing new.

    Racy against a fork bomb (a child forked after the read escapes one
    round), hence the rounds; the freezer or cgroup.kill paths are exact.
    """
    signalled: set[int] = set()
    for _ in range(rounds):
        fresh = [pid for pid in read_pids(procs_file) if pid not in signalled]
        if not fresh:
            return
        kill_pids(fresh)
        signalled.update(fresh)
