"""A container's init layer: the mount points the runtime needs, as a read-only layer under its upper dir.

The runtime mounts /proc, /dev, /sys and binds /etc/hostname, /etc/hosts,
/etc/resolv.conf into the container; a mount needs its target to exist.
Created by the runtime in the container's overlay, those targets would
land in the upper dir and show up in `diff` and in committed images.
Docker avoids that with an "init layer" between the image and the
container's layer; so does corral: `containers/<id>/init/` holds the
targets the image lacks (empty files, 0755 directories) and copies of the
image's directories above them (same mode, owner, times, xattrs, so the
merged view is unchanged), and is the top-most lower dir of the overlay.
`diff` and `commit` count it as part of the image.

Built once per container, in a temp dir renamed into place, so a crash
never leaves half of one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from collections.abc import Sequence
from pathlib import Path

import structlog

from supervisor.storage.changes import LowerView, exported_xattrs

log = structlog.get_logger(__name__)

INIT_DIR = "init"
_TEMP_PREFIX = ".init-"


def init_layer_path(container_dir: Path) -> Path:
    return container_dir / INIT_DIR


def ensure_init_layer(container_dir: Path, lowers: Sequence[Path], dirs: Sequence[str], files: Sequence[str]) -> Path:
    """The container's init layer over the image `lowers` (bottom-most first), made if missing.

    `dirs` and `files` are absolute paths inside the container.
    """
    final = init_layer_path(container_dir)
    if final.is_dir():
        return final
    for stale in container_dir.glob(f"{_TEMP_PREFIX}*"):
        shutil.rmtree(stale, ignore_errors=True)
    temp = Path(tempfile.mkdtemp(prefix=_TEMP_PREFIX, dir=container_dir))
    try:
        os.chmod(temp, 0o755)
        view = LowerView(lowers)
        copied: dict[tuple[str, ...], os.stat_result] = {}
        made = []
        for path, is_dir in [*((d, True) for d in dirs), *((f, False) for f in files)]:
            if _add_target(temp, view, _parts(path), is_dir, copied):
                made.append(path)
        # Directory times last: creating entries in them moved their mtimes.
        for parts, st in sorted(copied.items(), key=lambda item: -len(item[0])):
            os.utime(temp.joinpath(*parts), ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
        os.rename(temp, final)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    log.debug("init_layer.created", dir=str(final), targets=made)
    return final


def _parts(path: str) -> tuple[str, ...]:
    parts = tuple(part for part in path.split("/") if part not in ("", "."))
    if not path.startswith("/") or not parts or ".." in parts:
        raise ValueError(f"init layer target must be an absolute path without '..': {path!r}")
    return parts


def _add_target(
    root: Path, view: LowerView, parts: tuple[str, ...], is_dir: bool, copied: dict[tuple[str, ...], os.stat_result]
) -> bool:
    """Make `parts` (and its missing parents) unless the image has it; False if nothing was needed."""
    if view.lookup(parts) is not None:
        return False
    for depth in range(1, len(parts)):
        prefix = parts[:depth]
        entry = view.lookup(prefix)
        target = root.joinpath(*prefix)
        if entry is None:
            with contextlib.suppress(FileExistsError):
                os.mkdir(target, 0o755)
                os.chmod(target, 0o755)
            continue
        if not entry.is_dir:
            # A symlink or file where a directory is needed: the runtime resolves the target inside
            # the container then, as it would without an init layer.
            log.info("init_layer.target_skipped", target="/" + "/".join(parts), blocker="/" + "/".join(prefix))
            return False
        if prefix not in copied:
            os.mkdir(target, 0o700)
            os.chown(target, entry.stat.st_uid, entry.stat.st_gid)
            os.chmod(target, stat.S_IMODE(entry.stat.st_mode))
            for name, value in exported_xattrs(str(entry.path)):
                os.setxattr(target, name, value)
            copied[prefix] = entry.stat
    target = root.joinpath(*parts)
    if is_dir:
        os.mkdir(target, 0o755)
        os.chmod(target, 0o755)
    else:
        os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o644))
        os.chmod(target, 0o644)
    return True
