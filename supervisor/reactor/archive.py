"""docker cp and export: reaching a container's filesystem, running or not.

A container's tree exists as a mount only inside its own mount namespace,
so the daemon gets a root descriptor for it one of two ways:

- running: `/proc/PID/root` of its first process (opened, then the pidfd
  checked, so a reused pid cannot hand us another process's root). That is
  the live view, with the container's volumes and binds, as Docker's cp
  sees it; the walk skips the runtime's /proc, /sys and /dev.
- not running (created, exited), and for `export` always: an overlay of
  its image layers and upper dir mounted detached (isolation/fsview.py:
  fsmount, attached nowhere, gone when the descriptor closes), with its
  volumes and binds attached under it for cp (not for export, which is
  the rootfs alone, as Docker's). Reads use the upper dir as the top
  lower layer, read-only, so they need no lock and cannot disturb a
  start; a write mounts upper and work for real and holds the
  container's lock, so no start mounts the same upper meanwhile.

Every path inside is resolved with RESOLVE_IN_ROOT from that descriptor
(storage/inroot.py), so symlinks in the container resolve as chroot would
resolve them. Blocking work runs in worker threads; a tar stream is a
synchronous generator driven one chunk per thread hop.
"""

from __future__ import annotations

import errno
import os
import signal
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog
import trio

from supervisor.errors import CorralError, InvalidArgument, NotFound
from supervisor.isolation.fsview import attach_bind, mount_overlay
from supervisor.isolation.users import resolve_user
from supervisor.reactor.container import Container
from supervisor.reactor.events import Event, container_attributes
from supervisor.reactor.initlayer import container_lowers
from supervisor.reactor.mountspec import host_source
from supervisor.reactor.prepare import discard_prepared
from supervisor.storage.archive import RUNTIME_MOUNTS, PathStat, TarChunks, stat_path, tar_path, tar_tree
from supervisor.storage.extract import ExtractOptions, extract_tar
from supervisor.storage.inroot import DIR_FLAGS, clean_path, open_in_root, resolve_in_scope
from supervisor.storage.snapshots import snapshot_paths

if TYPE_CHECKING:
    from supervisor.reactor.engine import Engine

log = structlog.get_logger(__name__)

_ACCOUNT_FILE_LIMIT = 1 << 20
_PULL_SIZE = 1 << 20


@dataclass(frozen=True)
class RootView:
    fd: int  # the container's `/`
    live: bool  # the running container's own tree (not a detached overlay)


class PathError(CorralError):
    """The path exists in some form the operation cannot use (a loop, a file used as a directory)."""


async def stat_container_path(engine: Engine, ref: str, path: str) -> PathStat:
    """`HEAD /containers/{id}/archive?path=`."""
    container = engine.get(ref)
    absolute = _checked(path)
    async with container_root(engine, container) as view:
        return await trio.to_thread.run_sync(_stat, view, absolute, path, ref)


async def archive_container_path(engine: Engine, ref: str, path: str) -> tuple[PathStat, AsyncIterator[bytes]]:
    """`GET /containers/{id}/archive?path=`: the stat now (so a missing path is a 404 before any
    byte is sent), the tar when the stream is read (the view is opened again there, and closed with it)."""
    container = engine.get(ref)
    absolute = _checked(path)
    async with container_root(engine, container) as view:
        found = await trio.to_thread.run_sync(_stat, view, absolute, path, ref)
    engine.events.publish(Event("container", "archive-path", container.id, container_attributes(container)))

    async def chunks() -> AsyncIterator[bytes]:
        async with container_root(engine, container) as view:
            async for chunk in _drive(tar_path(view.fd, absolute, is_dir=found.is_dir, live=view.live)):
                yield chunk

    return found, chunks()


def export_container(engine: Engine, ref: str) -> AsyncIterator[bytes]:
    """`GET /containers/{id}/export`: image layers plus changes, whiteouts applied, no volumes."""
    container = engine.get(ref)
    engine.events.publish(Event("container", "export", container.id, container_attributes(container)))

    async def chunks() -> AsyncIterator[bytes]:
        async with container_root(engine, container, base_only=True) as view:
            async for chunk in _drive(tar_tree(view.fd)):
                yield chunk

    return chunks()


async def extract_to_container(
    engine: Engine,
    ref: str,
    path: str,
    body: AsyncIterator[bytes],
    *,
    copy_uid_gid: bool = False,
    no_overwrite_dir_non_dir: bool = False,
) -> None:
    """`PUT /containers/{id}/archive?path=`: extract the body's tar into the directory `path`."""
    container = engine.get(ref)
    absolute = _checked(path)
    reader = _BodyReader(body)
    async with container_root(engine, container, write=True) as view:
        await trio.to_thread.run_sync(
            _extract, view, absolute, path, ref, reader, container.spec.user if copy_uid_gid else None,
            no_overwrite_dir_non_dir,
        )  # fmt: skip
    engine.events.publish(Event("container", "extract-to-dir", container.id, container_attributes(container)))


@asynccontextmanager
async def container_root(
    engine: Engine, container: Container, *, write: bool = False, base_only: bool = False
) -> AsyncIterator[RootView]:
    """The container's `/` as a descriptor, for the duration of the block (see the module doc)."""
    live = None if base_only else _open_live_root(container)
    if live is not None:
        async with _held(RootView(live, True)) as view:
            yield view
        return
    # A parked process has the upper dir mounted as its overlay's upper: no other mount may use it
    # (overlayfs refuses a second writable one and calls any other undefined behaviour).
    await discard_prepared(engine, container)
    if not write:
        fd = await trio.to_thread.run_sync(_mount_view, engine, container, False, not base_only)
        async with _held(RootView(fd, False)) as view:
            yield view
        return
    async with container.lock:
        live = _open_live_root(container)  # it may have started while we waited for the lock
        if live is not None:
            root = RootView(live, True)
        else:
            root = RootView(await trio.to_thread.run_sync(_mount_view, engine, container, True, True), False)
        async with _held(root) as view:
            yield view


@asynccontextmanager
async def _held(view: RootView) -> AsyncIterator[RootView]:
    """`view` until the block ends; then its descriptor closed, and a mounted view unmounted."""
    try:
        yield view
    finally:
        if view.live:
            os.close(view.fd)
        else:
            await _unmount(view.fd)


def _open_live_root(container: Container) -> int | None:
    """`/proc/PID/root` of the running container's first process, or None if it is not running."""
    process = container.process
    if process is None or not container.state.running:
        return None
    try:
        fd = os.open(f"/proc/{process.pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        # Alive after the open: the pid was still ours when we opened its root.
        signal.pidfd_send_signal(process.pidfd, 0)
    except OSError:
        os.close(fd)
        return None
    return fd


def _mount_view(engine: Engine, container: Container, write: bool, volumes: bool) -> int:
    # The same lower dirs the container's overlay has (image layers, init layer), top-most first.
    layers = container_lowers(container.files.dir, engine.images.container_layers(container.spec.image_id))
    lowers = [str(layer) for layer in reversed(layers)]
    snapshot = snapshot_paths(container.files.dir)
    if write:
        fd = mount_overlay(lowers, str(snapshot.upper), str(snapshot.work), readonly=False)
    else:
        fd = mount_overlay([str(snapshot.upper), *lowers], readonly=True)
    try:
        if volumes:
            _attach_volumes(engine, container, fd, write)
    except BaseException:
        os.close(fd)
        raise
    log.debug("archive.view_mounted", container=container.id, write=write)
    return fd


def _attach_volumes(engine: Engine, container: Container, view_fd: int, write: bool) -> None:
    """The container's volumes and binds in a detached view, as Docker's cp sees a stopped
    container; shallowest first, each target resolved inside the view. tmpfs mounts hold nothing
    while the container is down; a target that does not exist (never started) is left out."""
    for mount in sorted((m for m in container.spec.mounts if m.type != "tmpfs"), key=lambda m: m.depth):
        try:
            target_fd = open_in_root(view_fd, mount.target, os.O_PATH)
        except OSError:
            continue
        try:
            attach_bind(host_source(mount, engine.config.root), target_fd, readonly=mount.readonly or not write)
        except OSError as err:
            if err.errno not in (errno.EINVAL, errno.ENOENT, errno.ENOTDIR):
                raise
            # Kernels before 6.15 cannot mount under a detached tree; a missing source; a type clash.
            log.warning("archive.volume_not_attached", container=container.id, target=mount.target, error=str(err))
        finally:
            os.close(target_fd)


async def _unmount(fd: int) -> None:
    # Closing the last descriptor unmounts (a write view flushes): off the event loop, and
    # even when cancelled, or the mount would outlive the request.
    with trio.CancelScope(shield=True):
        await trio.to_thread.run_sync(os.close, fd)


async def _drive(chunks: TarChunks) -> AsyncIterator[bytes]:
    """A synchronous chunk generator, each step in a worker thread; closed however the stream ends."""
    try:
        while (chunk := await trio.to_thread.run_sync(next, chunks, None)) is not None:
            yield chunk
    finally:
        chunks.close()  # only closes descriptors: quick


def _checked(path: str) -> str:
    if not path:
        raise InvalidArgument("bad parameter: path cannot be empty")
    return clean_path(path)


def _stat(view: RootView, absolute: str, path: str, ref: str) -> PathStat:
    try:
        if view.live and _in_runtime_mount(view.fd, absolute, writing=False):
            raise FileNotFoundError(absolute)
        return stat_path(view.fd, absolute)
    except FileNotFoundError:
        raise NotFound(f"Could not find the file {path} in container {ref}") from None
    except OSError as err:
        raise PathError(f"lstat {absolute}: {(err.strerror or str(err)).lower()}") from None


def _in_runtime_mount(root_fd: int, absolute: str, *, writing: bool) -> bool:
    """Whether `absolute` resolves into a running container's /proc, /sys or /dev: the runtime's
    mounts, not the container's filesystem as Docker's cp sees it (empty directories there). Nor
    may a copy write into /proc or /sys themselves."""
    resolved = resolve_in_scope(root_fd, absolute)
    inside = any(resolved.startswith(f"{mount}/") for mount in RUNTIME_MOUNTS)
    return inside or (writing and resolved in ("/proc", "/sys"))


def _extract(
    view: RootView, absolute: str, path: str, ref: str, reader: _BodyReader, user: str | None, no_overwrite: bool
) -> None:
    root_fd = view.fd
    try:
        if view.live and _in_runtime_mount(root_fd, absolute, writing=True):
            raise FileNotFoundError(absolute)
        dest_fd = open_in_root(root_fd, absolute, DIR_FLAGS)
    except FileNotFoundError:
        raise NotFound(f"Could not find the file {path} in container {ref}") from None
    except NotADirectoryError:
        raise InvalidArgument("extraction point is not a directory") from None
    except OSError as err:
        raise PathError(f"{absolute}: {(err.strerror or str(err)).lower()}") from None
    try:
        owner = _user_ids(root_fd, user) if user else None
        options = ExtractOptions(no_overwrite_dir_non_dir=no_overwrite, owner=owner, label=absolute.rstrip("/.") or "/")
        count = extract_tar(reader, dest_fd, options)
    finally:
        os.close(dest_fd)
    log.info("archive.extracted", path=absolute, members=count)


def _user_ids(root_fd: int, user: str) -> tuple[int, int]:
    """Docker's copyUIDGID: the container's configured user and group, looked up in its own files."""
    found = resolve_user(user, _account_file(root_fd, "/etc/passwd"), _account_file(root_fd, "/etc/group"))
    return found.uid, found.gid


def _account_file(root_fd: int, path: str) -> str:
    try:
        fd = open_in_root(root_fd, path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError:
        return ""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return ""
        return os.read(fd, _ACCOUNT_FILE_LIMIT).decode("utf-8", errors="replace")
    finally:
        os.close(fd)


class _BodyReader:
    """The request body as a blocking `read()` for a worker thread, pulling chunks from the event loop."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = memoryview(b"")
        self._eof = False

    async def _next(self) -> bytes:
        # Up to _PULL_SIZE per hop: one thread round trip per request-body chunk would dominate.
        parts: list[bytes] = []
        size = 0
        while size < _PULL_SIZE:
            chunk = await anext(self._chunks, b"")
            if not chunk:
                break
            parts.append(chunk)
            size += len(chunk)
        return b"".join(parts)

    def read(self, size: int = -1, /) -> bytes:
        if size < 0:
            parts = [bytes(self._buffer)]
            self._buffer = memoryview(b"")
            while not self._eof:
                parts.append(self._pull())
            return b"".join(parts)
        while not self._buffer and not self._eof:
            self._buffer = memoryview(self._pull())
        data, self._buffer = bytes(self._buffer[:size]), self._buffer[size:]
        return data

    def _pull(self) -> bytes:
        chunk = trio.from_thread.run(self._next)
        if not chunk:
            self._eof = True
        return chunk
