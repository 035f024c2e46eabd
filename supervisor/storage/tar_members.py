"""What a layer tar member may do: the one place that vets members before anything touches disk.

`check_member` turns a tar member (a `tarfile.TarInfo`, or the unpacker's
own `tar_stream.TarHeader`, which has the same shape) into a `LayerMember`
(what to create, where, with which metadata) or rejects it with
UnsafeLayer. It is pure: path containment against symlinks on disk is
enforced by the unpacker, which never follows one. New rules for hostile
archives belong here.
"""

from __future__ import annotations

import enum
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from supervisor.storage.errors import UnsafeLayer

WHITEOUT_PREFIX = ".wh."
OPAQUE_WHITEOUT = ".wh..wh..opq"
# Other `.wh..wh.` names are AUFS bookkeeping (hardlink dirs), which overlay ignores.
AUFS_METADATA_PREFIX = ".wh..wh."
PAX_XATTR_PREFIX = "SCHILY.xattr."
# trusted.overlay.* is deliberately absent: a layer must not forge overlay
# metadata (redirects, metacopy, opaque) — only whiteout conversion sets it.
ALLOWED_XATTR_PREFIXES = ("user.", "security.capability")
NAME_MAX = 255
# No system call can name a longer path, and trees deeper than this break recursive tools
# (Python's shutil.rmtree among them): a layer with either is hostile or useless.
PATH_MAX = 4095
MAX_DEPTH = 512
_ID_LIMIT = (1 << 32) - 1  # (uid_t)-1 means "unchanged" to chown
_NS_LIMIT = 1 << 63  # utimensat's range, in nanoseconds


class TarEntry(Protocol):
    """What check_member reads of a member: `tarfile.TarInfo` and `tar_stream.TarHeader` both fit."""

    @property
    def name(self) -> str: ...
    @property
    def type(self) -> bytes: ...
    @property
    def mode(self) -> int: ...
    @property
    def uid(self) -> int: ...
    @property
    def gid(self) -> int: ...
    @property
    def mtime(self) -> float: ...
    @property
    def linkname(self) -> str: ...
    @property
    def devmajor(self) -> int: ...
    @property
    def devminor(self) -> int: ...
    @property
    def pax_headers(self) -> Mapping[str, str]: ...
    def isreg(self) -> bool: ...


class MemberKind(enum.Enum):
    FILE = "file"
    DIRECTORY = "directory"
    SYMLINK = "symlink"
    HARDLINK = "hardlink"
    CHAR_DEVICE = "char-device"
    BLOCK_DEVICE = "block-device"
    FIFO = "fifo"
    WHITEOUT = "whiteout"  # an overlay whiteout (0/0 char device) at `parts`
    OPAQUE = "opaque"  # mark the directory at `parts` opaque


@dataclass(frozen=True)
class LayerMember:
    kind: MemberKind
    name: str  # as in the archive, for messages
    parts: tuple[str, ...]  # path under the layer root; () is the root itself
    mode: int  # permission bits, including setuid/setgid/sticky
    uid: int
    gid: int
    mtime_ns: int
    symlink_target: str | None = None
    hardlink_parts: tuple[str, ...] | None = None
    device: tuple[int, int] | None = None
    xattrs: tuple[tuple[str, bytes], ...] = ()


_KIND_OF_TYPE = {
    tarfile.DIRTYPE: MemberKind.DIRECTORY,
    tarfile.SYMTYPE: MemberKind.SYMLINK,
    tarfile.LNKTYPE: MemberKind.HARDLINK,
    tarfile.CHRTYPE: MemberKind.CHAR_DEVICE,
    tarfile.BLKTYPE: MemberKind.BLOCK_DEVICE,
    tarfile.FIFOTYPE: MemberKind.FIFO,
    b"D": MemberKind.DIRECTORY,  # a GNU dump directory: its data (a listing) is skipped
}


def check_member(member: TarEntry) -> LayerMember | None:
    """The vetted action for `member`, None if it is to be skipped; UnsafeLayer if it is hostile."""
    parts = archive_path_parts(member.name, member.name)
    kind = MemberKind.FILE if member.isreg() else _KIND_OF_TYPE.get(member.type)
    if kind is None:
        raise UnsafeLayer(f"layer member {member.name!r}: unsupported tar entry type {member.type!r}")
    basename = parts[-1] if parts else ""
    if basename.startswith(WHITEOUT_PREFIX):
        kind, parts = _whiteout(member.name, parts)
        if kind is None:
            return None
    symlink_target = None
    hardlink_parts = None
    device = None
    if kind is MemberKind.SYMLINK:
        if not member.linkname or "\0" in member.linkname:
            raise UnsafeLayer(f"layer member {member.name!r}: symlink with an empty or invalid target")
        # A symlink's target is data; it may point anywhere because the
        # unpacker never follows one.
        symlink_target = member.linkname
    elif kind is MemberKind.HARDLINK:
        hardlink_parts = archive_path_parts(member.linkname, member.name)
        if not hardlink_parts:
            raise UnsafeLayer(f"layer member {member.name!r}: hardlink to the layer root")
    elif kind in (MemberKind.CHAR_DEVICE, MemberKind.BLOCK_DEVICE):
        device = (member.devmajor, member.devminor)
    if not parts and kind is not MemberKind.DIRECTORY and kind is not MemberKind.OPAQUE:
        raise UnsafeLayer(f"layer member {member.name!r}: only a directory may stand for the layer root")
    if not (0 <= member.uid < _ID_LIMIT and 0 <= member.gid < _ID_LIMIT):
        raise UnsafeLayer(f"layer member {member.name!r}: owner {member.uid}:{member.gid} is out of range")
    if device is not None and not (0 <= device[0] < _ID_LIMIT and 0 <= device[1] < _ID_LIMIT):
        raise UnsafeLayer(f"layer member {member.name!r}: device number {device[0]}:{device[1]} is out of range")
    return LayerMember(
        kind=kind,
        name=member.name,
        parts=parts,
        mode=member.mode & 0o7777,
        uid=member.uid,
        gid=member.gid,
        mtime_ns=_mtime_ns(member),
        symlink_target=symlink_target,
        hardlink_parts=hardlink_parts,
        device=device,
        xattrs=_xattrs(member) if member.pax_headers and kind not in (MemberKind.SYMLINK, MemberKind.HARDLINK) else (),
    )


def archive_path_parts(path: str, member_name: str) -> tuple[str, ...]:
    """The components of an archive path, relative to the layer root.

    Absolute paths and `..` components are rejected rather than cleaned:
    no honest layer has them, so one that does is hostile or broken.
    """
    if not path:
        raise UnsafeLayer(f"layer member {member_name!r}: empty path")
    if "\0" in path:
        raise UnsafeLayer(f"layer member {member_name!r}: NUL byte in path")
    if path[0] == "/":
        raise UnsafeLayer(f"layer member {member_name!r}: absolute path {path!r}")
    if len(path) > PATH_MAX:
        raise UnsafeLayer(f"layer member {member_name[:200]!r}...: path longer than {PATH_MAX} characters")
    parts = path.split("/")
    if "" in parts or "." in parts:
        parts = [part for part in parts if part not in ("", ".")]
    if ".." in parts:
        raise UnsafeLayer(f"layer member {member_name!r}: path {path!r} escapes the layer with '..'")
    if len(parts) > MAX_DEPTH:
        raise UnsafeLayer(f"layer member {member_name[:200]!r}...: path deeper than {MAX_DEPTH} directories")
    # A UTF-8 character takes at most 4 bytes: only paths with a long component need encoding.
    if len(path) > NAME_MAX // 4:
        for part in parts:
            if len(part) > NAME_MAX // 4 and len(part.encode("utf-8", "surrogateescape")) > NAME_MAX:
                raise UnsafeLayer(f"layer member {member_name!r}: a path component is longer than {NAME_MAX} bytes")
    return tuple(parts)


def _whiteout(name: str, parts: tuple[str, ...]) -> tuple[MemberKind | None, tuple[str, ...]]:
    basename = parts[-1]
    if basename == OPAQUE_WHITEOUT:
        return MemberKind.OPAQUE, parts[:-1]
    if basename.startswith(AUFS_METADATA_PREFIX):
        return None, parts
    hidden = basename[len(WHITEOUT_PREFIX) :]
    if hidden in ("", ".", ".."):
        raise UnsafeLayer(f"layer member {name!r}: whiteout of an invalid name")
    return MemberKind.WHITEOUT, (*parts[:-1], hidden)


def _mtime_ns(member: TarEntry) -> int:
    exact = getattr(member, "mtime_ns", None)  # tar_stream.TarHeader has it; a TarInfo's float may round
    try:
        mtime_ns = exact if isinstance(exact, int) else round(member.mtime * 1_000_000_000)
    except (OverflowError, ValueError):
        mtime_ns = _NS_LIMIT
    if not -_NS_LIMIT <= mtime_ns < _NS_LIMIT:
        raise UnsafeLayer(f"layer member {member.name!r}: modification time {member.mtime} is out of range")
    return mtime_ns


def _xattrs(member: TarEntry) -> tuple[tuple[str, bytes], ...]:
    found = []
    for key, value in member.pax_headers.items():
        if not key.startswith(PAX_XATTR_PREFIX):
            continue
        name = key[len(PAX_XATTR_PREFIX) :]
        if name.startswith(ALLOWED_XATTR_PREFIXES):
            # tarfile decodes PAX values as UTF-8 with surrogateescape; undo it for binary values.
            found.append((name, value.encode("utf-8", "surrogateescape")))
    return tuple(sorted(found))
