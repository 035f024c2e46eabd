"""Container records on disk: one directory per container, files replaced atomically.

`containers/<id>/config.json` is written once at create (id, name, created,
spec); `state.json` on every transition. A file that does not parse is
reported and its container skipped, never fatal to the daemon.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from supervisor.reactor.model import ContainerSpec, ContainerState
from supervisor.storage.snapshots import create_snapshot

log = structlog.get_logger(__name__)


def write_json_atomic(path: Path, data: Any, *, durable: bool = True) -> None:
    """Replace `path` whole. `durable` adds an fsync, for what must survive a power cut too."""
    tmp = path.with_name(f".{path.name}.tmp")
    # dumps, not dump: the C encoder, where dump streams through the Python one.
    encoded = json.dumps(data, separators=(",", ":"))
    with open(tmp, "w", encoding="utf-8") as file:
        file.write(encoded)
        if durable:
            file.flush()
            os.fsync(file.fileno())
    os.replace(tmp, path)


@dataclass(frozen=True)
class StoredContainer:
    id: str
    name: str
    created: str
    spec: ContainerSpec
    state: ContainerState


class ContainerFiles:
    """Paths inside one container's directory."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory

    @property
    def config(self) -> Path:
        return self.dir / "config.json"

    @property
    def state(self) -> Path:
        return self.dir / "state.json"

    @property
    def log(self) -> Path:
        return self.dir / "json.log"

    @property
    def hostname(self) -> Path:
        return self.dir / "hostname"

    @property
    def hosts(self) -> Path:
        return self.dir / "hosts"

    @property
    def resolv_conf(self) -> Path:
        return self.dir / "resolv.conf"

    @property
    def scratch(self) -> Path:
        return self.dir / "scratch"

    def lay_out(self) -> None:
        """A new container's directory: the snapshot's dirs, the scratch mount point, an empty log."""
        self.dir.mkdir(parents=True)
        create_snapshot(self.dir)
        self.scratch.mkdir()
        self.log.touch(mode=0o640)


RETIRED_PREFIX = ".removed-"


class StateStore:
    def __init__(self, containers_dir: Path) -> None:
        self.root = containers_dir
        self.root.mkdir(parents=True, exist_ok=True)

    def files(self, container_id: str) -> ContainerFiles:
        return ContainerFiles(self.root / container_id)

    def save_config(self, container_id: str, name: str, created: str, spec: ContainerSpec) -> None:
        """Survives a daemon crash once it returns; a power cut only after sync_config."""
        data = {"id": container_id, "name": name, "created": created, "spec": spec.to_json()}
        write_json_atomic(self.files(container_id).config, data, durable=False)

    def rewrite_config(self, container_id: str, name: str, created: str, spec: ContainerSpec) -> None:
        """Replace an existing container's config (a rename): synced before it replaces the old
        one, and the directory after, so a power cut leaves one whole file or the other."""
        data = {"id": container_id, "name": name, "created": created, "spec": spec.to_json()}
        files = self.files(container_id)
        write_json_atomic(files.config, data, durable=True)
        fd = os.open(files.dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def sync_config(self, container_id: str) -> None:
        fd = os.open(self.files(container_id).config, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def save_state(self, container_id: str, state: ContainerState) -> None:
        # The rename alone survives a daemon crash; after a power cut no container is running
        # anyway, and a stale "running" is corrected at restore. So no fsync on this hot path.
        write_json_atomic(self.files(container_id).state, state.to_json(), durable=False)

    def delete(self, container_id: str) -> None:
        shutil.rmtree(self.root / container_id, ignore_errors=True)

    def retired_dir(self, container_id: str) -> Path:
        return self.root / f"{RETIRED_PREFIX}{container_id}"

    def retire(self, container_id: str) -> None:
        """Take a removed container's directory out of the store now, its files to be deleted later.

        A rename: `load_all` skips the new name, so a daemon that dies before
        the deletion does not bring the container back; `leftovers` lists what
        such a death left.
        """
        try:
            os.rename(self.root / container_id, self.retired_dir(container_id))
        except FileNotFoundError:
            pass  # never written, or retired already

    def leftovers(self, *prefixes: str) -> list[Path]:
        """Directories beside the containers' whose names start with one of `prefixes` (dot-names,
        which `load_all` skips)."""
        return sorted(p for p in self.root.iterdir() if p.name.startswith(prefixes))

    def load_all(self) -> Iterator[StoredContainer]:
        for directory in sorted(self.root.iterdir()):
            if not directory.is_dir() or directory.name.startswith("."):
                continue
            files = ContainerFiles(directory)
            try:
                config = json.loads(files.config.read_text())
                state_data = json.loads(files.state.read_text()) if files.state.exists() else {}
                yield StoredContainer(
                    id=config["id"],
                    name=config["name"],
                    created=config["created"],
                    spec=ContainerSpec.from_json(config["spec"]),
                    state=ContainerState.from_json(state_data),
                )
            except (OSError, ValueError, KeyError, TypeError) as err:
                log.error("container.state_unreadable", dir=str(directory), error=str(err))
