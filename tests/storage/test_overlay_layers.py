"""Unpacked layers as overlay lower dirs: deep images (past one page of mount options), and
a lower layer's symlink that an upper layer's directory must hide rather than follow.

Mounts happen in a child in a mount namespace of its own (`unshare --mount`), so they vanish with it.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from supervisor.isolation.overlay_mount import MAX_OPTIONS
from supervisor.isolation.spec import Rootfs
from supervisor.storage.layers import unpack_layer

from .tarbuild import directory, file, symlink, tar_bytes

CONTAINER = "c" * 64
_MOUNT_SCRIPT = """
import json, os, sys
from supervisor.isolation.spec import Rootfs
from supervisor.isolation.overlay_mount import mount_overlay
rootfs = Rootfs(**json.loads(sys.argv[1]))
mount_overlay(rootfs)
merged = rootfs.merged
options = [line.split(" - ")[1] for line in open("/proc/self/mountinfo") if line.split()[4] == merged][0]
result = {"options": options, "files": sorted(os.listdir(merged))}
for name in json.loads(sys.argv[2]):
    with open(os.path.join(merged, name)) as f:
        result[name] = f.read()
if len(sys.argv) > 3:
    with open(os.path.join(merged, sys.argv[3]), "w") as f:
        f.write("written in the container")
print(json.dumps(result))
"""


def _rootfs(base: Path, lowers_top_first: list[str]) -> Rootfs:
    container = base / "containers" / CONTAINER
    for sub in ("upper", "work", "merged"):
        (container / sub).mkdir(parents=True, exist_ok=True)
    return Rootfs(
        base=str(base),
        lowers=tuple(lowers_top_first),
        upper=f"containers/{CONTAINER}/upper",
        work=f"containers/{CONTAINER}/work",
        merged=str(container / "merged"),
        scratch=f"containers/{CONTAINER}/scratch",
    )


def _mount_and_read(rootfs: Rootfs, read: list[str], write: str | None = None) -> dict[str, object]:
    fields = {name: getattr(rootfs, name) for name in ("base", "lowers", "upper", "work", "merged", "scratch")}
    argv = ["unshare", "--mount", "--propagation", "private", sys.executable, "-c", _MOUNT_SCRIPT]
    argv += [json.dumps(fields), json.dumps(read)] + ([write] if write else [])
    result = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=Path(__file__).parents[2])
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def _layers(base: Path, count: int) -> list[str]:
    """`count` one-file layers named like real ones, bottom-most first."""
    names = []
    for index in range(count):
        name = hashlib.sha256(b"%d" % index).hexdigest()
        (base / "layers" / name).mkdir(parents=True)
        (base / "layers" / name / f"f{index}").write_text(str(index))
        names.append(f"layers/{name}")
    return names


def test_page_limit_is_reached_past_54_layers(tmp_path: Path) -> None:
    lowers = [f"layers/{'a' * 64}"] * 55
    assert len(_rootfs(tmp_path, lowers[:54]).overlay_options()) <= MAX_OPTIONS
    assert len(_rootfs(tmp_path, lowers).overlay_options()) > MAX_OPTIONS


@pytest.mark.parametrize("count", [1, 54, 55, 120])
def test_deep_images_mount(tmp_path: Path, count: int) -> None:
    lowers = _layers(tmp_path, count)
    result = _mount_and_read(_rootfs(tmp_path, lowers[::-1]), ["f0", f"f{count - 1}"])
    assert result["files"] == sorted(f"f{index}" for index in range(count))
    assert (result["f0"], result[f"f{count - 1}"]) == ("0", str(count - 1))
    by_fd = "lowerdir=/proc/self/fd/" in str(result["options"])
    assert by_fd == (count > 54)


def test_lower_layer_symlink_is_hidden_by_upper_directory(tmp_path: Path) -> None:
    """A layer unpacks alone, so a lower layer's `etc -> /outside` is not in its tree: its own `etc/`
    is a real directory, which overlay shows instead of the symlink. Nothing reaches the target."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "passwd").write_text("host file")
    base = tmp_path / "root"
    layers_root = base / "layers"
    blobs = [
        tar_bytes(symlink("etc", str(outside)), gzipped=False),
        tar_bytes(directory("etc/"), file("etc/passwd", b"layer file"), gzipped=False),
    ]
    lowers = []
    for index, blob in enumerate(blobs):
        path = tmp_path / f"blob{index}"
        path.write_bytes(blob)
        unpacked = unpack_layer(path, "sha256:" + hashlib.sha256(blob).hexdigest(), layers_root)
        lowers.append(f"layers/{unpacked.name}")
    result = _mount_and_read(_rootfs(base, lowers[::-1]), ["etc/passwd"], write="etc/new")
    assert result["etc/passwd"] == "layer file"
    assert sorted(os.listdir(outside)) == ["passwd"]
    assert (outside / "passwd").read_text() == "host file"
    assert (base / "containers" / CONTAINER / "upper" / "etc" / "new").read_text() == "written in the container"
