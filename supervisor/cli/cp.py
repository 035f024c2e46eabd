"""`corral cp` (docker cp, both ways) and `corral export`.

The daemon archives one path or extracts a tar into one directory; the
copy semantics (cli/copyinfo.py) and the host side run here, as in the
docker CLI. A container's tar is extracted onto the host with the same
in-root rules the daemon uses for containers (storage/extract.py): the
archive comes from the container, so it is not trusted either.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import posixpath
import sys
import tempfile
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from supervisor.cli.client import Client, ClientResponse, StreamingResponse
from supervisor.cli.context import CliContext, CommandFailed
from supervisor.cli.copyinfo import (
    CopyInfo,
    compose,
    destination_info,
    name_rebaser,
    prepare_copy,
    rebase_name_for,
    resolve_local_path,
    source_info,
    split_cp_arg,
)
from supervisor.errors import CorralError
from supervisor.storage.inroot import split_dir_entry

if TYPE_CHECKING:
    from supervisor.storage.archive import PathStat

# storage.archive and storage.extract are imported where used: with structlog (and the asyncio
# it imports) they took more than the rest of the CLI's start-up together.

PATH_STAT_HEADER = "x-docker-container-path-stat"
_CHUNK = 1 << 20


def cmd_cp(ctx: CliContext, args: argparse.Namespace) -> int:
    if not args.source:
        raise CommandFailed("source can not be empty")
    if not args.destination:
        raise CommandFailed("destination can not be empty")
    source_container, source_path = split_cp_arg(args.source)
    dest_container, dest_path = split_cp_arg(args.destination)
    if source_container and dest_container:
        raise CommandFailed("copying between containers is not supported")
    with ctx.client() as client:
        if source_container:
            _from_container(client, source_container, source_path, dest_path, follow_link=args.follow_link)
        elif dest_container:
            _to_container(
                client, dest_container, source_path, dest_path, follow_link=args.follow_link, archive=args.archive
            )
        else:
            raise CommandFailed("must specify at least one container source")
    return 0


def _from_container(client: Client, container: str, source: str, dest: str, *, follow_link: bool) -> None:
    from supervisor.storage.archive import GO_MODE_SYMLINK, PathStat
    from supervisor.storage.extract import ExtractOptions, extract_tar

    if dest != "-":
        dest = resolve_local_path(dest)
    rebase = ""
    if follow_link:
        found = _stat(client, container, source)
        if found is not None and found.mode & GO_MODE_SYMLINK:
            target = found.link_target
            if not target.startswith("/"):
                target = posixpath.join(split_dir_entry(source)[0], target)
            source, rebase = rebase_name_for(source, target)
    with client.stream("GET", f"/containers/{container}/archive", query={"path": source}) as response:
        if not response.ok:
            raise _daemon_error(response)
        if dest == "-":
            for chunk in response.iter_chunks():
                sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
            return
        found = PathStat.from_header(response.headers.get(PATH_STAT_HEADER, ""))
        info = CopyInfo(source, exists=True, is_dir=found.is_dir, rebase_name=rebase)
        first = name_rebaser(split_dir_entry(source)[1], rebase) if rebase else None
        dest_dir, renaming = prepare_copy(info, destination_info(dest))
        rename = compose(first, name_rebaser(*renaming) if renaming else None)
        dest_fd = os.open(dest_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            # The docker CLI's CopyTo: never chown on the host, never replace a directory by a file.
            options = ExtractOptions(no_overwrite_dir_non_dir=True, chown=False, rename=rename, label=dest_dir)
            extract_tar(response, dest_fd, options)
        except CorralError as err:
            raise CommandFailed(str(err)) from None
        finally:
            os.close(dest_fd)


def _to_container(client: Client, container: str, source: str, dest: str, *, follow_link: bool, archive: bool) -> None:
    from supervisor.storage.archive import GO_MODE_DEVICE, GO_MODE_SYMLINK

    if source != "-":
        source = resolve_local_path(source)
    destination = CopyInfo(dest)
    found = _stat(client, container, dest)
    if found is not None and found.mode & GO_MODE_SYMLINK:
        target = found.link_target
        if not target.startswith("/"):
            target = posixpath.join(split_dir_entry(dest)[0], target)
        destination = CopyInfo(target)
        found = _stat(client, container, target)
    if found is not None:
        if found.mode & GO_MODE_DEVICE:
            raise CommandFailed(f'destination "{container}:{dest}" must be a directory or a regular file: got a device')
        destination = CopyInfo(destination.path, exists=True, is_dir=found.is_dir)
    body: Iterable[bytes]
    if source == "-":
        if not destination.is_dir:
            raise CommandFailed(f'destination "{container}:{dest}" must be a directory')
        dest_dir = destination.path
        body = iter(lambda: sys.stdin.buffer.read(_CHUNK), b"")
    else:
        info = source_info(source, follow_link)
        dest_dir, renaming = prepare_copy(info, destination)
        rebase = renaming[1] if renaming else (info.rebase_name or None)
        body = _local_tar(info.path, rebase)
    query: dict[str, str | bool] = {"path": dest_dir, "noOverwriteDirNonDir": True}
    if archive:
        query["copyUIDGID"] = True
    response = client.request(
        "PUT", f"/containers/{container}/archive", query=query, body=body, headers={"Content-Type": "application/x-tar"}
    )
    if not response.ok:
        raise _daemon_error(response)


def _local_tar(path: str, rebase: str | None) -> Iterator[bytes]:
    from supervisor.storage.archive import tar_stream

    directory, base = split_dir_entry(path)
    root = os.open("/", os.O_PATH | os.O_CLOEXEC)
    try:
        yield from tar_stream(root, directory, base, rebase=rebase)
    except OSError as err:
        raise CommandFailed(f"{path}: {err.strerror or err}") from None
    finally:
        os.close(root)


def _stat(client: Client, container: str, path: str) -> PathStat | None:
    """The container path's stat, None when the daemon cannot give one (as the docker CLI, which
    then lets the copy itself report what is wrong)."""
    from supervisor.storage.archive import PathStat

    response = client.request("HEAD", f"/containers/{container}/archive", query={"path": path})
    header = response.headers.get(PATH_STAT_HEADER)
    if not response.ok or not header:
        return None
    return PathStat.from_header(header)


def _daemon_error(response: StreamingResponse | ClientResponse) -> CommandFailed:
    if isinstance(response, StreamingResponse):
        response = ClientResponse(response.status, response.headers, b"".join(response.iter_chunks()))
    return CommandFailed(f"Error response from daemon: {response.message}", 1)


def cmd_export(ctx: CliContext, args: argparse.Namespace) -> int:
    if not args.output and sys.stdout.isatty():
        raise CommandFailed("cowardly refusing to save to a terminal. Use the -o flag or redirect")
    with ctx.client() as client, client.stream("GET", f"/containers/{args.container}/export") as response:
        if not response.ok:
            raise _daemon_error(response)
        if not args.output:
            for chunk in response.iter_chunks():
                sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
            return 0
        _write_file(args.output, response.iter_chunks())
    return 0


def _write_file(path: str, chunks: Iterable[bytes]) -> None:
    """Into a temp file beside `path`, renamed over it once complete (as the docker CLI's -o)."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, temp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=directory)
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    cp = commands.add_parser(
        "cp",
        help="copy files/folders between a container and the local filesystem",
        description="CONTAINER:SRC_PATH DEST_PATH|-  or  SRC_PATH|- CONTAINER:DEST_PATH. "
        "'-' reads a tar archive from stdin (to a directory in the container) or writes one to stdout.",
    )
    cp.add_argument("-L", "--follow-link", action="store_true", help="always follow symlinks in SRC_PATH")
    cp.add_argument("-a", "--archive", action="store_true", help="archive mode (copy all uid/gid information)")
    cp.add_argument("-q", "--quiet", action="store_true", help="suppress progress output (corral prints none)")
    cp.add_argument("source")
    cp.add_argument("destination")
    cp.set_defaults(func=cmd_cp)

    export = commands.add_parser("export", help="export a container's filesystem as a tar archive")
    export.add_argument("-o", "--output", help="write to a file, instead of STDOUT")
    export.add_argument("container")
    export.set_defaults(func=cmd_export)
