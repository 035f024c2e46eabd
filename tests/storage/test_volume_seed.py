"""Volumes on disk and their seeding from an image's layer dirs (merged as overlay would)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from supervisor.errors import Conflict, InvalidArgument, NotFound
from supervisor.storage.seed import image_path, seed_volume
from supervisor.storage.volumes import ANONYMOUS_LABEL, VolumeStore, validate_volume_name


def _whiteout(path: Path) -> None:
    os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(0, 0))


def _opaque(path: Path) -> None:
    os.setxattr(path, "trusted.overlay.opaque", b"y")


@pytest.fixture
def layers(tmp_path: Path) -> list[Path]:
    """Two layers, bottom first: the upper one deletes, replaces and hides some of the lower's files."""
    low, high = tmp_path / "low", tmp_path / "high"
    for layer in (low, high):
        (layer / "srv").mkdir(parents=True)
    (low / "srv" / "kept").write_text("low")
    (low / "srv" / "gone").write_text("deleted above")
    (low / "srv" / "replaced").write_text("old")
    (low / "srv" / "hidden").mkdir()
    (low / "srv" / "hidden" / "old").write_text("hidden by an opaque dir")
    (low / "srv" / "merged").mkdir()
    (low / "srv" / "merged" / "a").write_text("a")
    (low / "etc").mkdir()
    (low / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (high / "srv" / "replaced").write_text("new")
    _whiteout(high / "srv" / "gone")
    (high / "srv" / "hidden").mkdir()
    _opaque(high / "srv" / "hidden")
    (high / "srv" / "hidden" / "new").write_text("n")
    (high / "srv" / "merged").mkdir()
    (high / "srv" / "merged" / "b").write_text("b")
    (high / "srv" / "tool").write_text("#!/bin/sh\n")
    os.chown(high / "srv" / "tool", 1000, 1001)
    os.chmod(high / "srv" / "tool", 0o4750)
    os.link(high / "srv" / "tool", high / "srv" / "tool-link")
    os.symlink("kept", high / "srv" / "alias")
    os.mkfifo(high / "srv" / "fifo", 0o640)
    os.setxattr(high / "srv" / "replaced", "user.note", b"hello")
    os.chmod(high / "srv", 0o750)
    os.chown(high / "srv", 1000, 1000)
    # Symlinks that would leave the image if followed on the host.
    os.symlink("/etc", high / "to-etc")
    os.symlink("../../../../../etc", high / "up-etc")
    os.symlink("/", high / "to-root")
    return [low, high]


def _tree(root: Path) -> dict[str, str]:
    found = {}
    for parent, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(parent) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                found[rel] = "-> " + os.readlink(path)
            elif path.is_dir():
                found[rel] = "dir"
            elif stat.S_ISFIFO(path.lstat().st_mode):
                found[rel] = "fifo"
            else:
                found[rel] = path.read_text()
    return found


def test_seed_merges_layers_like_overlay(layers: list[Path], tmp_path: Path) -> None:
    volume = tmp_path / "vol"
    volume.mkdir()
    assert seed_volume(layers, "/srv", volume)
    assert _tree(volume) == {
        "kept": "low",
        "replaced": "new",
        "hidden": "dir",
        "hidden/new": "n",
        "merged": "dir",
        "merged/a": "a",
        "merged/b": "b",
        "tool": "#!/bin/sh\n",
        "tool-link": "#!/bin/sh\n",
        "alias": "-> kept",
        "fifo": "fifo",
    }
    tool = os.lstat(volume / "tool")
    assert (stat.S_IMODE(tool.st_mode), tool.st_uid, tool.st_gid, tool.st_nlink) == (0o4750, 1000, 1001, 2)
    assert os.lstat(volume / "tool-link").st_ino == tool.st_ino
    assert stat.S_IMODE(os.lstat(volume / "fifo").st_mode) == 0o640
    assert os.getxattr(volume / "replaced", "user.note") == b"hello"
    # The volume's root takes the image directory's owner and mode, as Docker's copy does.
    root = os.lstat(volume)
    assert (stat.S_IMODE(root.st_mode), root.st_uid) == (0o750, 1000)


def test_seed_only_fills_an_empty_volume(layers: list[Path], tmp_path: Path) -> None:
    volume = tmp_path / "vol"
    volume.mkdir()
    (volume / "mine").write_text("x")
    assert not seed_volume(layers, "/srv", volume)
    assert _tree(volume) == {"mine": "x"}
    empty = tmp_path / "empty"
    empty.mkdir()
    assert not seed_volume(layers, "/nothing/here", empty)
    assert not seed_volume(layers, "/srv/kept", empty)  # a file: nothing to copy into a directory
    assert not seed_volume(layers, "/srv/gone", empty)  # whited out
    assert os.listdir(empty) == []


def test_symlinks_resolve_inside_the_image(layers: list[Path], tmp_path: Path) -> None:
    for target in ("/to-etc", "/up-etc", "/srv/../up-etc/../etc"):
        volume = tmp_path / target.replace("/", "_")
        volume.mkdir()
        assert seed_volume(layers, target, volume)
        # The image's /etc, never the host's.
        assert sorted(os.listdir(volume)) == ["passwd"], target
    resolved = image_path(layers, "/up-etc/passwd")
    assert resolved is not None and resolved.path == "/etc/passwd" and not resolved.entry.is_dir
    root_volume = tmp_path / "root"
    root_volume.mkdir()
    with pytest.raises(InvalidArgument, match="leads to /"):
        seed_volume(layers, "/to-root", root_volume)
    assert os.listdir(root_volume) == []


def test_symlink_loops_are_refused(tmp_path: Path) -> None:
    layer = tmp_path / "l"
    layer.mkdir()
    os.symlink("b", layer / "a")
    os.symlink("a", layer / "b")
    with pytest.raises(InvalidArgument, match="too many levels"):
        image_path([layer], "/a")


def test_volume_store_lifecycle(tmp_path: Path) -> None:
    store = VolumeStore(tmp_path / "volumes")
    volume, made = store.create("data", {"team": "a"})
    assert made and volume.mountpoint == tmp_path / "volumes" / "data" / "_data" and volume.mountpoint.is_dir()
    again, made_again = store.create("data", {"other": "label"})
    assert not made_again and again.labels == {"team": "a"}
    anonymous, _ = store.create("f" * 64, {ANONYMOUS_LABEL: ""})
    assert anonymous.anonymous and not volume.anonymous
    assert [v.name for v in store.list()] == ["data", "f" * 64]
    (volume.mountpoint / "sub").mkdir()
    (volume.mountpoint / "sub" / "f").write_bytes(b"12345")
    os.link(volume.mountpoint / "sub" / "f", volume.mountpoint / "g")
    assert store.size("data") == 5 and not store.is_empty("data")
    os.chmod(volume.mountpoint / "sub", 0)
    store.remove("data")
    assert not (tmp_path / "volumes" / "data").exists()
    with pytest.raises(NotFound, match="get data: no such volume"):
        store.get("data")
    with pytest.raises(NotFound):
        store.get("../volumes")
    # Leftovers of a crash mid-create or mid-remove are cleared when the store opens.
    (tmp_path / "volumes" / ".tmp-x-1234").mkdir()
    (tmp_path / "volumes" / "broken").mkdir()
    VolumeStore(tmp_path / "volumes")
    assert sorted(os.listdir(tmp_path / "volumes")) == ["broken", "f" * 64]
    with pytest.raises(NotFound):
        store.get("broken")  # a stray directory is no volume, and a create may take its place
    assert store.create("broken")[1]
    (tmp_path / "volumes" / "broken" / "volume.json").write_text("{")
    with pytest.raises(Conflict, match="unreadable"):
        store.get("broken")


@pytest.mark.parametrize(
    ("name", "message"),
    [("a", "too short"), ("a/b", "invalid characters"), ("-x", "invalid characters"), (".tmp-x", "invalid")],
)
def test_volume_names(name: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        validate_volume_name(name)
