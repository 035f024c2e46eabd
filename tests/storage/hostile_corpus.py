"""A corpus of hostile layer tars, built from code (no binaries checked in).

    python tests/storage/hostile_corpus.py [DIR] [--outside PATH]

writes each case as DIR/<name>.tar (default: tests/storage/hostile/), for
poking at with other unpackers. `test_hostile_layers.py` builds the same
cases against a sandbox of its own and checks that each is rejected with
the expected error or contained, and that nothing outside the layer
directory changed.

Each case is a plain tar (the unpacker's gzip and zstd paths feed the same
parser). `outside` is an absolute directory the case tries to reach; the
layer is unpacked two levels below the sandbox (`<sandbox>/layers/<dir>`),
so `../../outside` from the layer root is the same place.
"""

from __future__ import annotations

import argparse
import io
import sys
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

MTIME = 1_600_000_000
BLOCK = 512
GNU_MAGIC = b"ustar  \x00"
USTAR_MAGIC = b"ustar\x0000"


@dataclass(frozen=True)
class HostileCase:
    name: str
    what: str
    build: Callable[[str], bytes]  # outside dir -> tar bytes
    rejected: str | None  # a regex the UnsafeLayer/InvalidLayer message matches; None: contained


# -- building blocks -----------------------------------------------------------------


def _info(name: str, kind: bytes, mode: int = 0o644, size: int = 0, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = MTIME
    info.size = size
    info.linkname = linkname
    return info


def file(name: str, data: bytes = b"x", mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes | None]:
    return _info(name, tarfile.REGTYPE, mode, len(data)), data


def directory(name: str, mode: int = 0o755) -> tuple[tarfile.TarInfo, bytes | None]:
    return _info(name, tarfile.DIRTYPE, mode), None


def symlink(name: str, target: str) -> tuple[tarfile.TarInfo, bytes | None]:
    return _info(name, tarfile.SYMTYPE, 0o777, linkname=target), None


def hardlink(name: str, target: str) -> tuple[tarfile.TarInfo, bytes | None]:
    return _info(name, tarfile.LNKTYPE, linkname=target), None


def device(name: str, kind: bytes, major: int, minor: int) -> tuple[tarfile.TarInfo, bytes | None]:
    info = _info(name, kind, 0o666)
    info.devmajor, info.devminor = major, minor
    return info, None


def with_pax(
    entry: tuple[tarfile.TarInfo, bytes | None], headers: dict[str, str]
) -> tuple[tarfile.TarInfo, bytes | None]:
    entry[0].pax_headers = dict(headers)
    return entry


def tar(*entries: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for info, data in entries:
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return raw.getvalue()


def _octal(value: int, width: int) -> bytes:
    return b"%0*o\x00" % (width - 1, value)


def _base256(value: int, width: int) -> bytes:
    return bytes([0x80]) + value.to_bytes(width - 1, "big")


def raw_header(
    name: bytes,
    kind: bytes,
    size: int | bytes = 0,
    *,
    magic: bytes = USTAR_MAGIC,
    linkname: bytes = b"",
    extra: dict[int, bytes] | None = None,
) -> bytes:
    """One header block with any field values (what tarfile refuses to write), checksummed."""
    block = bytearray(BLOCK)
    block[0 : len(name)] = name
    block[100:108] = _octal(0o644, 8)
    block[108:116] = _octal(0, 8)
    block[116:124] = _octal(0, 8)
    block[124:136] = size if isinstance(size, bytes) else _octal(size, 12)
    block[136:148] = _octal(MTIME, 12)
    block[156:157] = kind
    block[157 : 157 + len(linkname)] = linkname
    block[257:265] = magic
    for offset, value in (extra or {}).items():
        block[offset : offset + len(value)] = value
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\x00 " % sum(block)
    return bytes(block)


def padded(data: bytes) -> bytes:
    return data + bytes(-len(data) % BLOCK)


END = bytes(2 * BLOCK)


# -- the cases ---------------------------------------------------------------------


def _huge_member(outside: str) -> bytes:
    # Claims 64 GiB of data (base-256 size), then the stream ends after one block.
    return raw_header(b"huge.bin", b"0", _base256(64 << 30, 12)) + bytes(BLOCK)


def _huge_pax(outside: str) -> bytes:
    return raw_header(b"PaxHeaders/x", b"x", 1 << 30) + padded(b"30 path=aaaaaaaaaaaaaaaaaaaaa\n") + END


def _huge_longname(outside: str) -> bytes:
    return raw_header(b"././@LongLink", b"L", 100 << 20, magic=GNU_MAGIC) + padded(b"name\x00") + END


def _sparse_terabyte(outside: str) -> bytes:
    """An old-GNU sparse file: 1 TiB long, two 512-byte data segments; unpacked sparse, not as a TiB of zeros."""
    entries = _octal(0, 12) + _octal(512, 12) + _base256((1 << 40) - 512, 12) + _octal(512, 12)
    header = raw_header(
        b"sparse.img",
        b"S",
        1024,
        magic=GNU_MAGIC,
        extra={386: entries, 482: b"\x00", 483: _base256(1 << 40, 12)},
    )
    return header + b"A" * BLOCK + b"Z" * BLOCK + END


def _sparse_bad_map(outside: str) -> bytes:
    """Segments that run past the end of the file they describe."""
    entries = _octal(4096, 12) + _octal(512, 12)
    header = raw_header(
        b"sparse.bad", b"S", 512, magic=GNU_MAGIC, extra={386: entries, 482: b"\x00", 483: _octal(1024, 12)}
    )
    return header + b"A" * BLOCK + END


def _empty_name(outside: str) -> bytes:
    return raw_header(b"", b"0", 1) + padded(b"x") + END


def _deep_path(outside: str) -> bytes:
    return tar(file("d/" * 600 + "f"))


CASES: tuple[HostileCase, ...] = (
    HostileCase("dotdot", "a member named ../outside/pwned", lambda o: tar(file("../outside/pwned")), "escapes"),
    HostileCase(
        "dotdot-deep", "a member escaping through a/../../", lambda o: tar(file("a/../../outside/pwned")), "escapes"
    ),
    HostileCase("absolute", "a member with an absolute path", lambda o: tar(file(f"{o}/pwned")), "absolute"),
    HostileCase(
        "symlink-absolute",
        "a symlink to the outside dir, then a file written through it",
        lambda o: tar(symlink("link", o), file("link/pwned")),
        "symlink",
    ),
    HostileCase(
        "symlink-relative",
        "a symlink ../../outside, then a directory and a file through it",
        lambda o: tar(symlink("link", "../../outside"), directory("link/sub/"), file("link/sub/pwned")),
        "symlink",
    ),
    HostileCase(
        "symlink-proc-self",
        "a symlink into /proc/self/root, then a file through it",
        lambda o: tar(symlink("proc", f"/proc/self/root{o}"), file("proc/pwned")),
        "symlink",
    ),
    HostileCase(
        "symlink-chain",
        "a -> b -> c -> outside, then a file through a",
        lambda o: tar(symlink("a", "b"), symlink("b", "c"), symlink("c", o), file("a/pwned")),
        "symlink",
    ),
    HostileCase(
        "symlink-then-file",
        "a symlink to outside/secret replaced by a regular file of the same name (later wins, nothing followed)",
        lambda o: tar(symlink("secret", f"{o}/secret"), file("secret", b"replaced")),
        None,
    ),
    HostileCase(
        "symlink-then-directory",
        "a symlink to outside replaced by a directory member of the same name",
        lambda o: tar(symlink("link", o), directory("link/"), file("link/inside", b"in the layer")),
        None,
    ),
    HostileCase(
        "hardlink-dotdot",
        "a hardlink to ../outside/secret",
        lambda o: tar(hardlink("h", "../outside/secret")),
        "escapes",
    ),
    HostileCase(
        "hardlink-absolute", "a hardlink to an absolute path", lambda o: tar(hardlink("h", f"{o}/secret")), "absolute"
    ),
    HostileCase(
        "hardlink-through-symlink",
        "a hardlink to link/secret where link -> outside",
        lambda o: tar(symlink("link", o), hardlink("h", "link/secret")),
        "symlink",
    ),
    HostileCase(
        "hardlink-to-symlink",
        "a hardlink to a symlink that points outside links the symlink, not its target",
        lambda o: tar(symlink("s", f"{o}/secret"), hardlink("h", "s")),
        None,
    ),
    HostileCase(
        "hardlink-to-directory",
        "a hardlink to a directory",
        lambda o: tar(directory("d/"), hardlink("h", "d")),
        "directory",
    ),
    HostileCase(
        "whiteout-through-symlink",
        "a whiteout planted through a symlink (would mknod outside)",
        lambda o: tar(symlink("link", o), file("link/.wh.secret")),
        "symlink",
    ),
    HostileCase(
        "opaque-through-symlink",
        "an opaque marker inside a symlink to outside (would set an xattr outside)",
        lambda o: tar(symlink("link", o), file("link/.wh..wh..opq")),
        "symlink",
    ),
    HostileCase(
        "whiteout-dotdot", "a whiteout of '..'", lambda o: tar(directory("a/"), file("a/.wh..."), file("b")), "invalid"
    ),
    HostileCase("whiteout-escape", "a whiteout at ../.wh.secret", lambda o: tar(file("../.wh.secret")), "escapes"),
    HostileCase("opaque-root", "an opaque marker in the layer root", lambda o: tar(file(".wh..wh..opq")), "root"),
    HostileCase("huge-member", "a member claiming 64 GiB of data, then the stream ends", _huge_member, "truncated"),
    HostileCase(
        "huge-pax-header", "a pax header claiming 1 GiB (read into memory by tarfile)", _huge_pax, "pax header"
    ),
    HostileCase("huge-gnu-longname", "a GNU long name claiming 100 MiB", _huge_longname, "long name"),
    HostileCase("sparse-terabyte", "a 1 TiB sparse file with 1 KiB of data", _sparse_terabyte, None),
    HostileCase("sparse-bad-map", "a sparse map pointing past the end of its file", _sparse_bad_map, "sparse map"),
    HostileCase(
        "duplicates",
        "the same paths again: file over file, file over directory, directory over file",
        lambda o: tar(
            file("x", b"first"),
            file("x", b"second"),
            directory("d/"),
            file("d/child"),
            file("d", b"now a file"),
            file("f", b"a file"),
            directory("f/"),
            file("f/child", b"now a dir"),
        ),
        None,
    ),
    HostileCase(
        "nul-in-name", "a pax path with a NUL byte", lambda o: tar(with_pax(file("plain"), {"path": "a\x00b"})), "NUL"
    ),
    HostileCase("empty-name", "a member with an empty name", _empty_name, "empty path"),
    HostileCase(
        "real-devices",
        "device nodes of real devices (kept, as Docker does), then a file written over /dev/null's twin",
        lambda o: tar(
            device("dev/null", tarfile.CHRTYPE, 1, 3),
            device("dev/mem", tarfile.CHRTYPE, 1, 1),
            device("dev/loop0", tarfile.BLKTYPE, 7, 0),
            device("dev/fifo", tarfile.FIFOTYPE, 0, 0),
            file("dev/null", b"not written to the device"),
        ),
        None,
    ),
    HostileCase(
        "forged-overlay-xattrs",
        "pax xattrs forging overlay metadata (opaque, redirect) are dropped",
        lambda o: tar(
            with_pax(
                directory("d/"),
                {"SCHILY.xattr.trusted.overlay.opaque": "y", "SCHILY.xattr.trusted.overlay.redirect": "/etc"},
            )
        ),
        None,
    ),
    HostileCase(
        "file-as-parent", "a file, then a member under it", lambda o: tar(file("f"), file("f/x")), "not a directory"
    ),
    HostileCase("deep-path", "a path 600 directories deep", _deep_path, "deeper than"),
    HostileCase("long-path", "a 5000-character path", lambda o: tar(file("/".join(["p" * 200] * 25))), "longer than"),
)


def write_corpus(directory_path: Path, outside: str) -> list[Path]:
    directory_path.mkdir(parents=True, exist_ok=True)
    written = []
    for case in CASES:
        path = directory_path / f"{case.name}.tar"
        path.write_bytes(case.build(outside))
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dir", nargs="?", type=Path, default=Path(__file__).resolve().parent / "hostile")
    parser.add_argument("--outside", default="/tmp/corral-hostile-outside", help="the directory the cases aim at")
    args = parser.parse_args()
    for path in write_corpus(args.dir, args.outside):
        sys.stdout.write(f"{path}\n")


if __name__ == "__main__":
    main()
