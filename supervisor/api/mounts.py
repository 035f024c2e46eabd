"""The mounts of a create body: HostConfig.Binds, .Mounts, .Tmpfs and Config.Volumes -> MountSpecs.

Docker's daemon-side rules and messages (moby volume/mounts: ParseMountRaw,
ParseMountSpec, validateMountConfig). What corral cannot do (propagation
other than private, non-recursive binds, volume subpaths, driver options,
image mounts, ...) is refused by name, never dropped.
"""

from __future__ import annotations

import posixpath
from typing import Any

from supervisor.errors import InvalidArgument
from supervisor.reactor.mountspec import MountSpec, MountType, check_tmpfs_options, check_unique_targets, clean_target

_RW_MODES = frozenset({"rw", "ro"})
_LABEL_MODES = frozenset({"z", "Z"})
_PROPAGATIONS = frozenset({"private", "rprivate", "shared", "rshared", "slave", "rslave"})
# Every mount namespace corral makes is private; these two ask for nothing more.
_PRIVATE = frozenset({"", "private", "rprivate"})
_COPY_MODES = frozenset({"nocopy"})
_CONSISTENCY_MODES = frozenset({"consistent", "cached", "delegated"})
_CONSISTENCY = frozenset({"", "default", *_CONSISTENCY_MODES})
_MOUNT_TYPES = ("bind", "volume", "tmpfs")
_OTHER_MOUNT_TYPES = ("image", "npipe", "cluster")
# Docker's validTmpfsOptions for TmpfsOptions.Options.
_TMPFS_OPTION_KEYS = frozenset({"exec", "noexec"})


def _valid_mode(mode: str) -> bool:
    """Docker's linuxValidMountMode: known words, at most one of each kind."""
    if not mode:
        return True
    counts = [0, 0, 0, 0, 0]
    for word in mode.split(","):
        for index, kind in enumerate((_RW_MODES, _LABEL_MODES, _PROPAGATIONS, _COPY_MODES, _CONSISTENCY_MODES)):
            if word in kind:
                counts[index] += 1
                break
        else:
            return False
    return max(counts) <= 1


def _mount_error(kind: str, message: str) -> InvalidArgument:
    return InvalidArgument(f'invalid mount config for type "{kind}": {message}')


def _propagation(value: str, kind: str) -> None:
    if value in _PRIVATE:
        return
    if value not in _PROPAGATIONS:
        raise _mount_error(kind, f"invalid propagation mode: {value}")
    raise InvalidArgument(f"bind propagation {value!r} is not supported by corral (mounts are always rprivate)")


def parse_bind(raw: str) -> MountSpec:
    """One HostConfig.Binds entry: `/host:/ctr[:mode]`, `name:/ctr[:mode]` or `/ctr` (anonymous)."""
    parts = raw.split(":", 3)
    if not parts[0]:
        raise InvalidArgument(f"invalid volume specification: '{raw}'")
    source, mode = "", ""
    if len(parts) == 1:
        target = parts[0]
    elif len(parts) == 2:
        if _valid_mode(parts[1]):
            # `/foo:rw`: a destination with a mode is no volume.
            raise InvalidArgument(f"invalid volume specification: '{raw}'")
        source, target = parts
    elif len(parts) == 3:
        source, target, mode = parts
    else:
        raise InvalidArgument(f"invalid volume specification: '{raw}'")
    if not _valid_mode(mode):
        raise InvalidArgument(f"invalid mode: {mode}")
    words = mode.split(",") if mode else []
    kind: MountType = "bind" if source.startswith("/") else "volume"
    try:
        target = clean_target(target)
        propagation = next((w for w in words if w in _PROPAGATIONS), "")
        if kind == "volume" and propagation:
            raise _mount_error(kind, "field BindOptions must not be specified")
        if kind == "bind" and "nocopy" in words:
            raise _mount_error(kind, "field VolumeOptions must not be specified")
        _propagation(propagation, kind)
    except InvalidArgument as err:
        raise InvalidArgument(f"invalid volume specification: '{raw}': {err}") from None
    return MountSpec(
        type=kind,
        target=target,
        source=_clean_source(source) if kind == "bind" else source,
        readonly="ro" in words,
        origin="binds",
        anonymous=not source,
        no_copy="nocopy" in words,
        create_source=kind == "bind",
        mode=mode or ("z" if kind == "volume" else ""),
        raw=raw,
    )


def _clean_source(source: str) -> str:
    cleaned = posixpath.normpath(source)
    return "/" + cleaned.lstrip("/") if cleaned.startswith("//") else cleaned


def _typed(obj: dict[str, Any], key: str, kind: type, where: str, default: Any) -> Any:
    value = obj.get(key)
    if value is None:
        return default
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        name = {str: "a string", bool: "a boolean", int: "an integer", dict: "an object", list: "a list"}[kind]
        raise InvalidArgument(f"invalid {where}.{key}: expected {name}")
    return value


def parse_mount(obj: Any, where: str) -> MountSpec:
    """One HostConfig.Mounts object (what `--mount` sends)."""
    if not isinstance(obj, dict):
        raise InvalidArgument(f"invalid {where}: expected an object")
    kind = _typed(obj, "Type", str, where, "")
    if kind in _OTHER_MOUNT_TYPES:
        raise InvalidArgument(f"mount type {kind!r} is not supported by corral (only bind, volume and tmpfs)")
    if kind not in _MOUNT_TYPES:
        raise _mount_error(kind, "mount type unknown")
    source = _typed(obj, "Source", str, where, "")
    readonly = _typed(obj, "ReadOnly", bool, where, False)
    if _typed(obj, "Consistency", str, where, "") not in _CONSISTENCY:
        raise InvalidArgument(f"invalid {where}.Consistency: expected default, consistent, cached or delegated")
    options = {key: obj.get(key) for key in ("BindOptions", "VolumeOptions", "TmpfsOptions")}
    for key, value in options.items():
        if value is not None and not key.startswith(kind.capitalize()):
            raise _mount_error(kind, f"field {key} must not be specified")
        if value is not None and not isinstance(value, dict):
            raise InvalidArgument(f"invalid {where}.{key}: expected an object")
    for key in ("ImageOptions", "ClusterOptions"):
        if obj.get(key) is not None:
            raise _mount_error(kind, f"field {key} must not be specified")
    try:
        target = clean_target(_typed(obj, "Target", str, where, ""))
    except InvalidArgument as err:
        raise _mount_error(kind, str(err)) from None
    if kind == "bind":
        return _bind_mount(source, target, readonly, options["BindOptions"] or {}, f"{where}.BindOptions")
    if kind == "volume":
        return _volume_mount(source, target, readonly, options["VolumeOptions"] or {}, f"{where}.VolumeOptions")
    if source:
        raise _mount_error(kind, "field Source must not be specified")
    return _tmpfs_mount(target, readonly, options["TmpfsOptions"] or {}, f"{where}.TmpfsOptions")


def _bind_mount(source: str, target: str, readonly: bool, bind: dict[str, Any], where: str) -> MountSpec:
    if not source:
        raise _mount_error("bind", "field Source must not be empty")
    if not source.startswith("/"):
        raise _mount_error("bind", f"invalid mount path: '{source}' mount path must be absolute")
    _propagation(_typed(bind, "Propagation", str, where, ""), "bind")
    for flag in ("NonRecursive", "ReadOnlyNonRecursive", "ReadOnlyForceRecursive"):
        if _typed(bind, flag, bool, where, False):
            raise InvalidArgument(f"{where}.{flag} is not supported by corral (binds are recursive)")
    return MountSpec(
        type="bind",
        target=target,
        source=_clean_source(source),
        readonly=readonly,
        origin="mounts",
        create_source=_typed(bind, "CreateMountpoint", bool, where, False),
    )


def _volume_mount(source: str, target: str, readonly: bool, volume: dict[str, Any], where: str) -> MountSpec:
    if _typed(volume, "Subpath", str, where, ""):
        raise InvalidArgument(f"{where}.Subpath is not supported by corral yet")
    driver = _typed(volume, "DriverConfig", dict, where, {})
    if _typed(driver, "Name", str, f"{where}.DriverConfig", "") not in ("", "local"):
        raise InvalidArgument(f"volume driver {driver['Name']!r} is not supported by corral (only local)")
    if _typed(driver, "Options", dict, f"{where}.DriverConfig", {}):
        raise InvalidArgument("volume driver options are not supported by corral (local volumes are plain directories)")
    labels = _typed(volume, "Labels", dict, where, {})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
        raise InvalidArgument(f"invalid {where}.Labels: expected an object of strings")
    return MountSpec(
        type="volume",
        target=target,
        source=source,
        readonly=readonly,
        origin="mounts",
        anonymous=not source,
        no_copy=_typed(volume, "NoCopy", bool, where, False),
        mode="z",
        labels=dict(labels),
    )


def _tmpfs_mount(target: str, readonly: bool, tmpfs: dict[str, Any], where: str) -> MountSpec:
    size = _typed(tmpfs, "SizeBytes", int, where, 0)
    mode = _typed(tmpfs, "Mode", int, where, 0)
    if size < 0:
        raise InvalidArgument(f"invalid {where}.SizeBytes: must not be negative")
    if not 0 <= mode <= 0o7777:
        raise InvalidArgument(f"invalid {where}.Mode: expected permission bits (at most 0o7777)")
    extra: list[str] = []
    for option in _typed(tmpfs, "Options", list, where, []):
        if not isinstance(option, list) or not 1 <= len(option) <= 2 or not all(isinstance(o, str) for o in option):
            raise _mount_error("tmpfs", "invalid option array length")
        if option[0] not in _TMPFS_OPTION_KEYS:
            raise _mount_error("tmpfs", f"invalid option: {option[0]}")
        extra.append("=".join(option))
    return MountSpec(
        type="tmpfs",
        target=target,
        readonly=readonly,
        origin="mounts",
        tmpfs_size=size or None,
        tmpfs_mode=mode or None,
        tmpfs_options=tuple(extra),
    )


def parse_tmpfs(target: str, options: str) -> MountSpec:
    """One HostConfig.Tmpfs entry (`--tmpfs /path:opts`): the options are mount options."""
    try:
        cleaned = clean_target(target)
    except InvalidArgument as err:
        raise InvalidArgument(f"invalid tmpfs destination {target!r}: {err}") from None
    words = tuple(word for word in options.split(",") if word) if options else ()
    check_tmpfs_options(words, f"HostConfig.Tmpfs[{target}]")
    return MountSpec(type="tmpfs", target=cleaned, origin="tmpfs", raw=options, tmpfs_options=words)


def parse_mounts(body: dict[str, Any], host: dict[str, Any]) -> tuple[MountSpec, ...]:
    """Every mount a create body asks for, in Docker's order; duplicates refused as Docker does."""
    driver = host.get("VolumeDriver")
    if driver not in (None, "", "local"):
        raise InvalidArgument(f"volume driver {driver!r} is not supported by corral (only local)")
    binds = host.get("Binds")
    if binds is not None and (not isinstance(binds, list) or not all(isinstance(b, str) for b in binds)):
        raise InvalidArgument("invalid HostConfig.Binds: expected a list of strings")
    mounts = host.get("Mounts")
    if mounts is not None and not isinstance(mounts, list):
        raise InvalidArgument("invalid HostConfig.Mounts: expected a list")
    tmpfs = host.get("Tmpfs")
    if tmpfs is not None and (not isinstance(tmpfs, dict) or not all(isinstance(v, str) for v in tmpfs.values())):
        raise InvalidArgument("invalid HostConfig.Tmpfs: expected an object of strings")
    volumes = body.get("Volumes")
    if volumes is not None and not isinstance(volumes, dict):
        raise InvalidArgument("invalid Volumes: expected an object")
    found = [parse_bind(raw) for raw in binds or ()]
    found += [parse_mount(obj, f"HostConfig.Mounts[{i}]") for i, obj in enumerate(mounts or ())]
    found += [parse_tmpfs(target, options) for target, options in (tmpfs or {}).items()]
    for mount in found:
        if mount.type == "tmpfs":
            check_tmpfs_options(mount.tmpfs_options, f"tmpfs mount {mount.target}")
    check_unique_targets(tuple(found))
    taken = {mount.target for mount in found}
    for path in volumes or {}:
        target = clean_target(path)
        if target not in taken:
            # Config.Volumes (`-v /path`): an anonymous volume, unless something else is mounted there.
            found.append(MountSpec(type="volume", target=target, origin="volumes", anonymous=True))
            taken.add(target)
    return tuple(found)
