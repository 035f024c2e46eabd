from __future__ import annotations

import hashlib
import os
import stat
import tarfile
import threading
from pathlib import Path

import pytest

from supervisor.storage.errors import DigestMismatch, InvalidLayer, UnsafeLayer
from supervisor.storage.layers import unpack_layer

from .tarbuild import MTIME, device, directory, file, hardlink, plain_tar, symlink, tar_bytes, with_pax


def _diff_id(blob: bytes) -> str:
    return "sha256:" + hashlib.sha256(plain_tar(blob)).hexdigest()


def _unpack(tmp_path: Path, blob: bytes, diff_id: str | None = None) -> Path:
    blob_path = tmp_path / "layer.blob"
    blob_path.write_bytes(blob)
    return unpack_layer(blob_path, diff_id or _diff_id(blob), tmp_path / "layers")


def _layers_entries(tmp_path: Path) -> list[str]:
    return sorted(os.listdir(tmp_path / "layers"))


def test_regular_dirs_links_devices(tmp_path: Path) -> None:
    blob = tar_bytes(
        directory("etc/", mode=0o750, uid=1000, gid=1001),
        file("etc/hello", b"hello\n", mode=0o4755, uid=1000, gid=1001),
        symlink("etc/link", "/etc/hello", uid=7, gid=8),
        hardlink("etc/hard", "etc/hello"),
        file("deep/er/file", b"implicit parents"),
        device("dev/null", tarfile.CHRTYPE, 1, 3),
        device("dev/loop0", tarfile.BLKTYPE, 7, 0, mode=0o660),
        device("run/fifo", tarfile.FIFOTYPE, mode=0o600),
    )
    root = _unpack(tmp_path, blob)
    assert root.name == _diff_id(blob).split(":")[1]
    hello = (root / "etc/hello").lstat()
    assert (root / "etc/hello").read_bytes() == b"hello\n"
    assert stat.S_IMODE(hello.st_mode) == 0o4755
    assert (hello.st_uid, hello.st_gid, hello.st_mtime) == (1000, 1001, MTIME)
    etc = (root / "etc").lstat()
    assert stat.S_IMODE(etc.st_mode) == 0o750 and etc.st_mtime == MTIME
    assert os.readlink(root / "etc/link") == "/etc/hello"
    assert ((root / "etc/link").lstat().st_uid, (root / "etc/link").lstat().st_gid) == (7, 8)
    assert (root / "etc/hard").lstat().st_ino == hello.st_ino
    assert (root / "deep/er/file").read_bytes() == b"implicit parents"
    null = (root / "dev/null").lstat()
    assert stat.S_ISCHR(null.st_mode) and (os.major(null.st_rdev), os.minor(null.st_rdev)) == (1, 3)
    assert stat.S_IMODE(null.st_mode) == 0o666
    loop = (root / "dev/loop0").lstat()
    assert stat.S_ISBLK(loop.st_mode) and os.major(loop.st_rdev) == 7
    assert stat.S_ISFIFO((root / "run/fifo").lstat().st_mode)
    assert _layers_entries(tmp_path) == [root.name]


def test_uncompressed_tar(tmp_path: Path) -> None:
    blob = tar_bytes(file("a", b"plain"), gzipped=False)
    assert (_unpack(tmp_path, blob) / "a").read_bytes() == b"plain"


def test_whiteouts_become_overlay_form(tmp_path: Path) -> None:
    blob = tar_bytes(
        directory("etc/"),
        file("etc/.wh.passwd", uid=0, gid=0),
        directory("var/cache/"),
        file("var/cache/.wh..wh..opq"),
        file("var/cache/kept", b"new"),
        file("bin/.wh..wh.plnk"),
    )
    root = _unpack(tmp_path, blob)
    whiteout = (root / "etc/passwd").lstat()
    assert stat.S_ISCHR(whiteout.st_mode) and whiteout.st_rdev == os.makedev(0, 0)
    assert not (root / "etc/.wh.passwd").exists()
    assert os.getxattr(root / "var/cache", "trusted.overlay.opaque") == b"y"
    assert not os.path.lexists(root / "var/cache/.wh..wh..opq")
    assert (root / "var/cache/kept").read_bytes() == b"new"
    assert not os.path.lexists(root / "bin/.wh..wh.plnk")


def test_xattrs_kept_but_overlay_ones_dropped(tmp_path: Path) -> None:
    blob = tar_bytes(
        with_pax(
            file("f", b"x"),
            {"SCHILY.xattr.user.note": "hi", "SCHILY.xattr.trusted.overlay.redirect": "/etc"},
        )
    )
    root = _unpack(tmp_path, blob)
    assert os.getxattr(root / "f", "user.note") == b"hi"
    assert "trusted.overlay.redirect" not in os.listxattr(root / "f")


def test_later_member_replaces_earlier(tmp_path: Path) -> None:
    blob = tar_bytes(directory("x/"), file("x/inner"), file("x", b"now a file"), file("y", b"1"), file("y", b"2"))
    root = _unpack(tmp_path, blob)
    assert (root / "x").read_bytes() == b"now a file"
    assert (root / "y").read_bytes() == b"2"


def _assert_rejected(tmp_path: Path, blob: bytes, outside: Path, match: str) -> None:
    before = sorted(os.listdir(outside))
    with pytest.raises(UnsafeLayer, match=match):
        _unpack(tmp_path, blob)
    assert sorted(os.listdir(outside)) == before
    assert _layers_entries(tmp_path) == []


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    target = tmp_path / "outside"
    target.mkdir()
    (target / "secret").write_text("do not touch")
    return target


def test_dotdot_rejected(tmp_path: Path, outside: Path) -> None:
    _assert_rejected(tmp_path, tar_bytes(file("../outside/pwned", b"x")), outside, "escapes")
    _assert_rejected(tmp_path, tar_bytes(file("a/../../outside/pwned", b"x")), outside, "escapes")


def test_absolute_path_rejected(tmp_path: Path, outside: Path) -> None:
    _assert_rejected(tmp_path, tar_bytes(file(f"{outside}/pwned", b"x")), outside, "absolute")


def test_write_through_symlink_rejected(tmp_path: Path, outside: Path) -> None:
    for target in (str(outside), "../../outside"):
        blob = tar_bytes(symlink("link", target), file("link/pwned", b"x"))
        _assert_rejected(tmp_path, blob, outside, "symlink")
        blob = tar_bytes(symlink("link", target), directory("link/sub/"))
        _assert_rejected(tmp_path, blob, outside, "symlink")


def test_hardlink_escapes_rejected(tmp_path: Path, outside: Path) -> None:
    _assert_rejected(tmp_path, tar_bytes(hardlink("h", "../outside/secret")), outside, "escapes")
    _assert_rejected(tmp_path, tar_bytes(hardlink("h", f"{outside}/secret")), outside, "absolute")
    blob = tar_bytes(symlink("link", str(outside)), hardlink("h", "link/secret"))
    _assert_rejected(tmp_path, blob, outside, "symlink")
    assert (outside / "secret").stat().st_nlink == 1


def test_diff_id_mismatch_leaves_nothing(tmp_path: Path) -> None:
    blob = tar_bytes(file("a", b"x"))
    with pytest.raises(DigestMismatch, match="diff ID"):
        _unpack(tmp_path, blob, diff_id="sha256:" + "0" * 64)
    assert _layers_entries(tmp_path) == []


def test_concurrent_unpack_of_one_layer(tmp_path: Path) -> None:
    blob = tar_bytes(*[file(f"d/f{i}", b"%d" % i) for i in range(200)])
    blob_path = tmp_path / "layer.blob"
    blob_path.write_bytes(blob)
    results: list[Path] = []
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def unpacker() -> None:
        try:
            start.wait()
            results.append(unpack_layer(blob_path, _diff_id(blob), tmp_path / "layers"))
        except BaseException as err:  # surfaced below
            errors.append(err)

    threads = [threading.Thread(target=unpacker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(set(results)) == 1
    assert _layers_entries(tmp_path) == [results[0].name]
    assert len(os.listdir(results[0] / "d")) == 200


def test_hardlink_to_missing_target(tmp_path: Path) -> None:
    with pytest.raises(InvalidLayer, match="hardlink target 'nowhere/x' does not exist"):
        _unpack(tmp_path, tar_bytes(hardlink("h", "nowhere/x")))
    with pytest.raises(InvalidLayer, match="hardlink target 'x' does not exist"):
        _unpack(tmp_path, tar_bytes(hardlink("h", "x")))
    assert _layers_entries(tmp_path) == []


def test_not_a_tar(tmp_path: Path) -> None:
    with pytest.raises(InvalidLayer, match="not a valid"):
        _unpack(tmp_path, b"\x1f\x8b" + b"garbage" * 100, diff_id="sha256:" + "1" * 64)
    assert _layers_entries(tmp_path) == []
