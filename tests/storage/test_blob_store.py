from __future__ import annotations

import hashlib
import io
import threading
from pathlib import Path

import pytest

from supervisor.errors import InvalidArgument, NotFound
from supervisor.storage.content import ContentStore
from supervisor.storage.digest import DigestingReader, digest_hex, sha256_digest, validate_digest
from supervisor.storage.errors import CorruptContent, DigestMismatch


@pytest.fixture
def store(tmp_path: Path) -> ContentStore:
    return ContentStore(tmp_path / "images")


def _leftovers(store: ContentStore) -> list[Path]:
    return list((store.root / "ingest").iterdir())


def test_sha256_digest_and_validation() -> None:
    assert sha256_digest(b"") == "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert validate_digest(sha256_digest(b"x")) == sha256_digest(b"x")
    for bad in ["", "sha256:", "sha256:ABC", "md5:" + "0" * 64, "sha256:" + "0" * 63, "0" * 64]:
        with pytest.raises(InvalidArgument):
            validate_digest(bad)
    assert digest_hex(sha256_digest(b"x")) == hashlib.sha256(b"x").hexdigest()


def test_digesting_reader_counts_and_hashes() -> None:
    reader = DigestingReader(io.BytesIO(b"hello world"))
    assert reader.read(5) == b"hello"
    reader.drain()
    assert reader.size == 11
    assert reader.digest == sha256_digest(b"hello world")


def test_put_get_roundtrip(store: ContentStore) -> None:
    digest = store.put(b"blob data")
    assert digest == sha256_digest(b"blob data")
    assert store.has(digest)
    assert store.path(digest) == store.root / "blobs" / "sha256" / digest_hex(digest)
    assert store.get(digest) == b"blob data"
    assert store.size(digest) == 9
    assert store.put(b"blob data", expected=digest) == digest


def test_put_stream_roundtrip(store: ContentStore) -> None:
    data = b"x" * (3 << 20)
    digest = store.put_stream(io.BytesIO(data), expected=sha256_digest(data))
    assert store.get(digest) == data
    assert _leftovers(store) == []


def test_mismatch_is_rejected_and_leaves_nothing(store: ContentStore) -> None:
    wrong = sha256_digest(b"other")
    with pytest.raises(DigestMismatch, match="digest mismatch"):
        store.put(b"data", expected=wrong)
    with pytest.raises(DigestMismatch, match="digest mismatch"):
        store.put_stream(io.BytesIO(b"data"), expected=wrong)
    assert not store.has(sha256_digest(b"data"))
    assert not store.has(wrong)
    assert _leftovers(store) == []
    assert list((store.root / "blobs" / "sha256").iterdir()) == []


def test_corruption_is_detected(store: ContentStore) -> None:
    digest = store.put(b"pristine")
    store.path(digest).write_bytes(b"tampered")
    with pytest.raises(CorruptContent, match=digest):
        store.get(digest)


def test_missing_blob_and_delete(store: ContentStore) -> None:
    digest = store.put(b"gone soon")
    store.delete(digest)
    store.delete(digest)
    assert not store.has(digest)
    with pytest.raises(NotFound):
        store.get(digest)


def test_concurrent_puts_of_one_blob(store: ContentStore) -> None:
    data = b"shared layer " * 100_000
    results: list[str] = []
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def writer(index: int) -> None:
        try:
            start.wait()
            if index % 2:
                results.append(store.put(data))
            else:
                results.append(store.put_stream(io.BytesIO(data)))
        except BaseException as err:  # surfaced below
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert set(results) == {sha256_digest(data)}
    assert store.get(sha256_digest(data)) == data
    assert _leftovers(store) == []
