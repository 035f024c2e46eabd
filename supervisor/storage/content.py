"""The blob store of an OCI image layout: `blobs/sha256/<hex>`, content-addressed and verified."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO

import structlog

from supervisor.errors import NotFound
from supervisor.storage.digest import ALGORITHM, digest_hex, validate_digest
from supervisor.storage.errors import CorruptContent, DigestMismatch
from supervisor.storage.fsutil import fsync_dir

log = structlog.get_logger(__name__)

_CHUNK = 1 << 20
# Partial writes live beside the blobs (same filesystem, so rename is atomic)
# but outside blobs/, which the OCI layout reserves for complete blobs.
INGEST_DIR = "ingest"


class ContentStore:
    """Blobs under `root` (the OCI layout directory, ROOT/images).

    Every write goes to a temp file, is fsynced and renamed into place, so a
    blob's name is only ever bound to its complete, verified content; two
    writers of the same blob each rename identical bytes, which is harmless.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._blobs = root / "blobs" / ALGORITHM
        self._ingest = root / INGEST_DIR
        self._blobs.mkdir(parents=True, exist_ok=True)
        self._ingest.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        return self._blobs / digest_hex(digest)

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def size(self, digest: str) -> int:
        try:
            return self.path(digest).stat().st_size
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found") from None

    def put(self, data: bytes, expected: str | None = None) -> str:
        """Store `data`; its digest. DigestMismatch (and nothing stored) if it is not `expected`."""
        digest = f"{ALGORITHM}:{hashlib.sha256(data).hexdigest()}"
        if expected is not None:
            _check_expected(validate_digest(expected), digest)
        if self.has(digest):
            return digest
        fd, tmp_name = tempfile.mkstemp(prefix="blob-", dir=self._ingest)
        try:
            with os.fdopen(fd, "wb") as tmp:
                tmp.write(data)
                tmp.flush()
                os.fsync(tmp.fileno())
            self._commit(tmp_name, digest)
        except BaseException:
            _discard(tmp_name)
            raise
        return digest

    def put_stream(self, source: BinaryIO, expected: str | None = None) -> str:
        """Store everything left in `source`, hashing while copying; as `put`."""
        if expected is not None:
            validate_digest(expected)
        hasher = hashlib.sha256()
        fd, tmp_name = tempfile.mkstemp(prefix="blob-", dir=self._ingest)
        try:
            with os.fdopen(fd, "wb") as tmp:
                while chunk := source.read(_CHUNK):
                    hasher.update(chunk)
                    tmp.write(chunk)
                tmp.flush()
                os.fsync(tmp.fileno())
            digest = f"{ALGORITHM}:{hasher.hexdigest()}"
            if expected is not None:
                _check_expected(expected, digest)
            self._commit(tmp_name, digest)
        except BaseException:
            _discard(tmp_name)
            raise
        return digest

    def get(self, digest: str) -> bytes:
        """The blob's bytes, verified against its digest (CorruptContent if they differ)."""
        try:
            data = self.path(digest).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found") from None
        actual = f"{ALGORITHM}:{hashlib.sha256(data).hexdigest()}"
        if actual != digest:
            log.error("blob.corrupt", digest=digest, actual=actual)
            raise CorruptContent(f"blob {digest} is corrupt: its content hashes to {actual}")
        return data

    def delete(self, digest: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(digest))
            fsync_dir(self._blobs)

    def _commit(self, tmp_name: str, digest: str) -> None:
        target = self.path(digest)
        if target.exists():
            # Another writer won; keep its inode so open readers are undisturbed.
            _discard(tmp_name)
            return
        os.chmod(tmp_name, 0o644)
        os.rename(tmp_name, target)
        fsync_dir(self._blobs)
        log.debug("blob.stored", digest=digest)


def _check_expected(expected: str, actual: str) -> None:
    if expected != actual:
        raise DigestMismatch(f"digest mismatch: expected {expected}, content hashes to {actual}")


def _discard(tmp_name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp_name)
