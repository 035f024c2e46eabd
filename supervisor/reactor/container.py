"""A container while the daemon runs: its record plus the live handles.

State changes go through `Container.transition`, which persists the new
state and wakes everyone waiting on the container (wait, attach, logs -f).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

from supervisor.isolation.cgroups.interface import Cgroup
from supervisor.reactor.broadcast import Broadcast
from supervisor.reactor.model import ContainerSpec, ContainerState
from supervisor.reactor.state import ContainerFiles, StateStore

if TYPE_CHECKING:
    from supervisor.reactor.prepare import Prepared


@dataclass
class Process:
    """Descriptors of a running container; the supervision task owns and closes them."""

    pid: int
    pidfd: int
    stdin_fd: int | None = None
    pty_fd: int | None = None
    # The output pipes' read ends ("stdout", "stderr"): only read if the launcher dies (orphans.py).
    outputs: dict[str, int] = field(default_factory=dict)
    # Its launcher died and the daemon inherited it (orphans.py): a new launcher knows it only by
    # the pidfd the daemon lends it, for an exec.
    orphaned: bool = False

    def close(self) -> None:
        for fd in (self.pidfd, self.stdin_fd, self.pty_fd, *self.outputs.values()):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass


class Container:
    def __init__(
        self,
        container_id: str,
        name: str,
        created: str,
        spec: ContainerSpec,
        state: ContainerState,
        store: StateStore,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.id = container_id
        self.name = name
        self.created = created
        self.spec = spec
        self.state = state
        self.files: ContainerFiles = store.files(container_id)
        self._store = store
        self._changed = Broadcast()
        self._on_change = on_change
        self.exit_count = 0
        # Pauses so far: a health probe that a pause overlapped does not count (reactor/health.py).
        self.pauses = 0
        self.removed = False
        self.removing = False
        self.process: Process | None = None
        self.cgroup: Cgroup | None = None
        # Held while a start or an exit's clean-up is in flight, so they do not interleave.
        self.lock = trio.Lock()
        # Restart bookkeeping for the supervision task: the last backoff delay, when the
        # current run began (monotonic), and the scope of a pending restart's wait.
        self.backoff: float | None = None
        self.started_monotonic = 0.0
        self.restart_wait: trio.CancelScope | None = None
        # `oom` events already published for the current run (the OOM watcher's count).
        self.oom_reported = 0
        # Set by the health monitor's `restart` action: restart after this exit whatever the policy.
        self.restart_requested = False
        # Set once config.json is fsynced, for a create that answered before that (create.py).
        self.config_synced: trio.Event | None = None
        # Its process forked ahead of the start and parked (reactor/prepare.py), if any.
        self.prepared: Prepared | None = None

    @property
    def short_id(self) -> str:
        return self.id[:12]

    def transition(self, state: ContainerState, *, exited: bool = False, persist: bool = True) -> None:
        """`persist=False` for a state about to be superseded (an `--rm` container's exit, its removal next)."""
        self.state = state
        if persist and not self.removed:
            self._store.save_state(self.id, state)
        if exited:
            self.exit_count += 1
        self._notify()

    def cancel_restart(self) -> None:
        """End a pending restart's wait (a stop or remove came while it was `restarting`)."""
        if self.restart_wait is not None:
            self.restart_wait.cancel()

    def mark_removed(self) -> None:
        self.removed = True
        self._notify()

    def _notify(self) -> None:
        self._changed.notify()
        self._on_change()

    async def wait_until(self, predicate: Callable[[Container], bool]) -> None:
        await self._changed.wait_until(lambda: predicate(self))
