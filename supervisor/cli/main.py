"""`corral`: the command line. Talks to the daemon over its socket, like the docker CLI."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from supervisor.cli.client import ClientError, DaemonUnreachable, resolve_socket
from supervisor.cli.context import CliContext, CommandFailed
from supervisor.errors import CorralError

# The modules of supervisor.cli that register commands, in `corral --help` order, and which one
# registers each command: a command's run imports its own module only (their imports were most
# of the CLI's start-up). tests/unit/test_cli_commands.py keeps the table true.
COMMAND_MODULES = (
    "run",
    "containers",
    "cp",
    "exec",
    "images",
    "commit",
    "saveload",
    "events",
    "configs",
    "volumes",
    "stats",
)
MODULE_OF_COMMAND = {
    **dict.fromkeys(("run", "create"), "run"),
    **dict.fromkeys(
        (
            "ps",
            "start",
            "stop",
            "restart",
            "kill",
            "pause",
            "unpause",
            "rename",
            "top",
            "rm",
            "logs",
            "inspect",
            "wait",
        ),
        "containers",
    ),
    **dict.fromkeys(("cp", "export"), "cp"),
    "exec": "exec",
    **dict.fromkeys(("images", "tag", "rmi", "history", "image"), "images"),
    **dict.fromkeys(("commit", "diff", "import"), "commit"),
    **dict.fromkeys(("save", "load"), "saveload"),
    "events": "events",
    **dict.fromkeys(("up", "status", "reload"), "configs"),
    "volume": "volumes",
    "stats": "stats",
}


def cmd_daemon(_ctx: CliContext, args: argparse.Namespace) -> int:
    import trio

    from supervisor.daemon import DaemonAlreadyRunning, DaemonOptions, run_daemon
    from supervisor.logs import configure

    configure(level=args.log_level)
    options = DaemonOptions(
        root=Path(args.root),
        run_dir=Path(args.run_dir),
        cgroup_parent=args.cgroup_parent,
        shutdown_containers=args.shutdown_containers,
        prepare_window=args.prepare_window,
        configs=Path(args.configs) if args.configs else None,
    )
    try:
        trio.run(run_daemon, options)
    except DaemonAlreadyRunning as err:
        raise CommandFailed(str(err)) from None
    return 0


def build_parser(modules: Sequence[str] = COMMAND_MODULES) -> argparse.ArgumentParser:
    """The parser with `daemon` and the commands `modules` register (all by default)."""
    parser = argparse.ArgumentParser(prog="corral", description="A container engine and supervisor for one host.")
    parser.add_argument("-H", "--host", help="daemon socket to connect to (unix:///run/corral/corral.sock)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    daemon = commands.add_parser("daemon", help="run the corral daemon")
    daemon.add_argument("--root", default="/var/lib/corral", help="state directory")
    daemon.add_argument("--run-dir", default="/run/corral", help="runtime directory (sockets)")
    daemon.add_argument("--cgroup-parent", default="corral", help="parent cgroup for containers")
    daemon.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    daemon.add_argument("--configs", help="a directory of TOML container configs to run and keep running")
    daemon.add_argument(
        "--shutdown-containers",
        action="store_true",
        help="stop every container when the daemon stops (default: they keep running and are re-adopted)",
    )
    daemon.add_argument(
        "--prepare-window",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="fork and set up a created container's process at once, kept this long for its start (0: at start)",
    )
    daemon.set_defaults(func=cmd_daemon)

    for module in modules:
        importlib.import_module(f"supervisor.cli.{module}").register(commands)
    return parser


def command_of(argv: Sequence[str]) -> str | None:
    """The command word of a command line (after the global options); None if there is none."""
    words = iter(argv)
    for word in words:
        if word in ("-H", "--host"):
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def parser_for(argv: Sequence[str]) -> argparse.ArgumentParser:
    """A parser with the command's own module only; every command's for help or a word it does not know."""
    command = command_of(argv)
    if command == "daemon":
        return build_parser(())
    module = MODULE_OF_COMMAND.get(command or "")
    return build_parser((module,)) if module is not None else build_parser()


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser_for(argv).parse_args(argv)
    try:
        ctx = CliContext(socket=resolve_socket(args.host, os.environ))
        return int(args.func(ctx, args))
    except CommandFailed as err:
        sys.stderr.write(f"corral: {err}\n")
        return err.exit_code
    except DaemonUnreachable as err:
        sys.stderr.write(f"corral: {err}\n")
        return 125 if args.command in ("run", "create") else 1
    except (CorralError, ClientError) as err:
        sys.stderr.write(f"corral: {err}\n")
        return 125
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
