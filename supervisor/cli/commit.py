"""`corral commit`, `corral diff`, `corral import`: the docker CLI's commands of the same names."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from typing import Any, BinaryIO

from supervisor.cli.context import CliContext, CommandFailed

_CHUNK = 1 << 20
_KINDS = {0: "C", 1: "A", 2: "D"}


def _flag(text: str) -> bool:
    """Go's strconv.ParseBool, which `-p=false` goes through in the docker CLI."""
    lowered = text.lower()
    if lowered in ("1", "t", "true"):
        return True
    if lowered in ("0", "f", "false"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean value {text!r}")


def split_reference(reference: str) -> tuple[str, str]:
    """`user/app:v1` -> ("user/app", "v1"); a registry port is not a tag (`host:5000/app`)."""
    name, sep, tag = reference.rpartition(":")
    if sep and "/" not in tag and name:
        return name, tag
    return reference, ""


def _fail(response: Any) -> None:
    if not response.ok:
        raise CommandFailed(f"Error response from daemon: {response.message}")


def cmd_commit(ctx: CliContext, args: argparse.Namespace) -> int:
    repo, tag = split_reference(args.repository) if args.repository else ("", "")
    query: dict[str, Any] = {
        "container": args.container,
        "repo": repo,
        "tag": tag,
        "comment": args.message,
        "author": args.author,
        "pause": args.pause,
        "changes": args.change,
    }
    with ctx.client() as client:
        response = client.request("POST", "/commit", query=query)
    _fail(response)
    print(response.json()["Id"])
    return 0


def cmd_diff(ctx: CliContext, args: argparse.Namespace) -> int:
    with ctx.client() as client:
        response = client.request("GET", f"/containers/{args.container}/changes")
    _fail(response)
    for change in response.json() or []:
        print(f"{_KINDS.get(change['Kind'], '?')} {change['Path']}")
    return 0


def _chunks(source: BinaryIO) -> Iterator[bytes]:
    while chunk := source.read(_CHUNK):
        yield chunk


def cmd_import(ctx: CliContext, args: argparse.Namespace) -> int:
    repo, tag = split_reference(args.repository) if args.repository else ("", "")
    query: dict[str, Any] = {
        "fromSrc": args.source,
        "repo": repo,
        "tag": tag,
        "message": args.message,
        "changes": args.change,
    }
    headers = {"Content-Type": "application/x-tar"}
    with ctx.client() as client:
        if args.source == "-":
            response = client.request("POST", "/images/create", query=query, body=_chunks(sys.stdin.buffer))
        elif "://" in args.source:
            response = client.request("POST", "/images/create", query=query, body=b"")
        else:
            query["fromSrc"] = "-"
            try:
                source = open(args.source, "rb")  # noqa: SIM115 - closed below, streamed meanwhile
            except OSError as err:
                raise CommandFailed(f"open {args.source}: {err.strerror}") from None
            with source:
                response = client.request("POST", "/images/create", query=query, body=_chunks(source), headers=headers)
    _fail(response)
    for line in response.body.decode().splitlines():
        if line.strip():
            message = json.loads(line)
            if "error" in message:
                raise CommandFailed(message["error"])
            print(message.get("status", ""))
    return 0


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    commit = commands.add_parser("commit", help="create a new image from a container's changes")
    commit.add_argument("-a", "--author", default="", help='author (e.g. "John Hannibal Smith <hannibal@a-team.com>")')
    commit.add_argument("-c", "--change", action="append", default=[], help="apply a Dockerfile instruction")
    commit.add_argument("-m", "--message", default="", help="commit message")
    commit.add_argument(
        "-p",
        "--pause",
        type=_flag,
        nargs="?",
        const=True,
        default=True,
        help="pause the container during commit (default true; -p=false to not)",
    )
    commit.add_argument("container")
    commit.add_argument("repository", nargs="?", metavar="REPOSITORY[:TAG]")
    commit.set_defaults(func=cmd_commit)

    diff = commands.add_parser("diff", help="inspect changes to files or directories on a container's filesystem")
    diff.add_argument("container")
    diff.set_defaults(func=cmd_diff)

    imp = commands.add_parser("import", help="import the contents from a tarball to create a filesystem image")
    imp.add_argument("-c", "--change", action="append", default=[], help="apply a Dockerfile instruction")
    imp.add_argument("-m", "--message", default="", help="set commit message for imported image")
    imp.add_argument("source", metavar="file|-")
    imp.add_argument("repository", nargs="?", metavar="REPOSITORY[:TAG]")
    imp.set_defaults(func=cmd_import)
