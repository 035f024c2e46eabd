"""A 120-layer image (past one page of overlay options) and a 50-layer one run through the daemon."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from harness import DOCKER, Daemon

from supervisor.storage.images import ImageStore

from .tarbuild import file, tar_bytes


def _deep_image(root: Path, count: int, tag: str) -> None:
    """busybox plus `count - 1` layers, each adding /layers/N; layer 60 whites out /layers/2."""
    store = ImageStore(root)
    busybox = store.resolve("busybox:latest")
    layers: list[Path | bytes] = [store.content.path(busybox.layer_digests[0])]
    for index in range(1, count):
        entries = [file(f"layers/{index}", b"%d\n" % index)]
        if index == 60:
            entries.append(file("layers/.wh.2"))
        layers.append(tar_bytes(*entries))
    config: dict[str, Any] = {key: value for key, value in busybox.config.items() if key not in ("rootfs", "history")}
    store.add_image(config, layers, [tag])


@pytest.mark.skipif(DOCKER is None, reason="the docker CLI is not installed")
@pytest.mark.parametrize("count", [50, 120])
def test_deep_image_runs(clean: Daemon, count: int) -> None:
    tag = f"deep:{count}"
    _deep_image(clean.root, count, tag)
    result = clean.docker(
        "run", "--rm", tag, "sh", "-c", "ls /layers | wc -l; cat /layers/1 /layers/$0", str(count - 1)
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split()
    expected_files = count - 1 - (1 if count > 60 else 0)
    assert lines == [str(expected_files), "1", str(count - 1)]
    if count > 60:
        assert clean.docker("run", "--rm", tag, "test", "-e", "/layers/2").returncode == 1
