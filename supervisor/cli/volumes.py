"""`corral volume create|ls|inspect|rm|prune`, laid out as the docker CLI's."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from supervisor.cli.context import CliContext, CommandFailed, for_each, inspect_each
from supervisor.cli.output import table
from supervisor.humanize import human_size


def _pairs(items: list[str]) -> dict[str, str]:
    result = {}
    for item in items:
        key, _, value = item.partition("=")
        result[key] = value
    return result


def _filters(items: list[str]) -> dict[str, list[str]]:
    filters: dict[str, list[str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise CommandFailed(f"bad format of filter (expected name=value): {item}", 125)
        filters.setdefault(key, []).append(value)
    return filters


def _failed(response: Any) -> CommandFailed:
    return CommandFailed(f"Error response from daemon: {response.message}", 1)


def cmd_create(ctx: CliContext, args: argparse.Namespace) -> int:
    body = {
        "Name": args.name or "",
        "Driver": args.driver,
        "Labels": _pairs(args.label),
        "DriverOpts": _pairs(args.opt),
    }
    with ctx.client() as client:
        response = client.request("POST", "/volumes/create", json=body)
    if not response.ok:
        raise _failed(response)
    print(response.json()["Name"])
    return 0


def cmd_ls(ctx: CliContext, args: argparse.Namespace) -> int:
    query: dict[str, Any] = {}
    if args.filter:
        query["filters"] = _filters(args.filter)
    with ctx.client() as client:
        response = client.request("GET", "/volumes", query=query)
    if not response.ok:
        raise _failed(response)
    volumes = sorted(response.json()["Volumes"] or [], key=lambda v: v["Name"])
    if args.quiet:
        for volume in volumes:
            print(volume["Name"])
        return 0
    table(["DRIVER", "VOLUME NAME"], [[v["Driver"], v["Name"]] for v in volumes])
    return 0


def cmd_inspect(ctx: CliContext, args: argparse.Namespace) -> int:
    return inspect_each(ctx, [f"/volumes/{name}" for name in args.volumes])


def cmd_rm(ctx: CliContext, args: argparse.Namespace) -> int:
    query = {"force": args.force}
    return for_each(ctx, args.volumes, lambda client, name: client.request("DELETE", f"/volumes/{name}", query=query))


def cmd_prune(ctx: CliContext, args: argparse.Namespace) -> int:
    filters = _filters(args.filter)
    if args.all and "all" in filters:
        raise CommandFailed("conflicting options: cannot specify both --all and --filter all=1", 125)
    # Sent explicitly: without it the daemon applies the API 1.41 default (every unused volume).
    filters.setdefault("all", ["true" if args.all else "false"])
    if not args.force:
        what = "all local volumes" if filters["all"] == ["true"] else "anonymous local volumes"
        sys.stdout.write(
            f"WARNING! This will remove {what} not used by at least one container.\n"
            "Are you sure you want to continue? [y/N] "
        )
        sys.stdout.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return 0
    with ctx.client() as client:
        response = client.request("POST", "/volumes/prune", query={"filters": filters})
    if not response.ok:
        raise _failed(response)
    report = response.json()
    if report["VolumesDeleted"]:
        print("Deleted Volumes:")
        for name in report["VolumesDeleted"]:
            print(name)
        print()
    print(f"Total reclaimed space: {human_size(report['SpaceReclaimed'])}")
    return 0


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    volume = commands.add_parser("volume", help="manage volumes")
    sub = volume.add_subparsers(dest="volume_command", required=True, metavar="COMMAND")

    create = sub.add_parser("create", help="create a volume")
    create.add_argument("name", nargs="?", help="volume name (generated if left out)")
    create.add_argument("-d", "--driver", default="local", help="volume driver (only local)")
    create.add_argument("--label", action="append", default=[], help="set metadata (KEY=VALUE)")
    create.add_argument("-o", "--opt", action="append", default=[], help="driver options (none are supported)")
    create.set_defaults(func=cmd_create)

    for name in ("ls", "list"):
        ls = sub.add_parser(name, help="list volumes")
        ls.add_argument("-q", "--quiet", action="store_true", help="only display volume names")
        ls.add_argument("-f", "--filter", action="append", default=[], help="filter (dangling, name, label, driver)")
        ls.set_defaults(func=cmd_ls)

    inspect = sub.add_parser("inspect", help="display detailed information on volumes")
    inspect.add_argument("volumes", nargs="+")
    inspect.set_defaults(func=cmd_inspect)

    for name in ("rm", "remove"):
        rm = sub.add_parser(name, help="remove volumes (refused while a container uses one)")
        rm.add_argument("-f", "--force", action="store_true", help="no error for a volume that does not exist")
        rm.add_argument("volumes", nargs="+")
        rm.set_defaults(func=cmd_rm)

    prune = sub.add_parser("prune", help="remove unused anonymous volumes (-a: named ones too)")
    prune.add_argument("-a", "--all", action="store_true", help="remove all unused volumes, not just anonymous ones")
    prune.add_argument("-f", "--force", action="store_true", help="do not prompt for confirmation")
    prune.add_argument("--filter", action="append", default=[], help="filter (label=..., label!=...)")
    prune.set_defaults(func=cmd_prune)
