"""The layers bench/unpack.py unpacks: busybox, a synthetic one, and an OCI layout of each for umoci."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
MTIME = 1_600_000_000


@dataclass
class Layer:
    name: str
    gz: Path
    tar: Path
    diff_id: str
    tar_bytes: int
    members: int


# -- inputs ------------------------------------------------------------------------------------


def busybox_layer(base: Path) -> Layer:
    sys.path.insert(0, str(REPO))
    from supervisor.storage.bootstrap import build_layer, inspect_busybox

    blob = build_layer(inspect_busybox())
    return _save_layer(base, "busybox", gzip.decompress(blob), blob)


def synthetic_layer(base: Path, size_mb: int) -> Layer:
    rng = random.Random(42)
    words = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 10))) for _ in range(5000)]
    pool = b" ".join(rng.choice(words) for _ in range(400_000))[: 2 << 20]
    big_total = size_mb * 6 // 10 << 20
    small_total = (size_mb << 20) - big_total
    raw = io.BytesIO()
    members = 0
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as archive:

        def add(name: str, kind: bytes, data: bytes = b"", mode: int = 0o644, link: str = "") -> None:
            nonlocal members
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime, info.size, info.linkname = kind, mode, MTIME, len(data), link
            archive.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
            members += 1

        written = 0
        package = 0
        while written < small_total:
            folder = f"usr/lib/python3/pkg{package:03d}"
            add(folder + "/", tarfile.DIRTYPE, mode=0o755)
            for index in range(500):
                size = rng.randint(100, 8000)
                offset = rng.randrange(len(pool) - size)
                add(f"{folder}/module{index:04d}.py", tarfile.REGTYPE, pool[offset : offset + size])
                written += size
            add(f"{folder}/latest", tarfile.SYMTYPE, mode=0o777, link="module0000.py")
            add(f"{folder}/alias.py", tarfile.LNKTYPE, link=f"{folder}/module0001.py")
            package += 1
        add("opt/data/", tarfile.DIRTYPE, mode=0o755)
        for index in range(6):
            size = big_total // 6
            add(f"opt/data/blob{index}.bin", tarfile.REGTYPE, (pool * (size // len(pool) + 1))[:size], mode=0o600)
    tar = raw.getvalue()
    return _save_layer(base, "synthetic", tar, gzip.compress(tar, compresslevel=6, mtime=0), members)


def _save_layer(base: Path, name: str, tar: bytes, blob: bytes, members: int | None = None) -> Layer:
    if members is None:
        with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
            members = len(archive.getmembers())
    (base / f"{name}.tar").write_bytes(tar)
    (base / f"{name}.tar.gz").write_bytes(blob)
    diff_id = "sha256:" + hashlib.sha256(tar).hexdigest()
    return Layer(name, base / f"{name}.tar.gz", base / f"{name}.tar", diff_id, len(tar), members)


def oci_layout(base: Path, layer: Layer) -> Path:
    """A one-layer OCI image layout `<base>/oci-<name>` tagged `bench`, for umoci."""
    layout = base / f"oci-{layer.name}"
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> dict[str, Any]:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return {"digest": f"sha256:{digest}", "size": len(data)}

    blob = layer.gz.read_bytes()
    layer_desc = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **put(blob)}
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
    }
    config_desc = {"mediaType": "application/vnd.oci.image.config.v1+json", **put(json.dumps(config).encode())}
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config_desc,
        "layers": [layer_desc],
    }
    manifest_desc = {"mediaType": "application/vnd.oci.image.manifest.v1+json", **put(json.dumps(manifest).encode())}
    manifest_desc["annotations"] = {"org.opencontainers.image.ref.name": "bench"}
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [manifest_desc]}))
    return layout
