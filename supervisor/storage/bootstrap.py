"""`busybox:latest` built offline from the host's busybox-static, laid out as the official image."""

from __future__ import annotations

import gzip
import io
import platform
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from supervisor.errors import InvalidArgument
from supervisor.storage.images import Image, ImageStore

log = structlog.get_logger(__name__)

DEFAULT_NAME = "busybox:latest"
DEFAULT_PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NOT_INSTALLED = "busybox-static is not installed (apt-get install busybox-static)"
# Directory -> mode, as in the official busybox image.
DIRECTORIES: dict[str, int] = {
    "bin": 0o755,
    "dev": 0o755,
    "etc": 0o755,
    "home": 0o755,
    "proc": 0o755,
    "root": 0o700,
    "sys": 0o755,
    "tmp": 0o1777,
    "usr": 0o755,
    "usr/bin": 0o755,
    "usr/sbin": 0o755,
    "var": 0o755,
    "var/spool": 0o755,
    "var/www": 0o755,
}
PASSWD = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n"
GROUP = b"root:x:0:\nnobody:x:65534:\n"
_GOARCH = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "arm",
    "armv6l": "arm",
    "i386": "386",
    "i686": "386",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}


@dataclass(frozen=True)
class BusyboxBinary:
    path: Path
    version: str  # "1.35.0"
    applets: tuple[str, ...]  # sorted, without "busybox" itself
    mtime: int  # seconds; every entry of the layer gets it, for determinism


def bootstrap_busybox(store: ImageStore, name: str = DEFAULT_NAME, busybox: Path | None = None) -> Image:
    """Build (or rebuild, to the same ID) the busybox image from the host binary and tag it `name`."""
    binary = inspect_busybox(busybox)
    layer = build_layer(binary)
    image = store.add_image(image_config(binary), [layer], [name])
    log.info("image.bootstrapped", id=image.id, tag=name, busybox=str(binary.path), version=binary.version)
    return image


def inspect_busybox(busybox: Path | None = None) -> BusyboxBinary:
    found = busybox if busybox is not None else _which_busybox()
    if not found.is_file():
        raise InvalidArgument(f"{NOT_INSTALLED}: {found} does not exist")
    listing = subprocess.run([str(found), "--list"], capture_output=True, check=True, text=True).stdout
    banner = subprocess.run([str(found)], capture_output=True, text=True).stdout
    applets = tuple(sorted({line.strip() for line in listing.splitlines() if line.strip()} - {"busybox"}))
    return BusyboxBinary(
        path=found,
        version=_parse_version(banner),
        applets=applets,
        mtime=int(found.stat().st_mtime),
    )


def build_layer(binary: BusyboxBinary) -> bytes:
    """The layer as a gzip'd tar whose bytes depend only on the binary (sorted entries, fixed times)."""
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w", format=tarfile.PAX_FORMAT) as archive:
        entries = sorted([*DIRECTORIES, "bin/busybox", "etc/passwd", "etc/group"])
        for path in entries:
            if path in DIRECTORIES:
                archive.addfile(_entry(f"{path}/", tarfile.DIRTYPE, DIRECTORIES[path], binary.mtime))
            elif path == "bin/busybox":
                data = binary.path.read_bytes()
                archive.addfile(_entry(path, tarfile.REGTYPE, 0o755, binary.mtime, size=len(data)), io.BytesIO(data))
                # Hardlinks right after their target, which a reader must have seen first.
                for applet in binary.applets:
                    link = _entry(f"bin/{applet}", tarfile.LNKTYPE, 0o755, binary.mtime)
                    link.linkname = "bin/busybox"
                    archive.addfile(link)
            else:
                data = PASSWD if path == "etc/passwd" else GROUP
                archive.addfile(_entry(path, tarfile.REGTYPE, 0o644, binary.mtime, size=len(data)), io.BytesIO(data))
    compressed = io.BytesIO()
    # mtime=0 and no file name keep the gzip header free of anything time- or host-dependent.
    with gzip.GzipFile(filename="", fileobj=compressed, mode="wb", compresslevel=6, mtime=0) as stream:
        stream.write(tar_bytes.getvalue())
    return compressed.getvalue()


def image_config(binary: BusyboxBinary) -> dict[str, Any]:
    created = datetime.fromtimestamp(binary.mtime, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "architecture": goarch(platform.machine()),
        "os": "linux",
        "created": created,
        "config": {"Env": [DEFAULT_PATH_ENV], "Cmd": ["sh"]},
        "history": [{"created": created, "created_by": f"corral image bootstrap (busybox-static {binary.version})"}],
    }


def goarch(machine: str) -> str:
    """Go's GOARCH name (what OCI configs use) for a `platform.machine()` value."""
    return _GOARCH.get(machine.lower(), machine.lower())


def _which_busybox() -> Path:
    found = shutil.which("busybox")
    if found is None:
        raise InvalidArgument(NOT_INSTALLED)
    return Path(found)


def _parse_version(banner: str) -> str:
    """`1.35.0` from busybox's first line, `BusyBox v1.35.0 (Debian ...) multi-call binary.`."""
    words = banner.split()
    if len(words) >= 2 and words[0] == "BusyBox" and words[1].startswith("v"):
        return words[1][1:]
    return "unknown"


def _entry(name: str, kind: bytes, mode: int, mtime: int, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = mtime
    info.size = size
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info
