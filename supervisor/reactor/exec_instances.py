"""Docker's exec instances: created, then started (attached or detached), inspected, resized;
kept `EXEC_RETENTION` seconds after they finish and dropped with their container. Built on
`spawn_exec` (reactor/execs.py)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog
import trio

from supervisor.errors import Conflict, InvalidArgument, NotFound, StartFailed
from supervisor.isolation.terminal import check_window
from supervisor.reactor.container import Container
from supervisor.reactor.events import Event, container_attributes
from supervisor.reactor.execs import (
    EXEC_RETENTION,
    EXEC_START_FAILED,
    ExecCommand,
    ExecProcess,
    check_running,
    new_exec_id,
    spawn_exec,
)

if TYPE_CHECKING:
    from supervisor.reactor.engine import Engine

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class ExecConfig:
    """`POST /containers/{id}/exec`: the command plus what the client will attach to."""

    command: ExecCommand
    attach_stdin: bool = False
    attach_stdout: bool = True
    attach_stderr: bool = True
    detach_keys: str = ""
    console_size: tuple[int, int] | None = None


class ExecInstance:
    """One exec as Docker's API knows it: created, then started once, then finished."""

    def __init__(self, exec_id: str, container: Container, config: ExecConfig) -> None:
        self.id = exec_id
        self.container = container
        self.config = config
        self.created = time.monotonic()
        self.started = False
        self.running = False
        self.pid = 0
        self.exit_code: int | None = None
        self.finished: float | None = None
        self.process: ExecProcess | None = None
        # The pty's size: given at create or start, or by a resize that came before the process.
        self.console_size = config.console_size
        self.done = trio.Event()

    @property
    def command(self) -> ExecCommand:
        return self.config.command

    def check_startable(self) -> None:
        if self.exit_code is not None:
            raise Conflict(f"Error: Exec command {self.id} has already run")
        if self.started:
            raise Conflict(f"Error: Exec command {self.id} is already running")
        check_running(self.container)

    def finish(self, exit_code: int) -> None:
        self.running = False
        self.exit_code = exit_code
        self.finished = time.monotonic()
        self.done.set()

    def resize(self, rows: int, columns: int) -> None:
        """Size the exec's pty; one that comes before the process (or while it starts) is applied at its start."""
        check_window(rows, columns)
        if not self.command.tty:
            raise Conflict(f"exec {self.id} has no TTY")
        if self.exit_code is not None:
            raise Conflict(f"Error: Exec command {self.id} has already run")
        self.console_size = (rows, columns)
        if self.process is not None and self.running:
            self.process.resize(rows, columns)

    def expired(self, now: float) -> bool:
        if self.container.removed:
            return True
        if self.finished is not None:
            return now - self.finished > EXEC_RETENTION
        return not self.started and now - self.created > EXEC_RETENTION and not self.container.state.running


class ExecStore:
    """Exec instances by ID (exact, as Docker looks them up); expired ones go on the next access."""

    def __init__(self) -> None:
        self._by_id: dict[str, ExecInstance] = {}

    def prune(self) -> None:
        now = time.monotonic()
        for exec_id in [i for i, e in self._by_id.items() if e.expired(now)]:
            del self._by_id[exec_id]

    def add(self, instance: ExecInstance) -> None:
        self.prune()
        self._by_id[instance.id] = instance

    def get(self, exec_id: str) -> ExecInstance:
        self.prune()
        instance = self._by_id.get(exec_id)
        if instance is None:
            raise NotFound(f"No such exec instance: {exec_id}")
        return instance

    def for_container(self, container_id: str) -> list[ExecInstance]:
        """Docker's `ExecIDs` of a container's inspect: its execs not yet finished (created or running)."""
        self.prune()
        return [e for e in self._by_id.values() if e.container.id == container_id and e.exit_code is None]


def _command_text(command: ExecCommand) -> str:
    return " ".join(command.argv)


def create_exec(engine: Engine, container: Container, config: ExecConfig) -> ExecInstance:
    if not config.command.argv:
        raise InvalidArgument("No exec command specified")
    check_running(container)
    instance = ExecInstance(new_exec_id(), container, config)
    engine.execs.add(instance)
    engine.events.publish(
        Event(
            "container",
            f"exec_create: {_command_text(config.command)}",
            container.id,
            container_attributes(container, execID=instance.id),
        )
    )
    return instance


async def start_exec(
    engine: Engine, instance: ExecInstance, *, detach: bool, console_size: tuple[int, int] | None = None
) -> ExecProcess:
    """Start a created exec; the caller owns the stdio of what it returns (none when detached).

    The exit is watched by a task in the engine's nursery, which records it
    on the instance (`done`, `exit_code`) and publishes `exec_die`. A start
    that fails records 127 (not found) or 126 as the exec's exit code and raises.
    """
    instance.check_startable()
    instance.started = True
    if console_size is not None:
        instance.console_size = console_size
    size_at_start = instance.console_size
    try:
        process = await spawn_exec(
            engine,
            instance.container,
            instance.command,
            exec_id=instance.id,
            detach=detach,
            console_size=size_at_start,
        )
    except StartFailed as err:
        instance.finish(err.exit_code)
        raise
    except BaseException:
        # The container stopped meanwhile, the launcher went, ...: an exec that did not run, as Docker says.
        instance.finish(EXEC_START_FAILED)
        raise
    instance.process = process
    instance.pid = process.pid
    instance.running = True
    if instance.console_size != size_at_start and instance.console_size is not None and process.pty is not None:
        # A resize came while the process was starting (the docker CLI sends one right after start).
        process.resize(*instance.console_size)
    container = instance.container
    engine.events.publish(
        Event(
            "container",
            f"exec_start: {_command_text(instance.command)}",
            container.id,
            container_attributes(container, execID=instance.id),
        )
    )
    engine.nursery.start_soon(_watch_exit, engine, instance, process)
    return process


async def _watch_exit(engine: Engine, instance: ExecInstance, process: ExecProcess) -> None:
    status = await process.wait()
    instance.finish(status.exit_code)
    container = instance.container
    engine.events.publish(
        Event(
            "container",
            "exec_die",
            container.id,
            container_attributes(container, execID=instance.id, exitCode=str(status.exit_code)),
        )
    )
