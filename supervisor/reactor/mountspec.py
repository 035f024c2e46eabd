"""A container's mounts as the engine keeps them in its spec: binds, volumes and tmpfs.

One `MountSpec` per mount, whichever way it was asked for (Docker's
HostConfig.Binds, HostConfig.Mounts, HostConfig.Tmpfs, Config.Volumes, the
image's VOLUMEs, a TOML config's `mounts`); `origin` remembers which, so
inspect can echo the request in Docker's shapes. Anonymous volumes get
their generated name at create time, so a spec on disk always names every
volume it uses: which containers use a volume is derived from the specs.
"""

from __future__ import annotations

import posixpath
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from supervisor.errors import InvalidArgument
from supervisor.isolation.rootfs import tmpfs_mount_args
from supervisor.storage.volumes import VOLUMES_DIR, volume_data_path

MountType = Literal["bind", "volume", "tmpfs"]
# binds: HostConfig.Binds; mounts: HostConfig.Mounts; tmpfs: HostConfig.Tmpfs;
# volumes: Config.Volumes (`-v /path`); image: the image's VOLUMEs; config: a TOML config.
Origin = Literal["binds", "mounts", "tmpfs", "volumes", "image", "config"]


@dataclass(frozen=True)
class MountSpec:
    type: MountType
    target: str
    # bind: the host path; volume: the volume's name (filled in at create for anonymous ones).
    source: str = ""
    readonly: bool = False
    origin: Origin = "mounts"
    # A volume made for this container alone: `rm -v` removes it.
    anonymous: bool = False
    # Volumes: do not seed a new, empty volume from the image (`nocopy`, `volume-nocopy`).
    no_copy: bool = False
    # Binds: make a missing host directory (`-v` does, `--mount` only with bind-create-src).
    create_source: bool = False
    # Docker's MountPoint.Mode: the `-v` options as written, "z" for a local volume without any.
    mode: str = ""
    # As written: the Binds entry, or the --tmpfs options.
    raw: str = ""
    # Labels for a volume this mount creates (VolumeOptions.Labels).
    labels: dict[str, str] = field(default_factory=dict)
    tmpfs_size: int | None = None
    tmpfs_mode: int | None = None
    # Further tmpfs mount options (`exec`, `uid=1000`, ...), checked against tmpfs_mount_args.
    tmpfs_options: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MountSpec:
        fields_ = dict(data)
        fields_["tmpfs_options"] = tuple(fields_.get("tmpfs_options") or ())
        fields_["labels"] = dict(fields_.get("labels") or {})
        return cls(**fields_)

    @property
    def depth(self) -> int:
        """Path depth of the target: mounts are made shallow first, so none hides another."""
        return self.target.count("/")


def clean_target(target: str) -> str:
    """A mount destination, checked and cleaned with Docker's rules and messages."""
    if not target:
        raise InvalidArgument("field Target must not be empty")
    if not target.startswith("/"):
        raise InvalidArgument(f"invalid mount path: '{target}' mount path must be absolute")
    cleaned = posixpath.normpath(target)
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")
    if cleaned == "/":
        raise InvalidArgument("invalid specification: destination can't be '/'")
    return cleaned


def tmpfs_options(mount: MountSpec) -> tuple[str, ...]:
    """Mount options for a tmpfs mount: ro, mode and size first, then the extra ones (later wins)."""
    options: list[str] = []
    if mount.readonly:
        options.append("ro")
    if mount.tmpfs_mode is not None:
        options.append(f"mode={mount.tmpfs_mode:o}")
    if mount.tmpfs_size is not None:
        options.append(f"size={mount.tmpfs_size}")
    options.extend(mount.tmpfs_options)
    return tuple(options)


def check_tmpfs_options(options: tuple[str, ...], where: str) -> None:
    try:
        tmpfs_mount_args(options)
    except ValueError as err:
        raise InvalidArgument(f"{where}: {err}") from None


def check_unique_targets(mounts: tuple[MountSpec, ...]) -> None:
    seen: set[str] = set()
    for mount in mounts:
        if mount.target in seen:
            raise InvalidArgument(f"Duplicate mount point: {mount.target}")
        seen.add(mount.target)


def host_source(mount: MountSpec, state_root: Path) -> str:
    """The host path a bind or volume mount shows (Docker's MountPoint.Source); "" for tmpfs."""
    if mount.type == "volume":
        return str(volume_data_path(state_root / VOLUMES_DIR, mount.source))
    return mount.source if mount.type == "bind" else ""
