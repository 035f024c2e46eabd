"""The client side of `docker cp`'s semantics (moby's archive copy helpers), for `corral cp`.

The API only archives a path and extracts a tar into an existing
directory; what `cp a b` means (copy into b if it is a directory, become b
if it does not exist, `dir/.` for the contents, trailing `/` asserting a
directory, `-L`) is decided here from stats of both ends, by renaming the
archive's first name component and picking the directory to extract into.
"""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Callable
from dataclasses import dataclass

from supervisor.cli.context import CommandFailed
from supervisor.storage.inroot import base_name, split_dir_entry

_MAX_DEST_LINKS = 10


@dataclass(frozen=True)
class CopyInfo:
    path: str
    exists: bool = False
    is_dir: bool = False
    rebase_name: str = ""


def split_cp_arg(arg: str) -> tuple[str, str]:
    """`CONTAINER:PATH` -> (container, path); a local path -> ("", path). A local path with a
    colon must be made explicit (`./a:b`, `/a:b`)."""
    if arg.startswith("/"):
        return "", arg
    container, sep, path = arg.partition(":")
    if not sep or container.startswith("."):
        return "", arg
    return container, path


def asserts_directory(path: str) -> bool:
    return path.endswith("/") or base_name(path) == "."


def preserve_trailing(cleaned: str, original: str) -> str:
    """Keep the `/.` or `/` that `original` ended with on its cleaned form."""
    if base_name(cleaned) != "." and base_name(original) == ".":
        cleaned = cleaned.rstrip("/") + "/."
    if original.endswith("/") and not cleaned.endswith("/"):
        cleaned += "/"
    return cleaned


def resolve_local_path(path: str) -> str:
    return preserve_trailing(os.path.abspath(path), path)


def rebase_name_for(path: str, resolved: str) -> tuple[str, str]:
    """moby's GetRebaseName: the resolved path with `path`'s trailing `/.` or `/`, and the name the
    archive's entries must take when resolving changed the last component ("" if not)."""
    if base_name(path) == "." and base_name(resolved) != ".":
        resolved += "/."
    if path.endswith("/") and not resolved.endswith("/"):
        resolved += "/"
    return resolved, (base_name(path) if base_name(path) != base_name(resolved) else "")


def source_info(path: str, follow_link: bool) -> CopyInfo:
    """A local copy source: symlinks before the last component resolved (all of them with -L)."""
    if follow_link:
        resolved, rebase = rebase_name_for(path, os.path.realpath(path))
    else:
        directory, base = posixpath.split(path)
        resolved = os.path.realpath(directory or ".").rstrip("/") + "/" + base
        rebase = base_name(path) if path.endswith("/") and base_name(path) != base_name(resolved) else ""
    try:
        st = os.lstat(resolved)
    except OSError as err:
        raise CommandFailed(f"lstat {resolved}: {(err.strerror or str(err)).lower()}") from None
    return CopyInfo(resolved, exists=True, is_dir=stat.S_ISDIR(st.st_mode), rebase_name=rebase)


def destination_info(path: str) -> CopyInfo:
    """A local copy destination: a final symlink followed (up to 10 times); it need not exist,
    but its parent must be a directory."""
    original = path
    for _ in range(_MAX_DEST_LINKS + 1):
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            parent = split_dir_entry(path)[0]
            try:
                parent_is_dir = stat.S_ISDIR(os.stat(parent).st_mode)
            except OSError as err:
                raise CommandFailed(f"stat {parent}: {(err.strerror or str(err)).lower()}") from None
            if not parent_is_dir:
                raise CommandFailed("not a directory") from None
            return CopyInfo(path)
        except NotADirectoryError:
            raise CommandFailed("not a directory") from None
        if not stat.S_ISLNK(st.st_mode):
            return CopyInfo(path, exists=True, is_dir=stat.S_ISDIR(st.st_mode))
        target = os.readlink(path)
        if not target.startswith("/"):
            target = posixpath.join(split_dir_entry(path)[0], target)
        path = posixpath.normpath(target)
    raise CommandFailed(f"too many symlinks in {original}")


def prepare_copy(source: CopyInfo, destination: CopyInfo) -> tuple[str, tuple[str, str] | None]:
    """moby's PrepareArchiveCopy: the directory to extract into, and the (old, new) first name
    component the archive's entries must be renamed with (None: keep them)."""
    dest_dir, dest_base = split_dir_entry(destination.path)
    source_base = source.rebase_name or split_dir_entry(source.path)[1]
    if destination.exists and destination.is_dir:
        return destination.path, None
    if destination.exists and source.is_dir:
        raise CommandFailed("cannot copy directory")
    if not destination.exists and not source.is_dir and asserts_directory(destination.path):
        raise CommandFailed("no such directory")
    return dest_dir, (source_base, dest_base)


def name_rebaser(old: str, new: str) -> Callable[[str], str]:
    """moby's newNameRebaser: `old` -> `new` as the first component of archive names."""
    old = old.rstrip("/")
    new = new.rstrip("/")
    if not old:

        def from_root(name: str) -> str:
            name = name.lstrip("/")
            return f"{new}/{name}" if new else name

        return from_root

    def rebase(name: str) -> str:
        if not name.startswith(old):
            return name
        suffix = name[len(old) :]
        if suffix and not suffix.startswith("/"):
            return name
        return new + suffix

    return rebase


def compose(*steps: Callable[[str], str] | None) -> Callable[[str], str] | None:
    chosen = [step for step in steps if step is not None]
    if not chosen:
        return None

    def apply(name: str) -> str:
        for step in chosen:
            name = step(name)
        return name

    return apply
