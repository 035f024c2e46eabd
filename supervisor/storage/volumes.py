"""Named volumes on disk, as Docker's `local` driver keeps them: `volumes/<name>/_data`.

Each volume is a directory holding `_data` (what containers see) and
`volume.json` (name, driver, labels, options, creation time). A volume is
built under a temporary name (`.tmp-...`, which no volume name can be) and
renamed into place, so a crash never leaves half a volume under its real
name; removal renames it away (`.deleted-...`) before deleting the tree.
Leftovers of either are cleared when the store opens.

Nothing is cached and every method blocks on the disk: call them from a
worker thread in trio code. Which containers use a volume is not kept
here: the reactor derives it from the container specs.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import shutil
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from supervisor.errors import Conflict, InvalidArgument, NotFound
from supervisor.storage.fsutil import atomic_write, fsync_dir

log = structlog.get_logger(__name__)

VOLUMES_DIR = "volumes"
DATA_DIR = "_data"
META_FILE = "volume.json"
DRIVER = "local"
# Docker marks the volumes it makes for a container (image VOLUMEs, `-v /path`) with this label.
ANONYMOUS_LABEL = "com.docker.volume.anonymous"
# Docker's RestrictedNamePattern (the rule for container names too).
NAME_CHARS = "[a-zA-Z0-9][a-zA-Z0-9_.-]"
_NAME = re.compile(rf"^{NAME_CHARS}+$")
_TEMP_PREFIXES = (".tmp-", ".deleted-")


@dataclass(frozen=True)
class Volume:
    name: str
    created: str  # RFC 3339, seconds, UTC (Docker's CreatedAt)
    mountpoint: Path
    labels: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    driver: str = DRIVER

    @property
    def anonymous(self) -> bool:
        return ANONYMOUS_LABEL in self.labels


def validate_volume_name(name: str) -> None:
    """Docker's local-driver rule, with its messages (`create NAME: ...`)."""
    if len(name) == 1:
        raise InvalidArgument(
            f"create {name}: volume name is too short, names should be at least two alphanumeric characters"
        )
    if not _NAME.match(name):
        raise InvalidArgument(
            f'create {name}: "{name}" includes invalid characters for a local volume name, only '
            f'"{NAME_CHARS}" are allowed. If you intended to pass a host directory, use absolute path'
        )


def is_volume_name(name: str) -> bool:
    return bool(_NAME.match(name))


def volume_data_path(volumes_root: Path, name: str) -> Path:
    return volumes_root / name / DATA_DIR


def generate_volume_name() -> str:
    """An anonymous volume's name: 64 hex digits, as Docker's stringid.GenerateRandomID."""
    return secrets.token_hex(32)


class VolumeStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        # 0o701 as Docker's: others may traverse to a volume's data but not list the volumes.
        self.root.mkdir(mode=0o701, parents=True, exist_ok=True)
        self._clear_leftovers()

    def path(self, name: str) -> Path:
        return volume_data_path(self.root, name)

    def create(
        self, name: str, labels: Mapping[str, str] | None = None, options: Mapping[str, str] | None = None
    ) -> tuple[Volume, bool]:
        """The volume `name`, made if missing; True when this call made it.

        An existing volume is returned as it is (Docker's create is idempotent and keeps the
        first labels).
        """
        validate_volume_name(name)
        with contextlib.suppress(NotFound):
            return self.get(name), False
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        meta = {"Name": name, "Driver": DRIVER, "Labels": dict(labels or {}), "Options": dict(options or {})}
        meta["CreatedAt"] = created
        temp = self.root / f".tmp-{name}-{secrets.token_hex(4)}"
        try:
            temp.mkdir(mode=0o701)
            (temp / DATA_DIR).mkdir(mode=0o755)
            os.chmod(temp / DATA_DIR, 0o755)  # mkdir's mode is filtered by the umask
            atomic_write(temp / META_FILE, json.dumps(meta, sort_keys=True).encode(), mode=0o600)
            try:
                os.rename(temp, self.root / name)
            except OSError as err:
                if err.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                # Another creator won the race: theirs is the volume.
                shutil.rmtree(temp, ignore_errors=True)
                return self.get(name), False
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            raise
        fsync_dir(self.root)
        log.info("volume.created", name=name)
        return self._volume(meta), True

    def get(self, name: str) -> Volume:
        if not is_volume_name(name):
            raise NotFound(f"get {name}: no such volume")
        try:
            meta = json.loads((self.root / name / META_FILE).read_text())
        except FileNotFoundError:
            raise NotFound(f"get {name}: no such volume") from None
        except (OSError, ValueError) as err:
            raise Conflict(f"get {name}: volume metadata is unreadable: {err}") from None
        return self._volume(meta)

    def list(self) -> list[Volume]:
        volumes = []
        for entry in sorted(os.listdir(self.root)):
            if not is_volume_name(entry):
                continue
            try:
                volumes.append(self.get(entry))
            except (NotFound, Conflict) as err:
                log.error("volume.unreadable", name=entry, error=str(err))
        return volumes

    def remove(self, name: str) -> None:
        """Delete the volume and its data (NotFound if there is none); the caller checks it is unused."""
        self.get(name)
        doomed = self.root / f".deleted-{name}-{secrets.token_hex(4)}"
        os.rename(self.root / name, doomed)
        fsync_dir(self.root)
        _remove_tree(doomed)
        log.info("volume.removed", name=name)

    def is_empty(self, name: str) -> bool:
        with os.scandir(self.path(name)) as entries:
            return next(entries, None) is None

    def size(self, name: str) -> int:
        """Bytes of regular files in the volume, each inode once (Docker's directory.Size)."""
        return _tree_size(self.path(name))

    def _volume(self, meta: dict[str, Any]) -> Volume:
        name = str(meta["Name"])
        return Volume(
            name=name,
            created=str(meta.get("CreatedAt", "")),
            mountpoint=self.path(name),
            labels=dict(meta.get("Labels") or {}),
            options=dict(meta.get("Options") or {}),
            driver=str(meta.get("Driver") or DRIVER),
        )

    def _clear_leftovers(self) -> None:
        for entry in os.listdir(self.root):
            if entry.startswith(_TEMP_PREFIXES):
                _remove_tree(self.root / entry)
                log.info("volume.leftover_removed", entry=entry)


def _tree_size(top: Path) -> int:
    total = 0
    seen: set[tuple[int, int]] = set()
    stack = [str(top)]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            info = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(info.st_mode):
                stack.append(entry.path)
            elif stat.S_ISREG(info.st_mode) and (info.st_dev, info.st_ino) not in seen:
                seen.add((info.st_dev, info.st_ino))
                total += info.st_size
    return total


def _remove_tree(path: Path) -> None:
    """rmtree that also gets through directories a container left without permissions.

    Root passes them anyway; without CAP_DAC_OVERRIDE they need a chmod first.
    """
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        return
    except PermissionError:
        for parent, dirnames, _ in os.walk(path):
            for name in dirnames:
                child = os.path.join(parent, name)
                if stat.S_ISDIR(os.lstat(child).st_mode):  # never chmod through a symlink
                    os.chmod(child, 0o700)
        shutil.rmtree(path)
