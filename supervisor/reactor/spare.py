"""The next container, begun ahead: its ID, its cgroup and a process forked into it.

Most of what a `docker run` waits for between its create and its start
does not depend on the container: forking the launcher (and the
copy-on-write faults after it), a network namespace with its loopback up,
making the cgroup directories. So while the daemon is idle, a task picks
the ID the next create will use, makes its cgroup (no limits yet) and asks
the launcher for a spare process in it (launcher/spares.py). The next
create takes that ID; its prepare (reactor/prepare.py) writes the
container's limits into the cgroup and the launcher hands the spare the
container's LaunchSpec instead of forking. The spare also comes with the
container's directory laid out in `containers/.spare-<id>/` (snapshot dirs,
scratch, log) and an init layer (storage/initlayer.py) over the last
create's image: a dozen file creations the create replaces with one
rename (dropping the init layer if its image differs). Over that
directory the spare's process builds the tree of a plain container of that
image (overlay, /proc, /dev, /sys, /etc files, masked paths) and pivots
into it: a create that wants that tree (most `docker run`s of the same
image) only sets its hostname and execs; the launcher forks afresh for one
that wants another (launcher/spares.py).

One spare at a time, made `SPARE_DELAY` after the last one was taken, so
a burst of creates is not slowed by making spares between them (they fork
afresh). It goes with the daemon: discarded at shutdown; after a `kill -9`
the launcher kills it with the closed connection and the next daemon's
stale-cgroup sweep removes its cgroup (reactor/restore.py). None is made
when the daemon prepares nothing (`--prepare-window 0`).
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import structlog
import trio

from supervisor.isolation.cgroups.interface import Cgroup
from supervisor.isolation.cgroups.resources import Resources
from supervisor.isolation.launcher.client import LauncherLost, NotPrepared
from supervisor.isolation.spec import LaunchSpec
from supervisor.reactor.initlayer import with_init_layer
from supervisor.reactor.launchspec import build_launch_spec
from supervisor.reactor.model import ContainerSpec
from supervisor.reactor.state import ContainerFiles
from supervisor.storage.initlayer import INIT_DIR, init_layer_path

if TYPE_CHECKING:
    from supervisor.reactor.engine import Engine

log = structlog.get_logger(__name__)

SPARE_DELAY = 0.05
STAGING_PREFIX = ".spare-"
# After a spare could not be made (no launcher, a full pids limit): wait this long before the next try.
_RETRY_DELAY = 5.0


@dataclass
class Spare:
    id: str
    cgroup: Cgroup
    # The container's directory laid out ahead (ContainerFiles.lay_out), with an init layer
    # (storage/initlayer.py) over these image layers: the last create's image, the likeliest next.
    staging: Path | None = None
    init_over: tuple[Path, ...] = ()
    # Set once a create has passed it on to its prepare task, which then answers for it.
    handed_over: bool = False

    def take_dir(self, container_dir: Path, layers: Sequence[Path]) -> bool:
        """Move the directory laid out ahead to `container_dir`; False if there is none to move.

        Its init layer stays only if it was made over `layers` (else the prepare makes one).
        """
        if self.staging is None:
            return False
        try:
            os.rename(self.staging, container_dir)
        except OSError as err:
            log.info("spare.dir_unused", error=str(err))
            return False
        self.staging = None
        if tuple(layers) != self.init_over:
            shutil.rmtree(container_dir / INIT_DIR, ignore_errors=True)
        return True


class SpareSlot:
    """Where the spare waits for a create."""

    def __init__(self) -> None:
        self._ready: Spare | None = None
        self._taken = trio.Event()
        # The image layers of the last create, for the next spare's init layer.
        self.last_layers: tuple[Path, ...] = ()

    def take(self) -> Spare | None:
        """The spare, now the caller's to use or discard (discard_spare); None if there is none."""
        spare, self._ready = self._ready, None
        if spare is not None:
            self._taken.set()
        return spare

    async def hold(self, engine: Engine, spare: Spare) -> None:
        """Offer `spare` until a create takes it; discarded if the daemon stops first."""
        self._ready = spare
        self._taken = trio.Event()
        try:
            await self._taken.wait()
        finally:
            if self._ready is spare:
                self._ready = None
                await discard_spare(engine, spare)


async def keep_spare(engine: Engine) -> None:
    """The engine's task: keep one spare ready for the next create."""
    if engine.config.prepare_window <= 0:
        return
    taken: Spare | None = None
    try:
        while True:
            await trio.sleep(SPARE_DELAY)
            if taken is not None:
                # Its create moved the directory in (or did without) within the delay; a slower
                # one finds it gone and lays out its own.
                await remove_staging(taken)
                taken = None
            try:
                spare = await _make_spare(engine)
            except NotPrepared as err:
                log.info("spare.unsupported", error=str(err))  # a launcher from before spares
                return
            if spare is None:
                await trio.sleep(_RETRY_DELAY)
                continue
            await engine.spare.hold(engine, spare)
            taken = spare
    finally:
        if taken is not None:
            with trio.CancelScope(shield=True):
                await remove_staging(taken)


async def discard_spare(engine: Engine, spare: Spare) -> None:
    """Kill the spare's process and remove its cgroup and staging dir; returns once all are gone."""
    with trio.CancelScope(shield=True):
        try:
            await engine.launcher.discard(spare.id)
        except (LauncherLost, RuntimeError) as err:
            log.warning("spare.discard_failed", id=spare.id, error=str(err))
        # remove() retries briefly while v1 tears a cgroup down, so keep it off the event loop.
        await trio.to_thread.run_sync(spare.cgroup.remove)
        await remove_staging(spare)


async def remove_staging(spare: Spare) -> None:
    """The spare's staging dir, unless a create moved it in as its container's directory."""
    if spare.staging is not None:
        await trio.to_thread.run_sync(partial(shutil.rmtree, spare.staging, ignore_errors=True))


async def _make_spare(engine: Engine) -> Spare | None:
    spare_id = secrets.token_hex(32)
    try:
        cgroup = engine.cgroups.create(engine.config.cgroup_parent, spare_id, Resources())
    except Exception as err:  # noqa: BLE001 - creates fork afresh meanwhile
        log.info("spare.skipped", error=str(err))
        return None
    staging = engine.store.root / f"{STAGING_PREFIX}{spare_id}"
    spare = Spare(spare_id, cgroup, staging=staging)
    layers = engine.spare.last_layers
    forecast: tuple[LaunchSpec, LaunchSpec] | None = None
    try:
        try:
            await trio.to_thread.run_sync(_lay_out, staging, layers)
            spare.init_over = layers
            if layers:
                forecast = _forecasts(engine, spare.id, spare.cgroup, staging, layers)
        except OSError as err:
            log.info("spare.dir_skipped", error=str(err))
            await remove_staging(spare)
            spare.staging = None
        with trio.CancelScope(shield=True):
            await engine.launcher.spare(spare_id, cgroup.membership(), forecast)
    except (NotPrepared, LauncherLost, RuntimeError) as err:
        await discard_spare(engine, spare)
        if isinstance(err, NotPrepared):
            raise
        log.info("spare.skipped", error=str(err))
        return None
    except BaseException:
        await discard_spare(engine, spare)  # the daemon is stopping
        raise
    return spare


def _lay_out(staging: Path, layers: tuple[Path, ...]) -> None:
    ContainerFiles(staging).lay_out()
    if layers:
        with_init_layer(staging, layers)


def _forecasts(
    engine: Engine, spare_id: str, cgroup: Cgroup, staging: Path, layers: Sequence[Path]
) -> tuple[LaunchSpec, LaunchSpec]:
    """The LaunchSpec of a plain container (no mounts, no tty) of `layers` under the spare's ID: as
    its spare builds the tree ahead, in `staging`; and as its create will ask for it, in its own
    directory (the launcher hands the tree over only to a spec of that same tree)."""
    plain = ContainerSpec(image="", image_id="")
    resolv_conf = engine.host_resolv_conf()

    def in_dir(container_dir: Path) -> LaunchSpec:
        return build_launch_spec(
            container_id=spare_id,
            spec=plain,
            state_root=engine.config.root,
            container_dir=container_dir,
            layers=[*layers, init_layer_path(container_dir)],
            cgroup=cgroup.membership(),
            log_path=ContainerFiles(container_dir).log,
            host_resolv_conf=resolv_conf,
        )

    return in_dir(staging), in_dir(engine.store.files(spare_id).dir)
