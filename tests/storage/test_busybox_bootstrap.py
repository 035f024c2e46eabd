from __future__ import annotations

import os
import shutil
import stat
import subprocess
import time
from pathlib import Path

import pytest

from supervisor.errors import InvalidArgument
from supervisor.storage.bootstrap import bootstrap_busybox, goarch, inspect_busybox
from supervisor.storage.images import ImageStore

pytestmark = pytest.mark.skipif(shutil.which("busybox") is None, reason="busybox-static not installed")


def test_bootstrap_is_deterministic_and_idempotent(tmp_path: Path) -> None:
    started = time.monotonic()
    first = bootstrap_busybox(ImageStore(tmp_path / "a"))
    assert time.monotonic() - started < 1.0
    elsewhere = bootstrap_busybox(ImageStore(tmp_path / "b"))
    assert (first.id, first.manifest_digest) == (elsewhere.id, elsewhere.manifest_digest)
    store = ImageStore(tmp_path / "a")
    again = bootstrap_busybox(store, name="mybox:1")
    assert again.id == first.id
    assert again.repo_tags == ("busybox:latest", "mybox:1")
    assert len(store.list_images()) == 1


def test_bootstrapped_config(tmp_path: Path) -> None:
    image = bootstrap_busybox(ImageStore(tmp_path))
    config = image.config
    assert config["os"] == "linux"
    assert config["architecture"] == goarch(os.uname().machine)
    assert config["config"] == {
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "Cmd": ["sh"],
    }
    assert config["rootfs"] == {"type": "layers", "diff_ids": list(image.diff_ids)}
    assert len(image.diff_ids) == 1
    assert config["history"][0]["created_by"].startswith("corral image bootstrap (busybox-static ")
    assert image.created == config["created"] and image.created.endswith("Z")
    assert image.repo_tags == ("busybox:latest",)


def test_bootstrapped_layer_runs(tmp_path: Path) -> None:
    store = ImageStore(tmp_path)
    image = bootstrap_busybox(store)
    [lower] = store.layer_dirs(image)
    applets = inspect_busybox().applets
    binary = (lower / "bin/busybox").lstat()
    assert stat.S_IMODE(binary.st_mode) == 0o755
    assert binary.st_nlink == len(applets) + 1
    assert (lower / "bin/sh").lstat().st_ino == binary.st_ino
    modes = {d: stat.S_IMODE((lower / d).lstat().st_mode) for d in ("root", "tmp", "usr/sbin", "var/www")}
    assert modes == {"root": 0o700, "tmp": 0o1777, "usr/sbin": 0o755, "var/www": 0o755}
    assert "root:x:0:0:root:/root:/bin/sh" in (lower / "etc/passwd").read_text()
    assert "nobody:x:65534:" in (lower / "etc/group").read_text()
    result = subprocess.run(
        ["chroot", str(lower), "/bin/sh", "-c", "echo ok"], capture_output=True, text=True, timeout=10
    )
    assert result.stdout == "ok\n", result.stderr


def test_missing_busybox(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match=r"busybox-static is not installed \(apt-get install busybox-static\)"):
        bootstrap_busybox(ImageStore(tmp_path), busybox=tmp_path / "nope")


def test_layers_work_as_overlay_lowers(tmp_path: Path) -> None:
    """Whiteouts and opaque dirs as unpacked here hide lower content once overlay mounts them."""
    from supervisor.storage.snapshots import create_snapshot, overlay_options

    from .tarbuild import directory, file, tar_bytes

    store = ImageStore(tmp_path / "root")
    base = bootstrap_busybox(store)
    top = tar_bytes(file("etc/.wh.group"), directory("var/"), file("var/.wh..wh..opq"), file("var/new", b"n"))
    config = {k: v for k, v in base.config.items() if k != "rootfs"}
    image = store.add_image(config, [store.content.get(base.layer_digests[0]), top], ["derived"])
    snap = create_snapshot(tmp_path / "container")
    options = overlay_options(store.layer_dirs(image), snap)
    script = (
        f"mount -t overlay overlay -o '{options}' '{snap.merged}' && "
        f"chroot '{snap.merged}' /bin/sh -c 'ls /etc; ls /var; echo hi > /tmp/x'"
    )
    result = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["passwd", "new"]
    assert (snap.upper / "tmp/x").read_text() == "hi\n"
