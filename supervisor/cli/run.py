"""`corral run` and `corral create`: the docker CLI's sequence (create, attach, wait, start)."""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import ExitStack
from typing import Any

from supervisor.cli.attach import copy_output, follow_terminal_size, pump_stdin, raw_terminal
from supervisor.cli.client import Client
from supervisor.cli.context import CliContext, CommandFailed
from supervisor.cli.runflags import add_create_flags, create_body


def _start_failure_code(message: str) -> int:
    """The docker CLI's mapping of start errors to exit codes."""
    if "executable file not found" in message or "no such file or directory" in message:
        return 127
    if "permission denied" in message or "is a directory" in message:
        return 126
    return 125


def _create(client: Client, args: argparse.Namespace) -> str:
    body = create_body(args)
    query = {"name": args.name} if args.name else None
    response = client.request("POST", "/containers/create", query=query, json=body)
    if response.status == 404 and "No such image" in response.message:
        sys.stderr.write(f"Unable to find image '{args.image}' locally\n")
    if not response.ok:
        raise CommandFailed(f"Error response from daemon: {response.message}", 125)
    return str(response.json()["Id"])


def cmd_create(ctx: CliContext, args: argparse.Namespace) -> int:
    with ctx.client() as client:
        print(_create(client, args))
    return 0


def _read_wait_result(chunks: Any) -> int:
    data = b"".join(chunks)
    try:
        result = json.loads(data)
    except ValueError:
        return 125
    error = result.get("Error")
    if error and error.get("Message"):
        sys.stderr.write(f"corral: {error['Message']}\n")
    return int(result.get("StatusCode", 125))


def cmd_run(ctx: CliContext, args: argparse.Namespace) -> int:
    with ctx.client() as client:
        container_id = _create(client, args)
        if args.detach:
            response = client.request("POST", f"/containers/{container_id}/start")
            if not response.ok:
                raise CommandFailed(
                    f"Error response from daemon: {response.message}", _start_failure_code(response.message)
                )
            print(container_id)
            return 0
        return _run_attached(ctx, client, container_id, args)


def _run_attached(ctx: CliContext, client: Client, container_id: str, args: argparse.Namespace) -> int:
    with ExitStack() as stack:
        conn = stack.enter_context(
            client.hijack(
                "POST",
                f"/containers/{container_id}/attach",
                query={"stream": True, "stdout": True, "stderr": True, "stdin": args.interactive},
            )
        )
        wait_client = stack.enter_context(ctx.client())
        condition = "removed" if args.rm else "next-exit"
        waiting = stack.enter_context(
            wait_client.stream("POST", f"/containers/{container_id}/wait", query={"condition": condition})
        )
        starter = stack.enter_context(ctx.client())
        response = starter.request("POST", f"/containers/{container_id}/start")
        if not response.ok:
            raise CommandFailed(
                f"Error response from daemon: {response.message}", _start_failure_code(response.message)
            )
        if args.tty:
            follow_terminal_size(
                lambda h, w: starter.request("POST", f"/containers/{container_id}/resize", query={"h": h, "w": w})
            )
        with raw_terminal(args.tty and args.interactive):
            if args.interactive:
                pump_stdin(conn, sys.stdin.buffer)
            copy_output(conn, tty_mode=args.tty, stdout=sys.stdout.buffer, stderr=sys.stderr.buffer)
        return _read_wait_result(waiting.iter_chunks())


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    run = commands.add_parser("run", help="create and run a new container from an image", add_help=False)
    run.add_argument("--help", action="help")
    run.add_argument("-d", "--detach", action="store_true", help="run in the background and print the container ID")
    add_create_flags(run)
    run.set_defaults(func=cmd_run)
    create = commands.add_parser("create", help="create a new container", add_help=False)
    create.add_argument("--help", action="help")
    add_create_flags(create)
    create.set_defaults(func=cmd_create)
