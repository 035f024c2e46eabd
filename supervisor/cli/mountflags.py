"""`-v`, `--mount` and `--tmpfs` -> the create body's Binds, Mounts, Tmpfs and Volumes (as the docker CLI sends).

Pure, so it is unit-tested. The daemon checks what it receives again;
this side gives the docker CLI's early errors for malformed flags.
"""

from __future__ import annotations

import csv
import os
from typing import Any

from supervisor.errors import InvalidArgument
from supervisor.units import parse_size

_BOOLEAN_KEYS = ("readonly", "ro", "volume-nocopy", "bind-nonrecursive", "bind-create-src")


def _flag_error(flag: str, value: str, message: str) -> InvalidArgument:
    return InvalidArgument(f'invalid argument "{value}" for "{flag}" flag: {message}')


def volume_flags(values: list[str]) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """`-v` values -> (Binds, Config.Volumes): `/ctr` alone is an anonymous volume, the rest are binds.

    A relative bind source (`./data:/data`) is made absolute here, as the docker CLI does.
    """
    binds: list[str] = []
    volumes: dict[str, dict[str, Any]] = {}
    for spec in values:
        if not spec:
            raise _flag_error("--volume", spec, "invalid empty volume spec")
        parts = spec.split(":")
        if len(spec) > 2 and any(not part for part in parts):
            raise _flag_error("--volume", spec, f"invalid spec: {spec}: empty section between colons")
        if len(parts) > 3:
            raise _flag_error("--volume", spec, f"invalid spec: {spec}: too many colons")
        if len(parts) == 1 or len(spec) <= 2:
            volumes[spec] = {}
            continue
        source, rest = spec.split(":", 1)
        if source.startswith(".") and not os.path.isabs(source):
            source = os.path.abspath(source)
        binds.append(f"{source}:{rest}")
    return binds, volumes


def _bool(key: str, value: str | None) -> bool:
    if value is None or value in ("1", "true"):
        return True
    if value in ("0", "false"):
        return False
    raise InvalidArgument(
        f"invalid value for '{key}': invalid boolean value ({value!r}): "
        'must be one of "true", "1", "false", or "0" (default "true")'
    )


def mount_flag(value: str) -> dict[str, Any]:
    """One `--mount type=...,source=...,target=...` -> a HostConfig.Mounts entry."""
    try:
        return _mount(value)
    except InvalidArgument as err:
        raise _flag_error("--mount", value, str(err)) from None


def _mount(value: str) -> dict[str, Any]:
    value = value.strip()
    if not value:
        raise InvalidArgument("value is empty")
    try:
        fields = next(csv.reader([value]))
    except csv.Error as err:
        raise InvalidArgument(str(err)) from None
    mount: dict[str, Any] = {"Type": "volume"}
    options: dict[str, dict[str, Any]] = {}

    def section(name: str) -> dict[str, Any]:
        return options.setdefault(name, {})

    for field in fields:
        key, sep, raw = field.partition("=")
        if key.strip() != key:
            raise InvalidArgument(f"invalid option '{key.strip()}' in '{field}': option should not have whitespace")
        if sep and not raw.strip():
            raise InvalidArgument(f"invalid value for '{key}': value is empty")
        if sep and raw.strip() != raw:
            raise InvalidArgument(f"invalid value for '{key}' in '{field}': value should not have whitespace")
        key = key.lower()
        val = raw if sep else None
        if val is None and key not in _BOOLEAN_KEYS:
            raise InvalidArgument(f"invalid field '{field}' must be a key=value pair")
        if key == "type":
            mount["Type"] = raw.lower()
        elif key in ("source", "src"):
            mount["Source"] = os.path.abspath(raw) if raw.startswith(".") else raw
        elif key in ("target", "dst", "destination"):
            mount["Target"] = raw
        elif key in ("readonly", "ro"):
            mount["ReadOnly"] = _bool(key, val)
        elif key == "consistency":
            mount["Consistency"] = raw.lower()
        elif key == "bind-propagation":
            section("BindOptions")["Propagation"] = raw.lower()
        elif key == "bind-create-src":
            section("BindOptions")["CreateMountpoint"] = _bool(key, val)
        elif key == "bind-nonrecursive":
            raise InvalidArgument("bind-nonrecursive is deprecated, use bind-recursive=disabled instead")
        elif key == "bind-recursive":
            if raw not in ("enabled", "disabled", "writable", "readonly"):
                raise InvalidArgument(
                    f'invalid value for {key}: {raw} (must be "enabled", "disabled", "writable", or "readonly")'
                )
            flag = {
                "disabled": "NonRecursive",
                "writable": "ReadOnlyNonRecursive",
                "readonly": "ReadOnlyForceRecursive",
            }
            if raw in flag:
                section("BindOptions")[flag[raw]] = True
        elif key == "volume-nocopy":
            section("VolumeOptions")["NoCopy"] = _bool(key, val)
        elif key == "volume-subpath":
            section("VolumeOptions")["Subpath"] = raw
        elif key == "volume-label":
            label, _, label_value = raw.partition("=")
            if label:
                section("VolumeOptions").setdefault("Labels", {})[label] = label_value
        elif key == "volume-driver":
            section("VolumeOptions").setdefault("DriverConfig", {})["Name"] = raw
        elif key == "volume-opt":
            opt, _, opt_value = raw.partition("=")
            if opt:
                driver = section("VolumeOptions").setdefault("DriverConfig", {})
                driver.setdefault("Options", {})[opt] = opt_value
        elif key == "tmpfs-size":
            try:
                section("TmpfsOptions")["SizeBytes"] = parse_size(raw, field=key)
            except InvalidArgument:
                raise InvalidArgument(f"invalid value for {key}: {raw}") from None
        elif key == "tmpfs-mode":
            try:
                section("TmpfsOptions")["Mode"] = int(raw, 8)
            except ValueError:
                raise InvalidArgument(f"invalid value for {key}: {raw}") from None
        else:
            raise InvalidArgument(f"unexpected key '{key}' in '{field}'")
    kind = mount["Type"]
    if not kind:
        raise InvalidArgument("type is required")
    if not mount.get("Target"):
        raise InvalidArgument("target is required")
    for name, section_value in options.items():
        prefix = name.removesuffix("Options").lower()
        if prefix != kind:
            raise InvalidArgument(f"cannot mix '{prefix}-*' options with mount type '{kind}'")
        mount[name] = section_value
    return mount


def tmpfs_flags(values: list[str]) -> dict[str, str]:
    """`--tmpfs /path[:options]` -> HostConfig.Tmpfs."""
    tmpfs: dict[str, str] = {}
    for value in values:
        target, _, options = value.partition(":")
        tmpfs[target] = options
    return tmpfs
