"""Storage failures, as subclasses of the shared user-error types where a user can cause them."""

from __future__ import annotations

from supervisor.errors import CorralError, InvalidArgument


class DigestMismatch(InvalidArgument):
    """Content offered to the store does not hash to the digest it was announced with."""


class CorruptContent(CorralError):
    """A stored blob or layer no longer matches its digest: the disk, not the user, is at fault."""

    status = 500


class SnapshotInUse(RuntimeError):
    """A snapshot's merged dir is still a mount point: its owner failed to unmount it (a bug)."""


class InvalidLayer(InvalidArgument):
    """A layer blob cannot be unpacked: not a (gzip) tar, truncated, or a member the kernel refuses."""


class UnsafeLayer(InvalidLayer):
    """A layer tar holds a member that would escape or damage the layer directory."""
