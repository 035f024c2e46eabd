"""The changeset walker and the commit layer writer, against real overlay mounts."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from supervisor.storage.changes import (
    OPAQUE_XATTR,
    REDIRECT_XATTR,
    Change,
    ChangeKind,
    UnsupportedSnapshot,
    container_changes,
)
from supervisor.storage.commit import write_layer
from supervisor.storage.initlayer import ensure_init_layer
from supervisor.storage.layers import unpack_layer

A, C, D = ChangeKind.ADDED, ChangeKind.MODIFIED, ChangeKind.DELETED
MTIME = 1_600_000_000


def _put(root: Path, entries: dict[str, str | bytes | None]) -> Path:
    """Build a layer dir: "dir/" -> directory, "x" -> file bytes, None -> whiteout, "->t" -> symlink."""
    root.mkdir(parents=True)
    for name, value in entries.items():
        path = root / name.rstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith("/"):
            path.mkdir(exist_ok=True)
        elif value is None:
            os.mknod(path, stat.S_IFCHR, os.makedev(0, 0))
        elif isinstance(value, str) and value.startswith("->"):
            os.symlink(value[2:], path)
        else:
            path.write_bytes(value if isinstance(value, bytes) else value.encode())
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            os.utime(os.path.join(dirpath, name), (MTIME, MTIME), follow_symlinks=False)
    os.utime(root, (MTIME, MTIME))
    return root


@contextmanager
def overlay(tmp: Path, lowers: list[Path], upper: Path | None = None) -> Iterator[Path]:
    """Mount lowers (bottom-most first) with `upper` (read-only without), yield the merged dir."""
    merged = tmp / f"merged-{len(list(tmp.glob('merged-*')))}"
    merged.mkdir()
    options = "lowerdir=" + ":".join(str(p) for p in reversed(lowers))
    if upper is not None:
        work = upper.parent / f"{upper.name}-work"
        work.mkdir(exist_ok=True)
        options += f",upperdir={upper},workdir={work}"
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", options, str(merged)], check=True)
    try:
        yield merged
    finally:
        subprocess.run(["umount", str(merged)], check=True)


def sh(cwd: Path, script: str) -> None:
    subprocess.run(["sh", "-ec", script], cwd=cwd, check=True)


def _image(tmp: Path) -> list[Path]:
    bottom = _put(
        tmp / "l0",
        {
            "bin/": None,
            "bin/busybox": b"\x7fELF" + b"x" * 5000,
            "etc/": None,
            "etc/passwd": "root:x:0:0\n",
            "etc/group": "root:x:0:\n",
            "etc/old/": None,
            "etc/old/file": "old",
            "tmp/": None,
            "var/": None,
            "var/spool/": None,
            "var/spool/mail": "mail",
            "var/www/": None,
            "var/www/index.html": "<html>",
            "gone": "deleted by the middle layer",
            "hidden/": None,
            "hidden/below": "hidden by an opaque dir above",
        },
    )
    os.chmod(bottom / "tmp", 0o1777)
    middle = _put(tmp / "l1", {".wh.gone": b"", "gone": None, "hidden/": None, "hidden/above": "kept"})
    (middle / ".wh.gone").unlink()
    os.setxattr(middle / "hidden", OPAQUE_XATTR, b"y")
    return [bottom, middle]


def _changes(upper: Path, lowers: list[Path]) -> set[str]:
    return {str(change) for change in container_changes(upper, lowers)}


def test_docker_diff_steps_through_a_real_overlay(tmp_path: Path) -> None:
    lowers = _image(tmp_path)
    upper = tmp_path / "upper"
    upper.mkdir()
    with overlay(tmp_path, lowers, upper) as root:
        # The steps whose `docker diff` dockerd 20.10 printed (tests/test_commit.py keeps its output).
        sh(
            root,
            "echo hello > etc/motd; echo x >> etc/passwd; rm etc/group; mkdir -p newdir/sub; touch newdir/sub/f;"
            " rm -rf var/spool; mkdir var/spool; touch var/spool/new; ln bin/busybox bin/hl; mkfifo tmp/fifo;"
            " rm -rf var/www",
        )
    assert _changes(upper, lowers) == {
        "C /tmp",
        "A /tmp/fifo",
        "C /etc",
        "A /etc/motd",
        "C /etc/passwd",
        "D /etc/group",
        "A /newdir",
        "A /newdir/sub",
        "A /newdir/sub/f",
        "C /var",
        "C /var/spool",
        "D /var/spool/mail",
        "A /var/spool/new",
        "D /var/www",
        "C /bin",
        "A /bin/hl",
    }
    changes = container_changes(upper, lowers)
    assert [c.path for c in changes] == sorted(c.path for c in changes)
    assert Change("/etc/motd", A).kind.letter == "A" and int(D) == 2 and int(C) == 0


def test_lower_stack_whiteouts_opaque_dirs_and_type_changes(tmp_path: Path) -> None:
    lowers = _image(tmp_path)
    upper = tmp_path / "upper"
    upper.mkdir()
    with overlay(tmp_path, lowers, upper) as root:
        assert not (root / "gone").exists() and sorted(os.listdir(root / "hidden")) == ["above"]
        sh(
            root,
            "echo back > gone; echo new > hidden/below; rm -rf etc/old; echo now-a-file > etc/old;"
            " rm etc/passwd; mkdir etc/passwd; ln -s /etc/hosts etc/hostlink",
        )
    assert _changes(upper, lowers) == {
        "A /gone",  # deleted in the middle layer: new again, not changed
        "C /hidden",
        "A /hidden/below",  # the bottom layer's copy is hidden by the middle layer's opaque dir
        "C /etc",
        "C /etc/old",  # a directory became a file
        "C /etc/passwd",  # a file became a directory
        "A /etc/hostlink",
    }


def test_copy_up_without_change_is_not_reported_but_metadata_is(tmp_path: Path) -> None:
    lowers = _image(tmp_path)
    upper = tmp_path / "upper"
    upper.mkdir()
    with overlay(tmp_path, lowers, upper) as root:
        os.close(os.open(root / "etc/passwd", os.O_WRONLY | os.O_APPEND))  # copies it up, changes nothing
        os.chmod(root / "var/www/index.html", 0o600)
        os.chown(root / "etc/old/file", 12, 34)
    assert (upper / "etc/passwd").exists()
    assert _changes(upper, lowers) == {
        "C /var",
        "C /var/www",
        "C /var/www/index.html",
        "C /etc",
        "C /etc/old",
        "C /etc/old/file",
    }


def test_nothing_changed(tmp_path: Path) -> None:
    lowers = _image(tmp_path)
    upper = tmp_path / "upper"
    upper.mkdir()
    assert container_changes(upper, lowers) == []
    assert write_layer(upper, tmp_path / "layer.tar").entries == 0
    assert (tmp_path / "layer.tar").stat().st_size == 0


def test_symlinks_in_the_upper_dir_are_never_followed(tmp_path: Path) -> None:
    lowers = _image(tmp_path)
    upper = tmp_path / "upper"
    upper.mkdir()
    with overlay(tmp_path, lowers, upper) as root:
        os.symlink("/", root / "escape")
        sh(root, "rm -rf var/spool")
        os.symlink("/etc", root / "var/spool")  # replaces a lower directory
    assert _changes(upper, lowers) == {"A /escape", "C /var", "C /var/spool"}
    layer = tmp_path / "layer.tar"
    write_layer(upper, layer)
    with tarfile.open(layer) as archive:
        names = {m.name: m for m in archive}
    assert names["escape"].issym() and names["escape"].linkname == "/"
    assert not any(name.startswith(("escape/", "var/spool/")) for name in names)


def test_overlay_features_it_cannot_read_are_refused(tmp_path: Path) -> None:
    lowers = _image(tmp_path)
    upper = _put(tmp_path / "upper", {"renamed/": None})
    os.setxattr(upper / "renamed", REDIRECT_XATTR, b"/var/www")
    with pytest.raises(UnsupportedSnapshot, match="redirect_dir"):
        container_changes(upper, lowers)


def _tree(root: Path) -> dict[str, tuple[object, ...]]:
    """Everything a merged view shows: type, mode, owner, size, seconds mtime, content or target."""
    found: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath) / name
            st = path.lstat()
            extra: object = None
            if stat.S_ISREG(st.st_mode):
                extra = hashlib.sha256(path.read_bytes()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                extra = os.readlink(path)
            mtime = None if stat.S_ISDIR(st.st_mode) else int(st.st_mtime)
            found[str(path.relative_to(root))] = (st.st_mode, st.st_uid, st.st_gid, st.st_size, mtime, extra)
    return found


def test_committed_layer_reproduces_the_container_view(tmp_path: Path) -> None:
    lowers = _image(tmp_path)
    upper = tmp_path / "upper"
    upper.mkdir()
    with overlay(tmp_path, lowers, upper) as root:
        sh(
            root,
            "echo hello > etc/motd; echo x >> etc/passwd; rm etc/group; mkdir -p newdir/sub; touch newdir/sub/f;"
            " rm -rf var/spool; mkdir var/spool; touch var/spool/new; ln bin/busybox bin/hl; mkfifo tmp/fifo;"
            " rm -rf var/www; ln -s ../etc/motd tmp/motd; mknod tmp/null c 1 3; chmod 4711 newdir/sub/f;"
            " chown 7:8 newdir; echo back > gone",
        )
        os.setxattr(root / "etc/motd", "user.note", b"\xff\x00binary")
        before = _tree(root)
    layer = tmp_path / "layer.tar"
    written = write_layer(upper, layer)
    assert written.digest == written.diff_id == "sha256:" + hashlib.sha256(layer.read_bytes()).hexdigest()
    with tarfile.open(layer) as archive:
        members = {m.name: m for m in archive}
    assert members["etc/.wh.group"].isreg() and members["etc/.wh.group"].size == 0
    assert members["var/.wh.www"].isreg()
    assert members["var/spool/.wh..wh..opq"].isreg()
    assert members["bin/hl"].islnk() and members["bin/hl"].linkname == "bin/busybox"
    assert members["tmp/fifo"].isfifo() and members["tmp/null"].ischr()
    assert members["etc/motd"].pax_headers["SCHILY.xattr.user.note"].encode("utf-8", "surrogateescape") == (
        b"\xff\x00binary"
    )
    assert not any("trusted.overlay" in key for m in members.values() for key in m.pax_headers)
    unpacked = unpack_layer(layer, written.diff_id, tmp_path / "layers")
    with overlay(tmp_path, [*lowers, unpacked]) as root:
        assert _tree(root) == before
        assert os.getxattr(root / "etc/motd", "user.note") == b"\xff\x00binary"


def test_gzip_layer(tmp_path: Path) -> None:
    upper = _put(tmp_path / "upper", {"a": b"a" * 100_000})
    written = write_layer(upper, tmp_path / "layer.tar.gz", compress_level=1)
    blob = (tmp_path / "layer.tar.gz").read_bytes()
    assert blob[:2] == b"\x1f\x8b" and written.digest == "sha256:" + hashlib.sha256(blob).hexdigest()
    assert written.diff_id != written.digest and len(blob) < 2000
    assert unpack_layer(tmp_path / "layer.tar.gz", written.diff_id, tmp_path / "layers").joinpath(
        "a"
    ).stat().st_size == (100_000)


def test_init_layer_adds_only_what_the_image_lacks(tmp_path: Path) -> None:
    image = _put(tmp_path / "img", {"etc/": None, "etc/hosts": "image's own", "proc/": None, "lib": "->usr/lib"})
    os.chmod(image / "etc", 0o710)
    os.chown(image / "etc", 5, 6)
    os.setxattr(image / "etc", "user.k", b"v")
    os.utime(image / "etc", (MTIME, MTIME))
    container = tmp_path / "c"
    container.mkdir()
    init = ensure_init_layer(
        container, [image], ["/proc", "/dev", "/sys/fs/cgroup"], ["/etc/hostname", "/etc/hosts", "/lib/x"]
    )
    assert init == container / "init"
    assert sorted(str(p.relative_to(init)) for p in init.rglob("*")) == [
        "dev",
        "etc",
        "etc/hostname",
        "sys",
        "sys/fs",
        "sys/fs/cgroup",
    ]
    st = (init / "etc").stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, int(st.st_mtime)) == (0o710, 5, 6, MTIME)
    assert os.getxattr(init / "etc", "user.k") == b"v"
    upper = tmp_path / "upper"
    upper.mkdir()
    with overlay(tmp_path, [image, init], upper) as root:
        assert (root / "etc/hosts").read_text() == "image's own"
        assert (root / "etc/hostname").exists() and (root / "dev").is_dir()
    assert container_changes(upper, [image, init]) == []
    # Made once: a second call keeps the first.
    (init / "marker").touch()
    assert (ensure_init_layer(container, [image], ["/x"], []) / "marker").exists()
