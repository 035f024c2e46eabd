"""`mounts = [...]`: binds, named volumes and tmpfs, checked now and mounted by a later issue.

A relative bind source must start with ./ or ../ and is resolved against
the config file's directory (as Compose does), so `source = "data"`,
which is far more likely a volume name meant with type = "volume", is an
error rather than a silent bind of some directory.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any

from supervisor.reactor.config.diagnostics import Key, describe
from supervisor.reactor.config.model import MOUNT_TYPES, MountConfig, MountType
from supervisor.reactor.config.reader import Problems, Section

_KEYS: dict[MountType, tuple[str, ...]] = {
    "bind": ("type", "source", "target", "readonly"),
    "volume": ("type", "source", "target", "readonly"),
    "tmpfs": ("type", "target", "readonly", "size"),
}
# Docker's rule for volume names is its rule for container names.
_VOLUME_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")


def read_mounts(parent: Section, base_dir: Path) -> tuple[MountConfig, ...]:
    if not parent.has("mounts"):
        return ()
    value = parent.data["mounts"]
    if not isinstance(value, list):
        parent.expected("mounts", 'an array of tables like { type = "volume", source = "data", target = "/data" }')
        return ()
    mounts: list[MountConfig] = []
    targets: dict[str, int] = {}
    for index, item in enumerate(value):
        key = parent.key + ("mounts", index)
        mount = _read_mount(parent.problems, key, item, base_dir)
        if mount is None:
            continue
        if mount.target in targets:
            first = targets[mount.target]
            parent.problems.add(key + ("target",), f"{mount.target} is already the target of mounts[{first}]")
        targets.setdefault(mount.target, index)
        mounts.append(mount)
    return tuple(mounts)


def _read_mount(problems: Problems, key: Key, item: Any, base_dir: Path) -> MountConfig | None:
    if not isinstance(item, dict):
        problems.add(key, f'expected a table like {{ type = "tmpfs", target = "/tmp" }}, got {describe(item)}')
        return None
    kind = item.get("type")
    if kind not in MOUNT_TYPES or not isinstance(kind, str):
        listed = ", ".join(f'"{t}"' for t in MOUNT_TYPES)
        if "type" in item:
            problems.add(key + ("type",), f"expected one of {listed}, got {describe(kind)}")
        else:
            problems.add(key, f'missing required key "type" (one of {listed})')
        return None
    mount_type: MountType = kind  # type: ignore[assignment]  # checked against MOUNT_TYPES above
    section = Section(problems, key, item, _KEYS[mount_type])
    target = section.string("target", required=True)
    if target and not _is_absolute(target):
        section.error("target", f"expected an absolute path in the container other than /, got {describe(target)}")
    source = ""
    if mount_type != "tmpfs":
        source = section.string("source", required=True)
        if source and mount_type == "bind":
            source = _bind_source(section, source, base_dir)
        elif source and not _VOLUME_NAME.match(source):
            section.error("source", f"expected a volume name ([a-zA-Z0-9][a-zA-Z0-9_.-]+), got {describe(source)}")
    return MountConfig(
        type=mount_type,
        target=posixpath.normpath(target) if target else "",
        source=source,
        readonly=section.boolean("readonly", False),
        size=section.size("size", None),
    )


def _bind_source(section: Section, source: str, base_dir: Path) -> str:
    if source.startswith("/"):
        return posixpath.normpath(source)
    if source.startswith(("./", "../")) or source in (".", ".."):
        # Normalised but not resolved: a symlink is followed when it is mounted.
        return posixpath.normpath(str(base_dir.absolute() / source))
    section.error(
        "source",
        f"expected an absolute host path or one starting with ./ (relative to this file), got {describe(source)}"
        + (' (a named volume needs type = "volume")' if _VOLUME_NAME.match(source) else ""),
    )
    return ""


def _is_absolute(path: str) -> bool:
    return path.startswith("/") and posixpath.normpath(path) != "/"
