"""Unpacking a layer blob once into `layers/<diff-id hex>/`, the overlay lower dir.

The tar is read in one streaming pass that also hashes the compressed blob
and the uncompressed tar, so the blob digest and the diff ID are verified
by the same read that unpacks. Members are vetted by `check_member` and
created with our own *at() calls relative to directory fds opened with
O_NOFOLLOW, so no member can write through a symlink, whatever earlier
members made. The tree is built in a temp dir beside its final name and
renamed into place after a syncfs: a crash never leaves a half layer
under the final name, and of two concurrent unpackers the loser discards
its copy.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import gzip
import os
import shutil
import stat
import tarfile
import tempfile
import zlib
from pathlib import Path
from typing import BinaryIO, cast

import structlog

from supervisor.storage.digest import ByteSource, DigestingReader, digest_hex, file_digest, validate_digest
from supervisor.storage.errors import CorruptContent, DigestMismatch, InvalidLayer, UnsafeLayer
from supervisor.storage.fsutil import fsync_dir
from supervisor.storage.tar_members import LayerMember, MemberKind, check_member

log = structlog.get_logger(__name__)

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
TEMP_PREFIX = ".tmp-"
OVERLAY_OPAQUE_XATTR = "trusted.overlay.opaque"
_CHUNK = 1 << 20
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# Failures of the machine, not of the layer: let them surface unchanged.
_HOST_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.ENOMEM})


def layer_dir(layers_root: Path, diff_id: str) -> Path:
    return layers_root / digest_hex(diff_id)


def unpack_layer(blob_path: Path, diff_id: str, layers_root: Path, *, blob_digest: str | None = None) -> Path:
    """The unpacked dir of the layer with `diff_id`, unpacking `blob_path` (gzip or plain tar) if needed.

    `blob_digest`, when given, is verified too (CorruptContent if the blob
    on disk no longer matches it); DigestMismatch if the tar is not `diff_id`.
    """
    validate_digest(diff_id)
    final = layer_dir(layers_root, diff_id)
    if final.is_dir():
        return final
    layers_root.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{digest_hex(diff_id)[:12]}-", dir=layers_root))
    try:
        os.chmod(temp, 0o755)
        with open(blob_path, "rb") as blob:
            actual_blob, actual_diff, size = _extract_verified(blob, temp, diff_id, blob_digest)
        _syncfs(temp)
        try:
            os.rename(temp, final)
        except OSError as err:
            if err.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            log.debug("layer.unpack_lost_race", diff_id=diff_id)
            _remove_tree(temp)
            return final
    except BaseException:
        _remove_tree(temp)
        raise
    fsync_dir(layers_root)
    log.info("layer.unpacked", diff_id=actual_diff, blob=actual_blob, size=size)
    return final


def uncompressed_digest(blob: ByteSource) -> tuple[str, int]:
    """Diff ID and uncompressed size of a (gzip) tar blob, without unpacking it."""
    stream = _decompressed(blob)
    try:
        return file_digest(stream)
    except (OSError, EOFError, zlib.error) as err:
        raise InvalidLayer(f"layer is not a valid gzip stream: {err}") from err


def _extract_verified(blob: BinaryIO, dest: Path, diff_id: str, blob_digest: str | None) -> tuple[str, str, int]:
    compressed = DigestingReader(blob)
    tar_stream = DigestingReader(_decompressed(compressed))
    try:
        try:
            _extract(tar_stream, dest)
            tar_stream.drain()
            compressed.drain()
        except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as err:
            raise InvalidLayer(f"layer {diff_id} is not a valid (gzip) tar: {err}") from err
    except InvalidLayer:
        # A damaged blob explains any parse failure better than the failure itself.
        if blob_digest is not None:
            blob.seek(0)
            actual, _ = file_digest(blob)
            if actual != blob_digest:
                raise CorruptContent(f"layer blob {blob_digest} is corrupt: its content hashes to {actual}") from None
        raise
    if blob_digest is not None and compressed.digest != blob_digest:
        raise CorruptContent(f"layer blob {blob_digest} is corrupt: its content hashes to {compressed.digest}")
    if tar_stream.digest != diff_id:
        raise DigestMismatch(
            f"layer {compressed.digest}: uncompressed content hashes to {tar_stream.digest}, "
            f"but the image names diff ID {diff_id}"
        )
    return compressed.digest, tar_stream.digest, tar_stream.size


def _decompressed(blob: ByteSource) -> ByteSource:
    magic = blob.read(4)
    rest = _Prefixed(magic, blob)
    if magic.startswith(GZIP_MAGIC):
        # GzipFile wants seek() only to rewind, which a single forward pass never does.
        return gzip.GzipFile(fileobj=cast(BinaryIO, rest), mode="rb")
    if magic == ZSTD_MAGIC:
        raise InvalidLayer("zstd-compressed layers are not supported")
    return rest


class _Prefixed:
    """`blob` with bytes already read from it put back in front, so sniffing needs no seek."""

    def __init__(self, prefix: bytes, source: ByteSource) -> None:
        self._prefix = prefix
        self._source = source

    def read(self, n: int = -1, /) -> bytes:
        if not self._prefix:
            return self._source.read(n)
        if n < 0:
            data, self._prefix = self._prefix + self._source.read(), b""
            return data
        data, self._prefix = self._prefix[:n], self._prefix[n:]
        return data + (self._source.read(n - len(data)) if n > len(data) else b"")

    def readable(self) -> bool:
        return True


def _extract(tar_stream: DigestingReader, dest: Path) -> None:
    root_fd = os.open(dest, _DIR_FLAGS)
    try:
        writer = _TreeWriter(root_fd)
        with tarfile.open(fileobj=tar_stream, mode="r|") as archive:  # type: ignore[call-overload]
            for info in archive:
                member = check_member(info)
                if member is None:
                    continue
                data = archive.extractfile(info) if member.kind is MemberKind.FILE else None
                try:
                    writer.apply(member, data)
                except OSError as err:
                    if err.errno in _HOST_ERRNOS:
                        raise
                    raise InvalidLayer(f"layer member {member.name!r}: {err.strerror or err}") from err
        writer.finish()
    finally:
        os.close(root_fd)


class _TreeWriter:
    """Creates vetted members under the directory `root_fd`, never following a symlink."""

    def __init__(self, root_fd: int) -> None:
        self._root_fd = root_fd
        # Directory mtimes are set last: creating their entries would bump them.
        self._dir_mtimes: dict[tuple[str, ...], int] = {}

    def apply(self, member: LayerMember, data: ByteSource | None) -> None:
        if not member.parts:
            self._apply_root(member)
            return
        parent_fd = self._open_dir(member.parts[:-1], create=True, member=member)
        try:
            self._apply_in(parent_fd, member.parts[-1], member, data)
        finally:
            os.close(parent_fd)

    def finish(self) -> None:
        for parts, mtime_ns in self._dir_mtimes.items():
            try:
                fd = self._open_dir(parts, create=False, member=None)
            except (UnsafeLayer, FileNotFoundError):
                continue  # a later member replaced this directory
            try:
                os.utime(fd, ns=(mtime_ns, mtime_ns))
            finally:
                os.close(fd)

    def _apply_root(self, member: LayerMember) -> None:
        if member.kind is MemberKind.OPAQUE:
            os.setxattr(self._root_fd, OVERLAY_OPAQUE_XATTR, b"y")
            return
        _set_attributes(self._root_fd, member)
        self._dir_mtimes[()] = member.mtime_ns

    def _apply_in(self, parent_fd: int, name: str, member: LayerMember, data: ByteSource | None) -> None:
        kind = member.kind
        if kind is MemberKind.DIRECTORY:
            if not _is_dir(parent_fd, name):
                _remove_entry(parent_fd, name)
                os.mkdir(name, 0o700, dir_fd=parent_fd)
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
            try:
                _set_attributes(fd, member)
            finally:
                os.close(fd)
            self._dir_mtimes[member.parts] = member.mtime_ns
        elif kind is MemberKind.OPAQUE:
            if not _is_dir(parent_fd, name):
                _remove_entry(parent_fd, name)
                os.mkdir(name, 0o755, dir_fd=parent_fd)
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
            try:
                os.setxattr(fd, OVERLAY_OPAQUE_XATTR, b"y")
            finally:
                os.close(fd)
        elif kind is MemberKind.FILE:
            assert data is not None
            _remove_entry(parent_fd, name)
            fd = os.open(name, _NEW_FILE_FLAGS, 0o600, dir_fd=parent_fd)
            try:
                _copy_to_fd(data, fd)
                _set_attributes(fd, member)
            finally:
                os.close(fd)
        elif kind is MemberKind.SYMLINK:
            assert member.symlink_target is not None
            _remove_entry(parent_fd, name)
            os.symlink(member.symlink_target, name, dir_fd=parent_fd)
            os.chown(name, member.uid, member.gid, dir_fd=parent_fd, follow_symlinks=False)
            os.utime(name, ns=(member.mtime_ns, member.mtime_ns), dir_fd=parent_fd, follow_symlinks=False)
        elif kind is MemberKind.HARDLINK:
            self._link(parent_fd, name, member)
        else:
            self._make_node(parent_fd, name, member)

    def _link(self, parent_fd: int, name: str, member: LayerMember) -> None:
        assert member.hardlink_parts is not None
        target = "/".join(member.hardlink_parts)
        try:
            source_parent = self._open_dir(member.hardlink_parts[:-1], create=False, member=member)
        except FileNotFoundError:
            raise InvalidLayer(f"layer member {member.name!r}: hardlink target {target!r} does not exist") from None
        try:
            source = member.hardlink_parts[-1]
            source_mode = _entry_mode(source_parent, source)
            if source_mode is None:
                raise InvalidLayer(f"layer member {member.name!r}: hardlink target {target!r} does not exist")
            if stat.S_ISDIR(source_mode):
                raise UnsafeLayer(f"layer member {member.name!r}: hardlink to a directory")
            if (member.hardlink_parts[:-1], source) == (member.parts[:-1], name):
                return  # a link to itself names what is already there
            _remove_entry(parent_fd, name)
            # follow_symlinks=False: link a symlink itself, never its target.
            os.link(source, name, src_dir_fd=source_parent, dst_dir_fd=parent_fd, follow_symlinks=False)
        finally:
            os.close(source_parent)

    def _make_node(self, parent_fd: int, name: str, member: LayerMember) -> None:
        _remove_entry(parent_fd, name)
        if member.kind is MemberKind.WHITEOUT:
            # Overlay's whiteout: a 0/0 character device, as Docker's overlay2 writes it.
            os.mknod(name, stat.S_IFCHR, os.makedev(0, 0), dir_fd=parent_fd)
            os.chown(name, member.uid, member.gid, dir_fd=parent_fd, follow_symlinks=False)
            return
        file_type = {
            MemberKind.CHAR_DEVICE: stat.S_IFCHR,
            MemberKind.BLOCK_DEVICE: stat.S_IFBLK,
            MemberKind.FIFO: stat.S_IFIFO,
        }[member.kind]
        major, minor = member.device or (0, 0)
        os.mknod(name, file_type | 0o600, os.makedev(major, minor), dir_fd=parent_fd)
        os.chown(name, member.uid, member.gid, dir_fd=parent_fd, follow_symlinks=False)
        # We just made this node in a dir nobody else writes to, so naming it is safe.
        os.chmod(name, member.mode, dir_fd=parent_fd)
        os.utime(name, ns=(member.mtime_ns, member.mtime_ns), dir_fd=parent_fd, follow_symlinks=False)

    def _open_dir(self, parts: tuple[str, ...], *, create: bool, member: LayerMember | None) -> int:
        """An fd for the directory `parts` under the root, refusing symlinks and non-directories on the way."""
        fd = os.dup(self._root_fd)
        try:
            for index, part in enumerate(parts):
                try:
                    next_fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    os.mkdir(part, 0o755, dir_fd=fd)
                    next_fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except OSError as err:
                    if err.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise
                    where = "/".join(parts[: index + 1])
                    name = member.name if member else where
                    raise UnsafeLayer(
                        f"layer member {name!r}: {where!r} is a symlink or not a directory; refusing to go through it"
                    ) from None
                os.close(fd)
                fd = next_fd
        except BaseException:
            os.close(fd)
            raise
        return fd


def _set_attributes(fd: int, member: LayerMember) -> None:
    # Order matters: chown clears setuid/setgid and file capabilities, so it goes first.
    os.fchown(fd, member.uid, member.gid)
    os.fchmod(fd, member.mode)
    for name, value in member.xattrs:
        os.setxattr(fd, name, value)
    os.utime(fd, ns=(member.mtime_ns, member.mtime_ns))


def _copy_to_fd(data: ByteSource, fd: int) -> None:
    while chunk := data.read(_CHUNK):
        view = memoryview(chunk)
        while view:
            view = view[os.write(fd, view) :]


def _entry_mode(parent_fd: int, name: str) -> int | None:
    """st_mode of the entry itself (never a symlink's target), None if there is none."""
    try:
        return os.stat(name, dir_fd=parent_fd, follow_symlinks=False).st_mode
    except FileNotFoundError:
        return None


def _is_dir(parent_fd: int, name: str) -> bool:
    mode = _entry_mode(parent_fd, name)
    return mode is not None and stat.S_ISDIR(mode)


def _remove_entry(parent_fd: int, name: str) -> None:
    """Clear the way for a new entry: a later member replaces an earlier one of the same name."""
    mode = _entry_mode(parent_fd, name)
    if mode is None:
        return
    if stat.S_ISDIR(mode):
        shutil.rmtree(name, dir_fd=parent_fd)
    else:
        os.unlink(name, dir_fd=parent_fd)


def _remove_tree(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(path)


def _syncfs(path: Path) -> None:
    """Flush the new tree's filesystem once, instead of an fsync per file."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if libc.syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), str(path))
    finally:
        os.close(fd)
