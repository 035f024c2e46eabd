"""Content digests in OCI form (`sha256:<64 hex>`): computing, validating, hashing while reading."""

from __future__ import annotations

import hashlib
import re
from typing import Protocol

from supervisor.errors import InvalidArgument

ALGORITHM = "sha256"
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_CHUNK = 1 << 20


class ByteSource(Protocol):
    """Anything with a binary `read`: files, decompressors, the readers below."""

    def read(self, n: int = -1, /) -> bytes: ...


def sha256_digest(data: bytes) -> str:
    return f"{ALGORITHM}:{hashlib.sha256(data).hexdigest()}"


def is_digest(text: str) -> bool:
    return bool(_DIGEST.match(text))


def validate_digest(text: str) -> str:
    """`text` unchanged if it is a well-formed sha256 digest; InvalidArgument otherwise."""
    if not _DIGEST.match(text):
        raise InvalidArgument(f"invalid digest {text!r}: expected sha256: followed by 64 lowercase hex digits")
    return text


def digest_hex(digest: str) -> str:
    """The 64 hex digits of a validated digest (the name of its blob and layer directory)."""
    return validate_digest(digest).split(":", 1)[1]


class DigestingReader:
    """A read-only file wrapper that hashes and counts every byte read through it.

    Stacked under and over a gzip decompressor it yields a layer's blob
    digest and diff ID in the same single pass that unpacks it.
    """

    def __init__(self, source: ByteSource) -> None:
        self._source = source
        self._hash = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1, /) -> bytes:
        data = self._source.read(n)
        self._hash.update(data)
        self.size += len(data)
        return data

    def readable(self) -> bool:
        return True

    def drain(self) -> None:
        """Read to the end so the digest covers what the consumer left unread (tar padding, gzip trailer)."""
        while self.read(_CHUNK):
            pass

    @property
    def digest(self) -> str:
        return f"{ALGORITHM}:{self._hash.hexdigest()}"


def file_digest(source: ByteSource) -> tuple[str, int]:
    """Digest and byte count of everything left in `source`."""
    reader = DigestingReader(source)
    reader.drain()
    return reader.digest, reader.size
