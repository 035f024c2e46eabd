"""Layer unpack fidelity: tar dialects (GNU tar's own archives), compression, whiteout semantics, metadata."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from supervisor.storage.decompress import zstd_module
from supervisor.storage.errors import InvalidLayer
from supervisor.storage.layers import uncompressed_digest, unpack_layer

from .tarbuild import MTIME, directory, file, hardlink, symlink, tar_bytes, with_pax

GNU_TAR = shutil.which("tar")
OPAQUE = "trusted.overlay.opaque"


def _unpack_blob(tmp_path: Path, blob: bytes, tar: bytes | None = None) -> Path:
    path = tmp_path / "layer.blob"
    path.write_bytes(blob)
    diff_id = "sha256:" + hashlib.sha256(tar if tar is not None else blob).hexdigest()
    return unpack_layer(path, diff_id, tmp_path / "layers")


def _unpack(tmp_path: Path, *entries: tuple[tarfile.TarInfo, bytes | None]) -> Path:
    return _unpack_blob(tmp_path, tar_bytes(*entries, gzipped=False))


def _is_whiteout(path: Path) -> bool:
    info = path.lstat()
    return stat.S_ISCHR(info.st_mode) and info.st_rdev == 0


def _opaque(path: Path) -> bool:
    return OPAQUE in os.listxattr(path)


# -- whiteouts within one layer (OCI: a whiteout applies to lower layers only) ------------------


def test_whiteout_after_a_file_of_the_same_layer_keeps_it(tmp_path: Path) -> None:
    root = _unpack(tmp_path, file("etc/conf", b"mine"), file("etc/.wh.conf"))
    assert (root / "etc/conf").read_bytes() == b"mine"


def test_file_after_its_whiteout_replaces_it(tmp_path: Path) -> None:
    root = _unpack(tmp_path, file("etc/.wh.conf"), file("etc/conf", b"mine"))
    assert (root / "etc/conf").read_bytes() == b"mine"


def test_whiteout_of_a_directory_this_layer_made_makes_it_opaque(tmp_path: Path) -> None:
    root = _unpack(tmp_path, directory("a/"), file("a/new", b"n"), file(".wh.a"))
    assert (root / "a/new").read_bytes() == b"n"
    assert _opaque(root / "a")


def test_directory_recreated_after_its_whiteout_is_opaque(tmp_path: Path) -> None:
    root = _unpack(tmp_path, file(".wh.a"), directory("a/"), file("a/new"), file(".wh.b"), file("b/implicit"))
    assert _opaque(root / "a") and (root / "a/new").exists()
    assert _opaque(root / "b") and (root / "b/implicit").exists()


def test_plain_whiteouts_and_opaque_markers(tmp_path: Path) -> None:
    root = _unpack(tmp_path, directory("d/"), file("d/.wh..wh..opq"), file("d/kept"), file("gone/.wh.x"))
    assert _opaque(root / "d") and (root / "d/kept").exists() and not (root / "d/.wh..wh..opq").exists()
    assert _is_whiteout(root / "gone/x")
    assert not _opaque(root / "gone")


def test_opaque_marker_after_the_directory_content(tmp_path: Path) -> None:
    # "regardless of the ordering in which the whiteout file was encountered"
    root = _unpack(tmp_path, directory("a/"), directory("a/b/"), file("a/b/foo", b"f"), file("a/.wh..wh..opq"))
    assert _opaque(root / "a") and (root / "a/b/foo").read_bytes() == b"f"


def test_char_device_zero_zero_is_a_whiteout(tmp_path: Path) -> None:
    info = tarfile.TarInfo("x")
    info.type = tarfile.CHRTYPE
    root = _unpack(tmp_path, (info, None), file("x", b"recreated"))
    assert (root / "x").read_bytes() == b"recreated"


# -- metadata --------------------------------------------------------------------------------


def test_modes_owners_times_xattrs(tmp_path: Path) -> None:
    caps = "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    root = _unpack(
        tmp_path,
        directory("tmp/", mode=0o1777),
        file("bin/su", b"su", mode=0o4755, uid=0, gid=0),
        file("bin/wall", b"w", mode=0o2755, uid=0, gid=5),
        directory("srv/", mode=0o2775, uid=33, gid=33),
        file("srv/inherits-not", b"x", uid=1, gid=2),
        file("srv/root-owned", b"r", uid=0, gid=0),
        file("srv/plain", b"p", mode=0o640),
        with_pax(file("bin/ping", b"p", mode=0o755), {"SCHILY.xattr.security.capability": caps}),
        with_pax(file("note", b"n"), {"SCHILY.xattr.user.comment": "h\u00e9llo", "mtime": "1600000000.25"}),
        symlink("lnk", "bin/su", uid=3, gid=4),
    )
    assert stat.S_IMODE((root / "tmp").stat().st_mode) == 0o1777
    assert stat.S_IMODE((root / "bin/su").stat().st_mode) == 0o4755
    wall = (root / "bin/wall").stat()
    assert (stat.S_IMODE(wall.st_mode), wall.st_gid) == (0o2755, 5)
    inner = (root / "srv/inherits-not").stat()
    assert (inner.st_uid, inner.st_gid) == (1, 2)  # not the setgid dir's group
    assert (root / "srv/root-owned").stat().st_gid == 0
    assert stat.S_IMODE((root / "srv/plain").stat().st_mode) == 0o640
    assert stat.S_IMODE((root / "srv").stat().st_mode) == 0o2775
    assert os.getxattr(root / "bin/ping", "security.capability") == caps.encode("latin-1")
    assert os.getxattr(root / "note", "user.comment") == "h\u00e9llo".encode()
    assert (root / "note").stat().st_mtime_ns == 1_600_000_000_250_000_000
    assert (root / "srv").stat().st_mtime == MTIME  # set after its children were created
    link = (root / "lnk").lstat()
    assert (link.st_uid, link.st_gid, link.st_mtime) == (3, 4, MTIME)


def test_hardlinks_share_an_inode(tmp_path: Path) -> None:
    root = _unpack(tmp_path, file("bin/busybox", b"bb", mode=0o755), hardlink("bin/sh", "bin/busybox"))
    assert (root / "bin/sh").stat().st_ino == (root / "bin/busybox").stat().st_ino
    assert (root / "bin/busybox").stat().st_nlink == 2


def test_docker_empty_layer(tmp_path: Path) -> None:
    # Docker's empty layer: an archive with no member, only its two zero end blocks.
    root = _unpack_blob(tmp_path, bytes(1024))
    assert root.name == "5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"
    assert os.listdir(root) == []


# -- compression -----------------------------------------------------------------------------


def test_gzip_concatenated_members_and_zero_padding(tmp_path: Path) -> None:
    tar = tar_bytes(file("a", b"A" * 5000), file("b", b"B"), gzipped=False)
    blob = gzip.compress(tar[:3000], mtime=0) + gzip.compress(tar[3000:], mtime=0) + bytes(100)
    root = _unpack_blob(tmp_path, blob, tar)
    assert (root / "a").read_bytes() == b"A" * 5000 and (root / "b").read_bytes() == b"B"
    assert uncompressed_digest(io.BytesIO(blob)) == ("sha256:" + hashlib.sha256(tar).hexdigest(), len(tar))


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda blob: blob[: len(blob) // 2], "truncated"),
        (lambda blob: blob + b"junk", "trailing garbage"),
        (lambda blob: blob[:-8] + b"\0" * 8, "incorrect"),  # CRC-32 and length trailer
    ],
)
def test_broken_gzip_rejected(tmp_path: Path, mangle: object, message: str) -> None:
    tar = tar_bytes(file("a", os.urandom(3000)), gzipped=False)
    blob = mangle(gzip.compress(tar, mtime=0))  # type: ignore[operator]
    with pytest.raises(InvalidLayer, match=message):
        _unpack_blob(tmp_path, blob, tar)
    assert os.listdir(tmp_path / "layers") == []


@pytest.mark.skipif(zstd_module() is None, reason="backports.zstd is not installed")
def test_zstd_layer(tmp_path: Path) -> None:
    zstd = zstd_module()
    assert zstd is not None
    tar = tar_bytes(file("z", b"zstd content" * 1000), gzipped=False)
    blob = zstd.compress(tar[:2000]) + zstd.compress(tar[2000:])  # two frames
    root = _unpack_blob(tmp_path, blob, tar)
    assert (root / "z").read_bytes() == b"zstd content" * 1000
    assert uncompressed_digest(io.BytesIO(blob))[0] == "sha256:" + hashlib.sha256(tar).hexdigest()


def test_zstd_without_the_package_is_refused_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("supervisor.storage.decompress.zstd_module", lambda: None)
    with pytest.raises(InvalidLayer, match="backports.zstd"):
        _unpack_blob(tmp_path, b"\x28\xb5\x2f\xfd" + bytes(100), b"")


# -- GNU tar's own archives, compared with GNU tar's own extraction -----------------------------


def _make_source_tree(top: Path) -> None:
    top.mkdir()
    long_dir = top / ("long-directory-name-" * 6)
    long_dir.mkdir()
    (long_dir / ("and-a-long-file-name-" * 6)).write_bytes(b"long names")
    (top / "setuid").write_bytes(b"s")
    os.chmod(top / "setuid", 0o4755)
    (top / "sticky").mkdir()
    os.chmod(top / "sticky", 0o1777)
    (top / "owned").write_bytes(b"o")
    os.chown(top / "owned", 3_000_000, 2_500_000)  # too big for octal: base-256 in GNU format
    os.link(top / "owned", top / "owned-link")
    os.symlink("../escape/is/just/data", top / "dangling")
    os.mkfifo(top / "fifo")
    os.setxattr(top / "owned", "user.k", b"v\x00binary")
    with open(top / "sparse", "wb") as sparse:
        for segment in range(7):  # more than the 4 segments an old-GNU header holds: extension blocks
            sparse.seek(segment << 20)
            sparse.write(b"segment %d" % segment)
        sparse.truncate(8 << 20)
    (top / "big").write_bytes(os.urandom(3 << 20))
    for path in [top, *top.rglob("*")]:
        os.utime(path, (MTIME, MTIME), follow_symlinks=False)


def _walk(top: Path) -> dict[str, tuple[object, ...]]:
    found: dict[str, tuple[object, ...]] = {}
    inodes: dict[int, str] = {}
    for path in sorted(top.rglob("*")):
        info = path.lstat()
        content: object = None
        if stat.S_ISREG(info.st_mode):
            content = hashlib.sha256(path.read_bytes()).hexdigest()
        elif stat.S_ISLNK(info.st_mode):
            content = os.readlink(path)
        xattrs = (
            sorted((n, os.getxattr(path, n)) for n in os.listxattr(path, follow_symlinks=False))
            if not path.is_symlink()
            else []
        )
        first = inodes.setdefault(info.st_ino, str(path.relative_to(top)))
        found[str(path.relative_to(top))] = (
            info.st_mode,
            info.st_uid,
            info.st_gid,
            info.st_size,
            info.st_mtime_ns,
            content,
            xattrs,
            first,
        )
    return found


@pytest.mark.skipif(GNU_TAR is None, reason="GNU tar is not installed")
@pytest.mark.parametrize(
    "options",
    [
        ["--format=gnu"],
        ["--format=posix"],
        ["--format=posix", "--sparse", "--sparse-version=0.0"],
        ["--format=posix", "--sparse", "--sparse-version=0.1"],
        ["--format=posix", "--sparse", "--sparse-version=1.0"],
        ["--format=gnu", "--sparse"],
    ],
    ids=["gnu", "pax", "pax-sparse-0.0", "pax-sparse-0.1", "pax-sparse-1.0", "gnu-sparse"],
)
def test_same_tree_as_gnu_tar(tmp_path: Path, options: list[str]) -> None:
    assert GNU_TAR is not None
    _make_source_tree(tmp_path / "src")
    archive = tmp_path / "layer.tar"
    subprocess.run(
        [GNU_TAR, *options, "--xattrs", "--numeric-owner", "-C", str(tmp_path / "src"), "-cf", str(archive), "."],
        check=True,
    )
    reference = tmp_path / "reference"
    reference.mkdir()
    subprocess.run(
        [GNU_TAR, "--xattrs", "--xattrs-include=user.*", "--numeric-owner", "-C", str(reference), "-xpf", str(archive)],
        check=True,
    )
    blob = archive.read_bytes()
    root = _unpack_blob(tmp_path, blob)
    assert _walk(root) == _walk(reference)
    if "--sparse" in options:
        assert (root / "sparse").stat().st_blocks * 512 < 1 << 20
