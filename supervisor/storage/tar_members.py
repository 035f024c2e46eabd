"""What a layer tar member may do: the one place that vets members before anything touches disk.

`check_member` turns a `tarfile.TarInfo` into a `LayerMember` (what to
create, where, with which metadata) or rejects it with UnsafeLayer. It is
pure: path containment against symlinks on disk is enforced by the
unpacker, which resolves every parent with O_NOFOLLOW. New rules for
hostile archives belong here.
"""

from __future__ import annotations

import enum
import tarfile
from dataclasses import dataclass

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
}


def check_member(member: tarfile.TarInfo) -> LayerMember | None:
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
    return LayerMember(
        kind=kind,
        name=member.name,
        parts=parts,
        mode=member.mode & 0o7777,
        uid=member.uid,
        gid=member.gid,
        mtime_ns=round(member.mtime * 1_000_000_000),
        symlink_target=symlink_target,
        hardlink_parts=hardlink_parts,
        device=device,
        xattrs=_xattrs(member) if kind not in (MemberKind.SYMLINK, MemberKind.HARDLINK) else (),
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
    if path.startswith("/"):
        raise UnsafeLayer(f"layer member {member_name!r}: absolute path {path!r}")
    parts = tuple(part for part in path.split("/") if part not in ("", "."))
    for part in parts:
        if part == "..":
            raise UnsafeLayer(f"layer member {member_name!r}: path {path!r} escapes the layer with '..'")
        if len(part.encode("utf-8", "surrogateescape")) > NAME_MAX:
            raise UnsafeLayer(f"layer member {member_name!r}: a path component is longer than {NAME_MAX} bytes")
    return parts


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


def _xattrs(member: tarfile.TarInfo) -> tuple[tuple[str, bytes], ...]:
    found = []
    for key, value in member.pax_headers.items():
        if not key.startswith(PAX_XATTR_PREFIX):
            continue
        name = key[len(PAX_XATTR_PREFIX) :]
        if name.startswith(ALLOWED_XATTR_PREFIXES):
            # tarfile decodes PAX values as UTF-8 with surrogateescape; undo it for binary values.
            found.append((name, value.encode("utf-8", "surrogateescape")))
    return tuple(sorted(found))
