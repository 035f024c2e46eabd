"""What every CLI command shares: where the daemon is, and how a command fails."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from supervisor.cli.client import Client, ClientResponse


class CommandFailed(Exception):
    """Print `message` after `corral: ` and exit with `exit_code`."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class CliContext:
    socket: Path

    def client(self) -> Client:
        return Client(self.socket)


def for_each(ctx: CliContext, refs: list[str], action: Callable[[Client, str], ClientResponse]) -> int:
    """Docker's multi-object commands (rm, stop, ...): print each ref done, report each failure, exit 1 if any."""
    failed = False
    with ctx.client() as client:
        for ref in refs:
            response = action(client, ref)
            if response.ok or response.status == 304:
                print(ref)
            else:
                sys.stderr.write(f"Error response from daemon: {response.message}\n")
                failed = True
    return 1 if failed else 0


def inspect_each(ctx: CliContext, paths: list[str], *, error_prefix: str = "Error response from daemon") -> int:
    """`inspect`: a JSON array of every object found, an error line for each one not, exit 1 if any."""
    results = []
    failed = False
    with ctx.client() as client:
        for path in paths:
            response = client.request("GET", path)
            if response.ok:
                results.append(response.json())
            else:
                sys.stderr.write(f"{error_prefix}: {response.message}\n")
                failed = True
    print(json.dumps(results, indent=4))
    return 1 if failed else 0
