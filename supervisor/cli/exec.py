"""`corral exec`: the docker CLI's sequence (inspect, create, start, inspect the exec's exit code).

Exit codes as the docker CLI's: the command's own; 126 if it could not be
run, 127 if it was not found (both reported by the daemon as the exec's
exit code); 1 if the daemon refused (no such container, not running).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from contextlib import ExitStack
from typing import Any

from supervisor.cli.attach import copy_output, follow_terminal_size, pump_stdin, raw_terminal
from supervisor.cli.client import APIError, Client, ClientResponse
from supervisor.cli.context import CliContext, CommandFailed


def _env(items: list[str], environ: Mapping[str, str]) -> list[str]:
    """`-e KEY=VALUE` as given; `-e KEY` takes our value, or is dropped when we have none (as docker does)."""
    return [item if "=" in item else f"{item}={environ[item]}" for item in items if "=" in item or item in environ]


def exec_body(args: argparse.Namespace, environ: Mapping[str, str]) -> dict[str, Any]:
    attach = not args.detach
    body: dict[str, Any] = {
        "User": args.user,
        "Privileged": False,
        "Tty": args.tty,
        "AttachStdin": attach and args.interactive,
        "AttachStdout": attach,
        "AttachStderr": attach,
        "Detach": args.detach,
        "Env": _env(args.env, environ) or None,
        "WorkingDir": args.workdir,
        "Cmd": args.command,
    }
    if args.tty and attach and sys.stdout.isatty():
        size = os.get_terminal_size(sys.stdout.fileno())
        body["ConsoleSize"] = [size.lines, size.columns]
    return body


def _check(response: ClientResponse) -> ClientResponse:
    if not response.ok:
        raise CommandFailed(f"Error response from daemon: {response.message}", 1)
    return response


def cmd_exec(ctx: CliContext, args: argparse.Namespace) -> int:
    if not args.command:
        raise CommandFailed('"corral exec" requires at least 2 arguments: CONTAINER COMMAND [ARG...]', 1)
    with ctx.client() as client:
        # Inspect first, as the docker CLI does, so "no such container" wins over any other error.
        _check(client.request("GET", f"/containers/{args.container}/json"))
        body = exec_body(args, os.environ)
        exec_id = _check(client.request("POST", f"/containers/{args.container}/exec", json=body)).json()["Id"]
        if args.detach:
            _check(client.request("POST", f"/exec/{exec_id}/start", json={"Detach": True, "Tty": args.tty}))
            return 0
        _run_attached(ctx, client, exec_id, args)
        inspect = _check(client.request("GET", f"/exec/{exec_id}/json")).json()
    return int(inspect.get("ExitCode") or 0)


def _run_attached(ctx: CliContext, client: Client, exec_id: str, args: argparse.Namespace) -> None:
    with ExitStack() as stack:
        try:
            conn = client.hijack("POST", f"/exec/{exec_id}/start", json={"Detach": False, "Tty": args.tty})
        except APIError as err:
            raise CommandFailed(f"Error response from daemon: {err}", 1) from None
        stack.enter_context(conn)
        if args.tty:
            resizer = stack.enter_context(ctx.client())
            follow_terminal_size(
                lambda h, w: resizer.request("POST", f"/exec/{exec_id}/resize", query={"h": h, "w": w})
            )
        with raw_terminal(args.tty and args.interactive):
            if args.interactive:
                pump_stdin(conn, sys.stdin.buffer)
            copy_output(conn, tty_mode=args.tty, stdout=sys.stdout.buffer, stderr=sys.stderr.buffer)


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("exec", help="run a command in a running container")
    add = parser.add_argument
    add("-d", "--detach", action="store_true", help="run the command in the background")
    add("-i", "--interactive", action="store_true", help="keep STDIN open")
    add("-t", "--tty", action="store_true", help="allocate a pseudo-TTY")
    add("-e", "--env", action="append", default=[], help="set environment variables (KEY=VALUE, or KEY)")
    add("-w", "--workdir", default="", help="working directory inside the container")
    add("-u", "--user", default="", help="username or UID (format: <name|uid>[:<group|gid>])")
    add("container", help="the container")
    add("command", nargs=argparse.REMAINDER, help="the command and its arguments")
    parser.set_defaults(func=cmd_exec)
