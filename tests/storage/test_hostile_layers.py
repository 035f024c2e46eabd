"""The hostile-tar corpus: each case rejected (with a clear message) or contained, and nothing outside changed.

Each case is unpacked into a fresh sandbox:

    <tmp>/sandbox/outside/        what the cases aim at (files, a dir, a symlink, an xattr)
    <tmp>/sandbox/blob.tar        the case
    <tmp>/sandbox/layers/         the layers root: the unpacker's temp dir and the layer dir

Everything under <tmp> but the layers root is walked and hashed before and
after (type, mode, owner, size, mtime, link count, content, symlink
target, xattrs): it must be identical. The layers root must then hold
nothing (rejected: no temp dir left behind) or exactly the layer dir.
"""

from __future__ import annotations

import hashlib
import os
import resource
import stat
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from supervisor.storage.errors import InvalidLayer
from supervisor.storage.layers import unpack_layer

from .hostile_corpus import CASES, HostileCase, write_corpus

TIB = 1 << 40
Snapshot = dict[str, tuple[object, ...]]


def _entry(path: str) -> tuple[object, ...]:
    info = os.lstat(path)
    content: object = None
    if stat.S_ISREG(info.st_mode):
        with open(path, "rb") as file:
            content = hashlib.file_digest(file, "sha256").hexdigest()
    elif stat.S_ISLNK(info.st_mode):
        content = os.readlink(path)
    xattrs = tuple(
        sorted(
            (name, os.getxattr(path, name, follow_symlinks=False)) for name in os.listxattr(path, follow_symlinks=False)
        )
    )
    return (
        info.st_mode,
        info.st_uid,
        info.st_gid,
        info.st_size,
        info.st_mtime_ns,
        info.st_nlink,
        info.st_rdev,
        content,
        xattrs,
    )


def surroundings(top: Path, excluded: Path) -> Snapshot:
    """Every entry under `top` except the `excluded` subtree, by path."""
    found: Snapshot = {".": _entry(str(top))}
    for parent, dirnames, filenames in os.walk(top):
        dirnames[:] = [name for name in dirnames if os.path.join(parent, name) != str(excluded)]
        for name in dirnames + filenames:
            path = os.path.join(parent, name)
            found[os.path.relpath(path, top)] = _entry(path)
    return found


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    box = tmp_path / "sandbox"
    outside = box / "outside"
    (outside / "sub").mkdir(parents=True)
    (outside / "secret").write_text("do not touch")
    (outside / "sub" / "file").write_bytes(b"\x00binary\xff")
    os.symlink("secret", outside / "alias")
    os.setxattr(outside / "secret", "user.mark", b"untouched")
    (box / "layers").mkdir()
    return box


def _check_symlink_then_file(root: Path, outside: Path) -> None:
    assert (root / "secret").read_bytes() == b"replaced"
    assert stat.S_ISREG((root / "secret").lstat().st_mode)


def _check_symlink_then_directory(root: Path, outside: Path) -> None:
    assert stat.S_ISDIR((root / "link").lstat().st_mode)
    assert (root / "link" / "inside").read_bytes() == b"in the layer"


def _check_hardlink_to_symlink(root: Path, outside: Path) -> None:
    assert os.readlink(root / "h") == f"{outside}/secret"
    assert (root / "h").lstat().st_ino == (root / "s").lstat().st_ino


def _check_sparse(root: Path, outside: Path) -> None:
    info = (root / "sparse.img").stat()
    assert info.st_size == TIB
    assert info.st_blocks * 512 < 1 << 20, "the holes were written out"
    with open(root / "sparse.img", "rb") as file:
        assert file.read(512) == b"A" * 512
        assert file.read(512) == bytes(512)
        file.seek(TIB - 512)
        assert file.read() == b"Z" * 512


def _check_duplicates(root: Path, outside: Path) -> None:
    assert (root / "x").read_bytes() == b"second"
    assert (root / "d").read_bytes() == b"now a file"
    assert (root / "f" / "child").read_bytes() == b"now a dir"


def _check_devices(root: Path, outside: Path) -> None:
    assert (root / "dev/null").read_bytes() == b"not written to the device"
    mem = (root / "dev/mem").lstat()
    assert stat.S_ISCHR(mem.st_mode) and (os.major(mem.st_rdev), os.minor(mem.st_rdev)) == (1, 1)
    loop = (root / "dev/loop0").lstat()
    assert stat.S_ISBLK(loop.st_mode) and os.major(loop.st_rdev) == 7
    assert stat.S_ISFIFO((root / "dev/fifo").lstat().st_mode)


def _check_no_overlay_xattrs(root: Path, outside: Path) -> None:
    assert not [name for name in os.listxattr(root / "d") if name.startswith("trusted.")]


CONTAINED: dict[str, Callable[[Path, Path], None]] = {
    "symlink-then-file": _check_symlink_then_file,
    "symlink-then-directory": _check_symlink_then_directory,
    "hardlink-to-symlink": _check_hardlink_to_symlink,
    "sparse-terabyte": _check_sparse,
    "duplicates": _check_duplicates,
    "real-devices": _check_devices,
    "forged-overlay-xattrs": _check_no_overlay_xattrs,
}


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 12
    assert {case.name for case in CASES if case.rejected is None} == set(CONTAINED)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_hostile_layer(case: HostileCase, sandbox: Path) -> None:
    top = sandbox.parent
    layers = sandbox / "layers"
    outside = sandbox / "outside"
    blob = sandbox / "blob.tar"
    blob.write_bytes(case.build(str(outside)))
    diff_id = "sha256:" + hashlib.sha256(blob.read_bytes()).hexdigest()
    before = surroundings(top, layers)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if case.rejected is not None:
        with pytest.raises(InvalidLayer, match=case.rejected):
            unpack_layer(blob, diff_id, layers)
        assert os.listdir(layers) == [], "a rejected layer left something behind"
    else:
        root = unpack_layer(blob, diff_id, layers)
        assert os.listdir(layers) == [root.name]
        CONTAINED[case.name](root, outside)
    assert surroundings(top, layers) == before
    # Claims of huge sizes are streamed or refused, never read into memory (ru_maxrss is in KiB).
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before < 64 << 10
    assert not [thread for thread in threading.enumerate() if thread.name == "layer-read-ahead"]


def test_corpus_script_writes_every_case(tmp_path: Path) -> None:
    written = write_corpus(tmp_path / "hostile", "/tmp/corral-hostile-outside")
    assert sorted(path.name for path in written) == sorted(f"{case.name}.tar" for case in CASES)
