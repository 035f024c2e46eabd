"""What the launcher's replies hand the daemon: exit statuses and process handles.

Pure data (and the parsing of a start's reply), shared by the client and
the reactor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from supervisor.errors import StartFailed
from supervisor.isolation.launcher import protocol
from supervisor.timestamps import now_rfc3339


@dataclass(frozen=True)
class ExitStatus:
    exit_code: int
    signal: int | None
    finished_at: str

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ExitStatus:
        return cls(exit_code=data["exit_code"], signal=data.get("signal"), finished_at=data["finished_at"])

    @classmethod
    def unknown(cls) -> ExitStatus:
        """An exit no one saw the status of (the launcher died): Docker reports such exits as 255."""
        return cls(exit_code=255, signal=None, finished_at=now_rfc3339())


@dataclass(frozen=True)
class Started:
    """A running container process. The caller owns every descriptor here."""

    pid: int
    pidfd: int
    stdin_fd: int | None = None
    pty_fd: int | None = None
    # Copies of the output pipes' read ends ("stdout", "stderr"); with a pty, `pty_fd` serves.
    outputs: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Parked:
    """A prepared container's process, parked before its exec, and its handles from then on.

    Writing the go byte to `go_fd` starts it with no round trip through the
    launcher (None from a launcher that predates that: its `go` op starts it).
    The caller owns every descriptor here.
    """

    started: Started
    go_fd: int | None

    def close(self) -> None:
        for fd in (self.started.pidfd, self.started.stdin_fd, self.started.pty_fd, self.go_fd):
            if fd is not None:
                protocol.close_quietly(fd)
        for fd in self.started.outputs.values():
            protocol.close_quietly(fd)


@dataclass(frozen=True)
class ExecStarted:
    """A process started inside a running container. The caller owns every descriptor here.

    Without a tty: stdout and stderr read ends, and the stdin write end if
    stdin was asked for; with one: the pty master; detached: none of them.
    """

    pid: int
    pidfd: int
    stdin_fd: int | None = None
    stdout_fd: int | None = None
    stderr_fd: int | None = None
    pty_fd: int | None = None


@dataclass(frozen=True)
class Adopted:
    pid: int
    pidfd: int
    finished: bool
    exit: ExitStatus | None
    pty_fd: int | None = None
    outputs: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Known:
    cid: str
    pid: int
    finished: bool
    exit: ExitStatus | None


def started_from_reply(reply: dict[str, Any], fds: list[int]) -> Started:
    if "error" in reply:
        for fd in fds:
            protocol.close_quietly(fd)
        raise StartFailed(reply["error"], int(reply.get("exit_code", 125)))
    return _started(reply, dict(zip(reply["fds"], fds, strict=True)))


def parked_from_reply(reply: dict[str, Any], fds: list[int]) -> Parked:
    """A prepare's reply; StartFailed as for a start. A launcher that predates handles at prepare
    time sends none: then the pidfd and the rest come with its `go` reply (`started` is unusable)."""
    if "error" in reply:
        for fd in fds:
            protocol.close_quietly(fd)
        raise StartFailed(reply["error"], int(reply.get("exit_code", 125)))
    handles = dict(zip(reply.get("fds", []), fds, strict=True))
    go_fd = handles.pop("go", None)
    if "pidfd" not in handles:
        for fd in handles.values():
            protocol.close_quietly(fd)
        return Parked(Started(pid=reply["pid"], pidfd=-1), None)
    return Parked(_started(reply, handles), go_fd)


def _started(reply: dict[str, Any], handles: dict[str, int]) -> Started:
    return Started(
        pid=reply["pid"],
        pidfd=handles["pidfd"],
        stdin_fd=handles.get("stdin"),
        pty_fd=handles.get("pty"),
        outputs={name: fd for name, fd in handles.items() if name in ("stdout", "stderr")},
    )
