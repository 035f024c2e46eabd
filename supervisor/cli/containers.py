"""Container commands: ps, start, stop, kill, pause, unpause, rename, top, rm, logs, inspect, wait."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from supervisor.cli.client import ClientResponse, iter_frames
from supervisor.cli.context import CliContext, CommandFailed, for_each, inspect_each
from supervisor.cli.output import human_ago, table, truncate


def _check(response: Any) -> Any:
    if not response.ok:
        raise CommandFailed(f"Error response from daemon: {response.message}", 1)
    return response


def cmd_ps(ctx: CliContext, args: argparse.Namespace) -> int:
    filters: dict[str, list[str]] = {}
    for item in args.filter:
        key, _, value = item.partition("=")
        filters.setdefault(key, []).append(value)
    query: dict[str, Any] = {"all": args.all}
    if filters:
        query["filters"] = filters
    with ctx.client() as client:
        containers = _check(client.request("GET", "/containers/json", query=query)).json()
    if args.quiet:
        for c in containers:
            print(c["Id"][:12] if not args.no_trunc else c["Id"])
        return 0
    now = time.time()
    rows = [
        [
            c["Id"] if args.no_trunc else c["Id"][:12],
            c["Image"],
            json.dumps(c["Command"] if args.no_trunc else truncate(c["Command"], 20), ensure_ascii=False),
            human_ago(c["Created"], now),
            c["Status"],
            "",
            ",".join(n.lstrip("/") for n in c["Names"]),
        ]
        for c in containers
    ]
    table(["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"], rows)
    return 0


def cmd_start(ctx: CliContext, args: argparse.Namespace) -> int:
    return for_each(ctx, args.containers, lambda client, ref: client.request("POST", f"/containers/{ref}/start"))


def cmd_stop(ctx: CliContext, args: argparse.Namespace) -> int:
    query = {"t": args.time} if args.time is not None else {}
    if args.signal:
        query["signal"] = args.signal
    return for_each(
        ctx, args.containers, lambda client, ref: client.request("POST", f"/containers/{ref}/stop", query=query)
    )


def cmd_restart(ctx: CliContext, args: argparse.Namespace) -> int:
    query = {"t": args.time} if args.time is not None else {}
    return for_each(
        ctx, args.containers, lambda client, ref: client.request("POST", f"/containers/{ref}/restart", query=query)
    )


def cmd_kill(ctx: CliContext, args: argparse.Namespace) -> int:
    query = {"signal": args.signal} if args.signal else {}
    return for_each(
        ctx, args.containers, lambda client, ref: client.request("POST", f"/containers/{ref}/kill", query=query)
    )


def cmd_pause(ctx: CliContext, args: argparse.Namespace) -> int:
    return for_each(ctx, args.containers, lambda client, ref: client.request("POST", f"/containers/{ref}/pause"))


def cmd_unpause(ctx: CliContext, args: argparse.Namespace) -> int:
    return for_each(ctx, args.containers, lambda client, ref: client.request("POST", f"/containers/{ref}/unpause"))


def cmd_rename(ctx: CliContext, args: argparse.Namespace) -> int:
    with ctx.client() as client:
        response = client.request("POST", f"/containers/{args.container}/rename", query={"name": args.new_name})
    if not response.ok:
        raise CommandFailed(f"Error response from daemon: {response.message}", 1)
    return 0


def cmd_top(ctx: CliContext, args: argparse.Namespace) -> int:
    query = {"ps_args": " ".join(args.ps_args)} if args.ps_args else {}
    with ctx.client() as client:
        listed = _check(client.request("GET", f"/containers/{args.container}/top", query=query)).json()
    table(listed["Titles"], listed["Processes"])
    return 0


def cmd_rm(ctx: CliContext, args: argparse.Namespace) -> int:
    query = {"force": args.force, "v": args.volumes}
    return for_each(
        ctx, args.containers, lambda client, ref: client.request("DELETE", f"/containers/{ref}", query=query)
    )


def cmd_inspect(ctx: CliContext, args: argparse.Namespace) -> int:
    return inspect_each(ctx, [f"/containers/{ref}/json" for ref in args.containers], error_prefix="Error")


def cmd_wait(ctx: CliContext, args: argparse.Namespace) -> int:
    failed = False
    with ctx.client() as client:
        for ref in args.containers:
            response = client.request("POST", f"/containers/{ref}/wait")
            if response.ok:
                print(response.json()["StatusCode"])
            else:
                sys.stderr.write(f"Error response from daemon: {response.message}\n")
                failed = True
    return 1 if failed else 0


def cmd_logs(ctx: CliContext, args: argparse.Namespace) -> int:
    with ctx.client() as client:
        info = _check(client.request("GET", f"/containers/{args.container}/json")).json()
        query: dict[str, Any] = {
            "stdout": True,
            "stderr": True,
            "follow": args.follow,
            "timestamps": args.timestamps,
            "tail": args.tail,
        }
        if args.since:
            query["since"] = args.since
        if args.until:
            query["until"] = args.until
        with client.stream("GET", f"/containers/{info['Id']}/logs", query=query) as response:
            if not response.ok:
                failure = ClientResponse(response.status, response.headers, b"".join(response.iter_chunks()))
                raise CommandFailed(f"Error response from daemon: {failure.message}", 1)
            _print_log_stream(response, tty=bool(info["Config"]["Tty"]))
    return 0


def _print_log_stream(response: Any, *, tty: bool) -> None:
    out, err = sys.stdout.buffer, sys.stderr.buffer
    if tty:
        for chunk in response.iter_chunks():
            out.write(chunk)
            out.flush()
        return
    for stream, payload in iter_frames(response.read):
        target = err if stream == 2 else out
        target.write(payload)
        target.flush()


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    ps = commands.add_parser("ps", help="list containers")
    ps.add_argument("-a", "--all", action="store_true", help="show all containers (default shows just running)")
    ps.add_argument("-q", "--quiet", action="store_true", help="only display container IDs")
    ps.add_argument("-f", "--filter", action="append", default=[], help="filter output (status=exited, name=web, ...)")
    ps.add_argument("--no-trunc", action="store_true", help="don't truncate output")
    ps.set_defaults(func=cmd_ps)

    start = commands.add_parser("start", help="start one or more stopped containers")
    start.add_argument("containers", nargs="+")
    start.set_defaults(func=cmd_start)

    stop = commands.add_parser("stop", help="stop one or more running containers")
    stop.add_argument("-t", "--time", "--timeout", type=int, help="seconds to wait before killing the container")
    stop.add_argument("-s", "--signal", help="signal to send to the container")
    stop.add_argument("containers", nargs="+")
    stop.set_defaults(func=cmd_stop)

    restart = commands.add_parser("restart", help="restart one or more containers")
    restart.add_argument("-t", "--time", "--timeout", type=int, help="seconds to wait before killing the container")
    restart.add_argument("containers", nargs="+")
    restart.set_defaults(func=cmd_restart)

    kill = commands.add_parser("kill", help="kill one or more running containers")
    kill.add_argument("-s", "--signal", help="signal to send to the container (default KILL)")
    kill.add_argument("containers", nargs="+")
    kill.set_defaults(func=cmd_kill)

    pause = commands.add_parser("pause", help="pause all processes within one or more containers")
    pause.add_argument("containers", nargs="+")
    pause.set_defaults(func=cmd_pause)

    unpause = commands.add_parser("unpause", help="unpause all processes within one or more containers")
    unpause.add_argument("containers", nargs="+")
    unpause.set_defaults(func=cmd_unpause)

    rename = commands.add_parser("rename", help="rename a container")
    rename.add_argument("container")
    rename.add_argument("new_name", metavar="NEW_NAME")
    rename.set_defaults(func=cmd_rename)

    top = commands.add_parser("top", help="display the running processes of a container")
    top.add_argument("container")
    top.add_argument("ps_args", nargs=argparse.REMAINDER, metavar="PS OPTIONS")
    top.set_defaults(func=cmd_top)

    rm = commands.add_parser("rm", help="remove one or more containers")
    rm.add_argument("-f", "--force", action="store_true", help="force the removal of a running container")
    rm.add_argument("-v", "--volumes", action="store_true", help="remove anonymous volumes")
    rm.add_argument("containers", nargs="+")
    rm.set_defaults(func=cmd_rm)

    logs = commands.add_parser("logs", help="fetch the logs of a container")
    logs.add_argument("-f", "--follow", action="store_true", help="follow log output")
    logs.add_argument("-t", "--timestamps", action="store_true", help="show timestamps")
    logs.add_argument("-n", "--tail", default="all", help="number of lines to show from the end of the logs")
    logs.add_argument("--since", help="show logs since a timestamp or Unix time")
    logs.add_argument("--until", help="show logs before a timestamp or Unix time")
    logs.add_argument("container")
    logs.set_defaults(func=cmd_logs)

    inspect = commands.add_parser("inspect", help="display detailed information on containers")
    inspect.add_argument("containers", nargs="+")
    inspect.set_defaults(func=cmd_inspect)

    wait = commands.add_parser("wait", help="block until containers stop, then print their exit codes")
    wait.add_argument("containers", nargs="+")
    wait.set_defaults(func=cmd_wait)
