"""`corral up`, `corral status`, `corral reload`: the supervisor's configs directory."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from supervisor.cli.client import DaemonUnreachable
from supervisor.cli.context import CliContext, CommandFailed
from supervisor.cli.output import table


def _print_status(status: dict[str, Any]) -> None:
    print(f"configs: {status['Directory']}")
    if status.get("LoadError"):
        print(f"  {status['LoadError']}")
    for error in status.get("Errors", []):
        print(f"  error: {error}")
    rows = []
    for c in status.get("Containers", []):
        note = c["Pending"] or c["Error"]
        if c["Desired"] != "running":
            note = c["Desired"] + (f"; {note}" if note else "")
        rows.append([c["Name"], c["State"], c["Status"], str(c["RestartCount"]), c["Source"], note])
    if rows:
        table(["NAME", "STATE", "STATUS", "RESTARTS", "SOURCE", "NOTE"], rows)


def _checked(response: Any) -> dict[str, Any]:
    if not response.ok:
        raise CommandFailed(f"Error response from daemon: {response.message}")
    result: dict[str, Any] = response.json()
    return result


def cmd_status(ctx: CliContext, args: argparse.Namespace) -> int:
    with ctx.client() as client:
        status = _checked(client.request("GET", "/corral/configs"))
    if args.json:
        import json

        print(json.dumps(status, indent=2))
    else:
        _print_status(status)
    converged = not status["Errors"] and all(
        c["State"] == c["Desired"] or c["State"] in ("running", "exited") and not c["Pending"]
        for c in status["Containers"]
        if c["Desired"] == "running"
    )
    return 0 if converged else 1


def cmd_reload(ctx: CliContext, _args: argparse.Namespace) -> int:
    with ctx.client() as client:
        _print_status(_checked(client.request("POST", "/corral/configs/reload")))
    return 0


def cmd_up(ctx: CliContext, args: argparse.Namespace) -> int:
    directory = Path(args.directory).resolve()
    if not directory.is_dir():
        raise CommandFailed(f"not a directory: {args.directory}")
    try:
        with ctx.client() as client:
            status = _checked(client.request("PUT", "/corral/configs", json={"Directory": str(directory)}))
    except DaemonUnreachable:
        # No daemon yet: become it, in the foreground, on this directory.
        argv = [sys.executable, "-m", "supervisor.cli.main", "daemon", "--configs", str(directory)]
        for flag in ("root", "run_dir", "cgroup_parent"):
            value = getattr(args, flag)
            if value:
                argv += [f"--{flag.replace('_', '-')}", value]
        os.execv(sys.executable, argv)
    _print_status(status)
    return 0


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    up = commands.add_parser("up", help="run the configs in DIR: start the daemon on it, or apply it to a running one")
    up.add_argument("directory", nargs="?", default="configs")
    up.add_argument("--root", help="state directory, when this starts the daemon")
    up.add_argument("--run-dir", help="runtime directory, when this starts the daemon")
    up.add_argument("--cgroup-parent", help="parent cgroup, when this starts the daemon")
    up.set_defaults(func=cmd_up)

    status = commands.add_parser("status", help="desired vs actual for every config, with errors")
    status.add_argument("--json", action="store_true", help="print the daemon's JSON")
    status.set_defaults(func=cmd_status)

    reload = commands.add_parser("reload", help="re-read the configs directory now")
    reload.set_defaults(func=cmd_reload)
