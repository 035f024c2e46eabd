"""Volumes in the engine: create, list, remove and prune, and a container's mounts made ready at create.

Which containers use a volume is derived from the container specs (a
volume mount names its volume, anonymous ones included, once created),
so there is no second record to fall out of step. A container being
created is not in the registry yet: its volumes are *claimed* from the
moment they are chosen until it is registered, so `volume rm` and prune
cannot take a volume from under a create in flight. A failed create
removes the anonymous volumes it made.

At create, as Docker does: image VOLUMEs and `-v /path` become anonymous
volumes, named volumes are created on first use, `-v` bind sources that
are missing are made (a `--mount` or TOML bind source must exist), and a
volume that is empty is seeded with what the image has at its mount
path (storage/seed.py), unless the mount says nocopy.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import structlog
import trio

from supervisor.errors import Conflict, CorralError, InvalidArgument, NotFound
from supervisor.reactor.events import Event, EventBus
from supervisor.reactor.model import ContainerSpec
from supervisor.reactor.mountspec import MountSpec, clean_target
from supervisor.reactor.registry import Registry
from supervisor.storage.seed import image_path, seed_volume
from supervisor.storage.volumes import ANONYMOUS_LABEL, DRIVER, Volume, VolumeStore, generate_volume_name

log = structlog.get_logger(__name__)

_LIST_FILTERS = frozenset({"name", "dangling", "label", "driver"})
_PRUNE_FILTERS = frozenset({"label", "label!", "all"})


@dataclass
class Claim:
    """The volumes one create in flight holds, and the anonymous ones it made (removed if it fails)."""

    names: list[str] = field(default_factory=list)
    made: list[str] = field(default_factory=list)


def uses_volume(spec: ContainerSpec, name: str) -> bool:
    return any(m.type == "volume" and m.source == name for m in spec.mounts)


class Volumes:
    def __init__(self, root: Path, registry: Registry, events: EventBus) -> None:
        self.store = VolumeStore(root)
        self._registry = registry
        self._events = events
        # Held around each check-then-change of the volume set (create, remove, prune).
        self._lock = trio.Lock()
        self._claimed: Counter[str] = Counter()
        self._seed_locks: dict[str, trio.Lock] = {}
        self._pruning = False

    # -- usage ------------------------------------------------------------------

    def users(self, name: str) -> list[str]:
        """IDs of the containers (any state) whose spec mounts the volume."""
        return [c.id for c in self._registry if uses_volume(c.spec, name)]

    def in_use(self, name: str) -> bool:
        return bool(self._claimed[name]) or bool(self.users(name))

    # -- the API's operations ---------------------------------------------------

    async def create(
        self,
        name: str = "",
        labels: Mapping[str, str] | None = None,
        driver: str = "",
        options: Mapping[str, str] | None = None,
    ) -> Volume:
        if driver not in ("", DRIVER):
            raise NotFound(f'error looking up volume plugin {driver}: plugin "{driver}" not found')
        if options:
            raise InvalidArgument(
                f"volume driver options are not supported by corral (got {', '.join(sorted(options))}): "
                "local volumes are plain directories"
            )
        wanted = dict(labels or {})
        if not name:
            # As Docker: a volume created without a name is an anonymous one.
            name = generate_volume_name()
            wanted[ANONYMOUS_LABEL] = ""
        volume, _ = await self._create(name, wanted)
        return volume

    async def get(self, name: str) -> Volume:
        return await trio.to_thread.run_sync(self.store.get, name)

    async def find(self, filters: Mapping[str, Sequence[str]]) -> list[Volume]:
        """`volume ls`: filters name, dangling, label, driver."""
        _check_filters(filters, _LIST_FILTERS)
        dangling = _bool_filter(filters, "dangling")
        volumes = await trio.to_thread.run_sync(self.store.list)
        return [
            v
            for v in volumes
            if _match_name(filters.get("name", ()), v.name)
            and _match_labels(filters, v.labels)
            and (not filters.get("driver") or v.driver in filters["driver"])
            and (dangling is None or dangling != self.in_use(v.name))
        ]

    async def remove(self, name: str, *, force: bool = False) -> None:
        """Docker's `volume rm`: refused while any container uses the volume, force or not.

        `force` only makes a missing volume no error.
        """
        async with self._lock:
            users = self.users(name)
            if users or self._claimed[name]:
                raise Conflict(f"remove {name}: volume is in use - [{', '.join(users)}]")
            try:
                await trio.to_thread.run_sync(self.store.remove, name)
            except NotFound:
                if force:
                    return
                raise
        self._events.publish(Event("volume", "destroy", name, {"driver": DRIVER}))

    async def prune(self, filters: Mapping[str, Sequence[str]], *, all_by_default: bool) -> tuple[list[str], int]:
        """Remove unused volumes: anonymous ones, or every one with `all` (API < 1.42 means all).

        Returns the names removed and the bytes they held.
        """
        _check_filters(filters, _PRUNE_FILTERS)
        everything = _bool_filter(filters, "all")
        if everything is None:
            everything = all_by_default
        if self._pruning:
            raise Conflict("a prune operation is already running")
        self._pruning = True
        deleted: list[str] = []
        reclaimed = 0
        try:
            for volume in await trio.to_thread.run_sync(self.store.list):
                if volume.options or not _match_labels(filters, volume.labels):
                    continue
                if not everything and not volume.anonymous:
                    continue
                async with self._lock:
                    if self.in_use(volume.name):
                        continue
                    size = await trio.to_thread.run_sync(self.store.size, volume.name)
                    try:
                        await trio.to_thread.run_sync(self.store.remove, volume.name)
                    except (OSError, CorralError) as err:
                        log.warning("volume.prune_failed", name=volume.name, error=str(err))
                        continue
                self._events.publish(Event("volume", "destroy", volume.name, {"driver": DRIVER}))
                deleted.append(volume.name)
                reclaimed += size
        finally:
            self._pruning = False
        self._events.publish(Event("volume", "prune", "", {"reclaimed": str(reclaimed)}))
        return deleted, reclaimed

    # -- containers --------------------------------------------------------------

    @asynccontextmanager
    async def claim(self) -> AsyncIterator[Claim]:
        """Hold the volumes a create picks until the block ends (the container is registered by then)."""
        claim = Claim()
        try:
            yield claim
        except BaseException:
            self._release(claim)
            with trio.CancelScope(shield=True):
                for name in claim.made:
                    try:
                        await self.remove(name)
                    except CorralError as err:
                        log.warning("volume.cleanup_failed", name=name, error=str(err))
            raise
        self._release(claim)

    async def prepare(
        self, spec: ContainerSpec, image_config: Mapping[str, Any], layers: Sequence[Path], claim: Claim
    ) -> ContainerSpec:
        """`spec` with every volume named and existing, bind sources checked, new volumes seeded."""
        mounts = list(spec.mounts)
        taken = {m.target for m in mounts}
        for path in sorted((image_config.get("config") or {}).get("Volumes") or {}):
            target = clean_target(path)
            if target not in taken:
                mounts.append(MountSpec(type="volume", target=target, origin="image", anonymous=True))
                taken.add(target)
        for mount in mounts:
            if mount.origin in ("volumes", "image"):
                found = await trio.to_thread.run_sync(image_path, layers, mount.target)
                if found is not None and not found.entry.is_dir:
                    raise InvalidArgument(f"cannot mount volume over existing file, file exists {mount.target}")
        ready: list[MountSpec] = []
        for mount in mounts:
            if mount.type == "volume":
                mount = await self._volume_for(mount, claim)
            elif mount.type == "bind":
                await trio.to_thread.run_sync(_prepare_bind_source, mount)
            ready.append(mount)
        for mount in ready:
            if mount.type == "volume" and not mount.no_copy:
                await self._seed(mount, layers)
        return replace(spec, mounts=tuple(ready))

    async def remove_anonymous(self, spec: ContainerSpec) -> None:
        """`rm -v`: remove the container's anonymous volumes; one still used elsewhere stays (as Docker)."""
        for mount in spec.mounts:
            if mount.type == "volume" and mount.anonymous and mount.source:
                try:
                    await self.remove(mount.source)
                except (Conflict, NotFound):
                    continue

    # -- internals ----------------------------------------------------------------

    async def _create(self, name: str, labels: Mapping[str, str]) -> tuple[Volume, bool]:
        async with self._lock:
            volume, made = await trio.to_thread.run_sync(self.store.create, name, labels)
        if made:
            self._events.publish(Event("volume", "create", name, {"driver": DRIVER}))
        return volume, made

    async def _volume_for(self, mount: MountSpec, claim: Claim) -> MountSpec:
        name = mount.source or generate_volume_name()
        labels = dict(mount.labels)
        if not mount.source:
            labels[ANONYMOUS_LABEL] = ""
        # Claimed before it exists, so a remove racing with this create finds it in use.
        self._claimed[name] += 1
        claim.names.append(name)
        _, made = await self._create(name, labels)
        if made and not mount.source:
            claim.made.append(name)
        return replace(mount, source=name)

    async def _seed(self, mount: MountSpec, layers: Sequence[Path]) -> None:
        # One seeding per volume at a time: a second create finds it full and copies nothing.
        lock = self._seed_locks.setdefault(mount.source, trio.Lock())
        try:
            async with lock:
                await trio.to_thread.run_sync(seed_volume, layers, mount.target, self.store.path(mount.source))
        finally:
            if not lock.locked() and not lock.statistics().tasks_waiting:
                self._seed_locks.pop(mount.source, None)

    def _release(self, claim: Claim) -> None:
        for name in claim.names:
            self._claimed[name] -= 1
            if self._claimed[name] <= 0:
                del self._claimed[name]
        claim.names.clear()


def _prepare_bind_source(mount: MountSpec) -> None:
    if os.path.exists(mount.source):
        return
    if mount.create_source:
        # `-v /host:/ctr` makes a missing host directory, as Docker's does.
        try:
            os.makedirs(mount.source, mode=0o755, exist_ok=True)
        except OSError as err:
            raise InvalidArgument(f"cannot create bind source {mount.source}: {err.strerror or err}") from None
        return
    raise InvalidArgument(f'invalid mount config for type "bind": bind source path does not exist: {mount.source}')


# -- filters ----------------------------------------------------------------------


def _check_filters(filters: Mapping[str, Sequence[str]], accepted: frozenset[str]) -> None:
    for key in filters:
        if key not in accepted:
            raise InvalidArgument(f"invalid filter '{key}'")


def _bool_filter(filters: Mapping[str, Sequence[str]], key: str) -> bool | None:
    values = set(filters.get(key, ()))
    if not values:
        return None
    truthy, falsy = bool(values & {"1", "true"}), bool(values & {"0", "false"})
    if truthy == falsy or values - {"1", "true", "0", "false"}:
        raise InvalidArgument(f"invalid filter '{key}={','.join(sorted(values))}'")
    return truthy


def _match_name(patterns: Sequence[str], name: str) -> bool:
    """Docker's filters.Match: exact, or the value as a regular expression found in the name."""
    if not patterns:
        return True
    for pattern in patterns:
        if pattern == name:
            return True
        try:
            if re.search(pattern, name):
                return True
        except re.error:
            continue
    return False


def _match_labels(filters: Mapping[str, Sequence[str]], labels: Mapping[str, str]) -> bool:
    """`label` (all must match) and `label!`, each `key` or `key=value`."""

    def matches(item: str) -> bool:
        key, sep, value = item.partition("=")
        return key in labels and (not sep or labels[key] == value)

    excluded = filters.get("label!", ())
    # As Docker's MatchKVList: excluded only when every `label!` item matches.
    return all(matches(item) for item in filters.get("label", ())) and not (
        excluded and all(matches(item) for item in excluded)
    )
