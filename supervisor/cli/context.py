"""What every CLI command shares: where the daemon is, and how a command fails."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from supervisor.cli.client import Client


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
