from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from supervisor.storage.errors import SnapshotInUse
from supervisor.storage.snapshots import (
    Snapshot,
    create_snapshot,
    overlay_options,
    relative_lowers,
    remove_snapshot,
)


def test_create_is_idempotent_and_keeps_changes(tmp_path: Path) -> None:
    container = tmp_path / "containers" / "abc"
    snap = create_snapshot(container)
    assert snap == Snapshot(upper=container / "upper", work=container / "work", merged=container / "merged")
    assert all(p.is_dir() for p in (snap.upper, snap.work, snap.merged))
    (snap.upper / "changed").write_text("kept across restarts")
    assert create_snapshot(container) == snap
    assert (snap.upper / "changed").read_text() == "kept across restarts"


def test_remove_copes_with_overlay_leftovers(tmp_path: Path) -> None:
    container = tmp_path / "c"
    snap = create_snapshot(container)
    (container / "config.json").write_text("{}")
    leftover = snap.work / "work"
    leftover.mkdir()
    (leftover / "stale").write_text("x")
    os.chmod(leftover, 0)
    (snap.upper / "dir").mkdir()
    os.chmod(snap.upper / "dir", 0)
    remove_snapshot(container)
    remove_snapshot(container)
    assert sorted(os.listdir(container)) == ["config.json"]


def test_remove_refuses_a_mounted_snapshot(tmp_path: Path) -> None:
    snap = create_snapshot(tmp_path / "c")
    subprocess.run(["mount", "-t", "tmpfs", "none", str(snap.merged)], check=True)
    try:
        with pytest.raises(SnapshotInUse, match="still mounted"):
            remove_snapshot(tmp_path / "c")
    finally:
        subprocess.run(["umount", str(snap.merged)], check=True)
    assert snap.upper.is_dir()


def test_overlay_options_order_and_escaping(tmp_path: Path) -> None:
    snap = Snapshot(upper=Path("/c/upper"), work=Path("/c/work"), merged=Path("/c/merged"))
    lowers = [Path("/layers/bottom"), Path("/layers/mid"), Path("/layers/top")]
    assert overlay_options(lowers, snap) == (
        "lowerdir=/layers/top:/layers/mid:/layers/bottom,upperdir=/c/upper,workdir=/c/work"
    )
    odd = Snapshot(upper=Path("/a,b/upper"), work=Path("/a,b/work"), merged=Path("/a,b/merged"))
    assert overlay_options([Path("/l:1")], odd) == r"lowerdir=/l\:1,upperdir=/a\,b/upper,workdir=/a\,b/work"
    with pytest.raises(ValueError):
        overlay_options([], snap)


def test_relative_lowers_match_relpath(tmp_path: Path) -> None:
    root = tmp_path / "root"
    layers = [root / "layers" / f"{index:064x}" for index in range(3)] + [tmp_path / "elsewhere" / "x"]
    assert relative_lowers(layers, root) == tuple(os.path.relpath(layer, root) for layer in reversed(layers))
    assert relative_lowers([root / "l"], root) == ("l",)
