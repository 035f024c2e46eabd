"""`corral save` and `corral load`, as `docker save` / `docker load`.

`save` writes the daemon's archive to `-o FILE` (through a temp file
renamed into place, so a failed save leaves no half archive) or to a
non-terminal stdout; `--format oci` asks for an OCI archive. `load` sends
`-i FILE` or stdin as it reads it; `-i DIR` sends an OCI image layout
directory (`skopeo copy ... oci:DIR`) as a tar made on the fly.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from supervisor.cli.context import CliContext, CommandFailed

_CHUNK = 1 << 20


def cmd_save(ctx: CliContext, args: argparse.Namespace) -> int:
    if args.output is None and sys.stdout.isatty():
        raise CommandFailed("cowardly refusing to save to a terminal. Use the -o flag or redirect")
    if args.output is not None and not Path(args.output).parent.is_dir():
        raise CommandFailed(f'invalid output path: directory "{Path(args.output).parent}" does not exist')
    query: dict[str, str | list[str]] = {"names": list(args.images)}
    if args.format != "docker":
        query["format"] = args.format
    with ctx.client() as client, client.stream("GET", "/images/get", query=query) as response:
        if not response.ok:
            raise CommandFailed(f"Error response from daemon: {_message(b''.join(response.iter_chunks()))}")
        if args.output is None:
            _copy(response.iter_chunks(), sys.stdout.buffer)
        else:
            _write_atomically(Path(args.output), response.iter_chunks())
    return 0


def _write_atomically(target: Path, chunks: Iterator[bytes]) -> None:
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    except OSError as err:
        raise CommandFailed(f"failed to save to {target}: {err.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as out:
            _copy(chunks, out)
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def _copy(chunks: Iterator[bytes], out: BinaryIO) -> None:
    for chunk in chunks:
        out.write(chunk)
    out.flush()


def cmd_load(ctx: CliContext, args: argparse.Namespace) -> int:
    if args.input is None:
        if sys.stdin.isatty():
            raise CommandFailed("requested load from stdin, but stdin is empty")
        body = _file_chunks(sys.stdin.buffer)
    else:
        path = Path(args.input)
        if path.is_dir():
            body = tar_directory(path)
        else:
            try:
                source = open(path, "rb")  # noqa: SIM115 - closed by _file_chunks
            except OSError as err:
                raise CommandFailed(f"open {path}: {err.strerror}") from None
            body = _file_chunks(source)
    with ctx.client() as client:
        response = client.request("POST", "/images/load", query={"quiet": args.quiet}, body=body)
    if not response.ok:
        raise CommandFailed(f"Error response from daemon: {response.message}")
    for line in response.body.splitlines():
        if not line.strip():
            continue
        message = json.loads(line)
        if message.get("errorDetail") or message.get("error"):
            detail = message.get("errorDetail") or {}
            raise CommandFailed(str(detail.get("message") or message.get("error")))
        if "stream" in message:
            sys.stdout.write(str(message["stream"]))
    return 0


def _file_chunks(source: BinaryIO) -> Iterator[bytes]:
    with source:
        while chunk := source.read(_CHUNK):
            yield chunk


def tar_directory(root: Path) -> Iterator[bytes]:
    """A tar stream of the files under `root` (an OCI layout), read as it is sent; never a whole file in memory."""
    for directory, subdirs, files in os.walk(root):
        subdirs.sort()
        rel_dir = Path(directory).relative_to(root)
        if rel_dir != Path("."):
            yield _header(f"{rel_dir.as_posix()}/", tarfile.DIRTYPE, 0)
        for name in sorted(files):
            path = Path(directory) / name
            rel = (rel_dir / name).as_posix()
            if path.is_symlink():
                yield _header(rel, tarfile.SYMTYPE, 0, linkname=os.readlink(path))
                continue
            with open(path, "rb") as source:
                size = os.fstat(source.fileno()).st_size
                yield _header(rel, tarfile.REGTYPE, size)
                sent = 0
                while sent < size and (chunk := source.read(min(_CHUNK, size - sent))):
                    sent += len(chunk)
                    yield chunk
                if sent != size:
                    raise CommandFailed(f"{path} changed size while it was being sent")
                yield b"\0" * (-size % 512)
    yield b"\0" * 1024


def _header(name: str, kind: bytes, size: int, linkname: str = "") -> bytes:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = size
    info.linkname = linkname
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _message(body: bytes) -> str:
    try:
        message = json.loads(body)["message"]
        if isinstance(message, str):
            return message
    except (ValueError, KeyError, TypeError):
        pass
    return body.decode(errors="replace").strip()


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    save = commands.add_parser("save", help="save images to a tar archive (docker-archive, or OCI with --format oci)")
    save.add_argument("images", nargs="+", metavar="IMAGE")
    save.add_argument("-o", "--output", help="write to a file instead of stdout")
    save.add_argument("--format", choices=["docker", "oci"], default="docker", help="archive format (default docker)")
    save.set_defaults(func=cmd_save)

    load = commands.add_parser("load", help="load images from a tar archive (docker-archive or OCI) or an OCI layout")
    load.add_argument("-i", "--input", help="read from a file or OCI layout directory instead of stdin")
    load.add_argument("-q", "--quiet", action="store_true", help="suppress the load output")
    load.set_defaults(func=cmd_load)
