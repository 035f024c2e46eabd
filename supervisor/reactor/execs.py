"""Exec: more processes in a running container, as a primitive and as Docker's exec instances.

Three layers, each built on the one before:

- `spawn_exec(engine, container, command)` starts a process in the
  container's namespaces and cgroup through the launcher and returns an
  `ExecProcess`: its stdio as trio streams, its pidfd (for `kill`), and
  `wait()` for the exit status (which the launcher keeps until asked).
  The output is the caller's: it never goes to the container's log.
- `run_in_container(engine, container, argv, timeout=...)` runs a command
  to completion and returns a `ProbeResult` (exit code, the first bytes of
  stdout and stderr together, whether it timed out); at the timeout the
  process is killed through its pidfd. Health checks use this.
- `ExecInstance`s in an `ExecStore` (reactor/exec_instances.py): Docker's
  exec objects (create, then start, attached or detached; inspect;
  resize), kept for a while after they finish and dropped with their
  container.
"""

from __future__ import annotations

import math
import os
import secrets
import signal
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog
import trio

from supervisor.errors import Conflict, InvalidArgument, NotFound, StartFailed
from supervisor.isolation.capabilities import resolve_capabilities
from supervisor.isolation.launcher.client import LauncherClient, LauncherLost
from supervisor.isolation.launcher.replies import ExecStarted, ExitStatus
from supervisor.isolation.spec import DEFAULT_PATH, ExecSpec
from supervisor.isolation.terminal import check_window, set_window
from supervisor.reactor.container import Container

if TYPE_CHECKING:
    from supervisor.reactor.engine import Engine

log = structlog.get_logger(__name__)

# After the process has exited, how long its output may still take to reach EOF: a
# background child can hold stdout open forever, and nobody waits for that.
OUTPUT_GRACE = 0.5
# How long a finished (or never started) exec stays inspectable.
EXEC_RETENTION = 300.0
# Docker's health check output limit (maxOutputLen).
PROBE_OUTPUT_LIMIT = 4096
_CLEANUP_TIMEOUT = 5.0
# Docker's exit code for an exec that failed to start for any reason but "not found" (127).
EXEC_START_FAILED = 126

Deliver = Callable[[str, bytes], Awaitable[None]]


@dataclass(frozen=True)
class ExecCommand:
    """What to run in the container: the process part of Docker's ExecConfig.

    An empty `user` or `workdir` means the container's. `env` entries
    override the container's by key; a bare `KEY` removes it.
    """

    argv: tuple[str, ...]
    env: tuple[str, ...] = ()
    user: str = ""
    workdir: str = ""
    tty: bool = False
    stdin: bool = False


def new_exec_id() -> str:
    return secrets.token_hex(32)


def merge_env(*layers: Sequence[str]) -> tuple[str, ...]:
    """Docker's ReplaceOrAppendEnvValues over each layer in turn: later keys win, `KEY` alone removes KEY."""
    env: dict[str, str] = {}
    for layer in layers:
        for item in layer:
            key, sep, value = item.partition("=")
            if sep:
                env[key] = value
            else:
                env.pop(key, None)
    return tuple(f"{key}={value}" for key, value in env.items())


def build_exec_spec(
    container: Container,
    command: ExecCommand,
    exec_id: str,
    *,
    detach: bool = False,
    console_size: tuple[int, int] | None = None,
) -> ExecSpec:
    """The launcher's ExecSpec: the container's environment, user, directory and privileges, the exec's overrides."""
    spec = container.spec
    hostname = spec.hostname or container.short_id
    # Docker's CreateDaemonEnvironment (PATH, HOSTNAME, TERM with a tty), then the container's env, then the exec's.
    defaults = [f"PATH={DEFAULT_PATH}", f"HOSTNAME={hostname}", *(["TERM=xterm"] if command.tty else [])]
    return ExecSpec(
        container_id=container.id,
        exec_id=exec_id,
        args=command.argv,
        env=merge_env(defaults, spec.env, command.env),
        cwd=command.workdir or spec.working_dir or "/",
        user=command.user or spec.user,
        capabilities=tuple(sorted(resolve_capabilities(spec.cap_add, spec.cap_drop))),
        cgroup=container.cgroup.membership() if container.cgroup is not None else None,
        no_new_privileges=spec.no_new_privileges,
        tty=command.tty and not detach,
        open_stdin=command.stdin and not detach,
        detach=detach,
        console_size=console_size,
    )


def check_running(container: Container) -> None:
    """Docker's refusals for an exec into a container that is not running."""
    if container.removed:
        raise NotFound(f"No such container: {container.id}")
    status = container.state.status
    if status == "paused":
        raise Conflict(f"Container {container.id} is paused, unpause the container before exec")
    if status == "restarting":
        raise Conflict(f"Container {container.id} is restarting, wait until the container is running")
    if status != "running" or container.process is None:
        raise Conflict(f"Container {container.id} is not running")


class ExecProcess:
    """A process started in a container by `spawn_exec`.

    `stdout`/`stderr`/`stdin` are trio streams over its pipes, or `pty`
    (read its output, write its input) with a tty; all None when detached.
    `wait()` gives the exit status once the launcher has reaped it (and
    then tells the launcher to forget it); `exited` is set at that point.
    `aclose()` releases everything and, if the process has not been seen
    to exit, kills it: every ExecProcess must be closed, or waited for and
    its stdio closed.
    """

    def __init__(self, launcher: LauncherClient, exec_id: str, started: ExecStarted) -> None:
        self.exec_id = exec_id
        self.pid = started.pid
        self._launcher = launcher
        self._pidfd: int | None = started.pidfd
        self.stdin = trio.lowlevel.FdStream(started.stdin_fd) if started.stdin_fd is not None else None
        self.stdout = trio.lowlevel.FdStream(started.stdout_fd) if started.stdout_fd is not None else None
        self.stderr = trio.lowlevel.FdStream(started.stderr_fd) if started.stderr_fd is not None else None
        self.pty = trio.lowlevel.FdStream(started.pty_fd) if started.pty_fd is not None else None
        self.status: ExitStatus | None = None
        self.exited = trio.Event()
        self._wait_lock = trio.Lock()

    def kill(self, signum: int = signal.SIGKILL) -> None:
        """Signal the process through its pidfd; a no-op once it has exited."""
        if self._pidfd is None or self.status is not None:
            return
        try:
            signal.pidfd_send_signal(self._pidfd, signum)
        except ProcessLookupError:
            pass

    def resize(self, rows: int, columns: int) -> None:
        check_window(rows, columns)
        if self.pty is None:
            raise Conflict(f"exec {self.exec_id} has no TTY")
        set_window(self.pty.fileno(), rows, columns)

    async def wait(self) -> ExitStatus:
        async with self._wait_lock:
            if self.status is None:
                self.status = await self._wait_for_exit()
                self.exited.set()
                self._close_pidfd()
                with trio.CancelScope(shield=True), trio.move_on_after(_CLEANUP_TIMEOUT):
                    try:
                        await self._launcher.forget_exec(self.exec_id)
                    except (LauncherLost, RuntimeError) as err:
                        log.warning("exec.forget_failed", exec_id=self.exec_id, error=str(err))
            return self.status

    async def _wait_for_exit(self) -> ExitStatus:
        try:
            status = await self._launcher.wait_exec(self.exec_id)
        except LauncherLost:
            status = None
            if self._pidfd is not None:
                # Without the launcher, the pidfd still says when the process is gone.
                await trio.lowlevel.wait_readable(self._pidfd)
        return status or ExitStatus.unknown()

    def close_stdio(self) -> None:
        for stream in self._streams():
            stream.close()

    async def aclose(self) -> None:
        """Close the stdio; kill and forget the process if it has not been seen to exit. Shielded."""
        self.close_stdio()
        if self.status is None:
            self.kill()
            with trio.CancelScope(shield=True), trio.move_on_after(_CLEANUP_TIMEOUT):
                try:
                    await self._launcher.forget_exec(self.exec_id, kill=True)
                except (LauncherLost, RuntimeError) as err:
                    log.warning("exec.forget_failed", exec_id=self.exec_id, error=str(err))
        self._close_pidfd()

    def _close_pidfd(self) -> None:
        if self._pidfd is not None:
            fd, self._pidfd = self._pidfd, None
            trio.lowlevel.notify_closing(fd)
            os.close(fd)

    def _streams(self) -> Iterator[trio.lowlevel.FdStream]:
        for stream in (self.stdin, self.stdout, self.stderr, self.pty):
            if stream is not None:
                yield stream


async def spawn_exec(
    engine: Engine,
    container: Container,
    command: ExecCommand,
    *,
    exec_id: str | None = None,
    detach: bool = False,
    console_size: tuple[int, int] | None = None,
) -> ExecProcess:
    """Start `command` in the running `container`; answered once it is exec'd.

    Raises Conflict (Docker's messages) if the container is not running,
    StartFailed (exit code 127: command not found; 126: anything else that
    stopped the exec) if it could not start. Cancelled while starting, the
    process is killed. The caller owns the returned ExecProcess.
    """
    if not command.argv:
        raise InvalidArgument("No exec command specified")
    check_running(container)
    exec_id = exec_id or new_exec_id()
    spec = build_exec_spec(container, command, exec_id, detach=detach, console_size=console_size)
    process = container.process
    if process is None or not process.orphaned:
        started = await engine.launcher.exec(spec)
    else:
        # A copy taken now: the supervision task closes its own when the container exits, and the
        # number could name another process's pidfd by the time the request goes out.
        lent = os.dup(process.pidfd)
        try:
            started = await engine.launcher.exec(spec, container_pidfd=lent)
        finally:
            os.close(lent)
    return ExecProcess(engine.launcher, exec_id, started)


async def pump_output(process: ExecProcess, deliver: Deliver, *, grace: float = OUTPUT_GRACE) -> None:
    """Hand the process's output to `deliver(stream, chunk)`, one call at a time.

    `stream` is "stdout" or "stderr" (a pty's output is "stdout"). Returns
    at EOF on every output, or `grace` seconds after the process has exited
    (someone must be in `wait()` for that) if a background child still
    holds an output open.
    """
    sources = [(name, s) for name, s in (("stdout", process.stdout), ("stderr", process.stderr)) if s is not None]
    if process.pty is not None:
        sources = [("stdout", process.pty)]
    if not sources:
        return
    remaining = len(sources)
    # One chunk at a time: `deliver` usually writes to one connection.
    delivering = trio.Lock()
    async with trio.open_nursery() as nursery:

        async def pump(name: str, source: trio.lowlevel.FdStream) -> None:
            nonlocal remaining
            while True:
                try:
                    chunk = await source.receive_some(65536)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    chunk = b""  # a pty master reads EIO once the last slave is closed
                if not chunk:
                    break
                async with delivering:
                    await deliver(name, chunk)
            remaining -= 1
            if remaining == 0:
                nursery.cancel_scope.cancel()

        async def stop_after_exit() -> None:
            await process.exited.wait()
            await trio.sleep(grace)
            nursery.cancel_scope.cancel()

        for name, source in sources:
            nursery.start_soon(pump, name, source)
        nursery.start_soon(stop_after_exit)


# -- probes --------------------------------------------------------------------


@dataclass(frozen=True)
class ProbeResult:
    """What `run_in_container` saw.

    `exit_code` is the command's; 126 or 127 if it could not start (then
    `output` is the reason), and -1 if it timed out (Docker's health
    check convention). `output` is stdout and stderr as they came, the
    first `output_limit` bytes with "..." after them if there was more.
    """

    exit_code: int
    output: str
    timed_out: bool


class _LimitedBuffer:
    """Docker's health-check buffer: keeps the first `limit` bytes, notes that more came."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._data = bytearray()
        self._truncated = False

    async def write(self, _stream: str, chunk: bytes) -> None:
        room = self._limit - len(self._data)
        self._data += chunk[: max(room, 0)]
        if len(chunk) > room:
            self._truncated = True

    def text(self) -> str:
        text = self._data.decode("utf-8", errors="replace")
        return text + "..." if self._truncated else text


async def run_in_container(
    engine: Engine,
    container: Container,
    argv: Sequence[str],
    *,
    timeout: float,
    output_limit: int = PROBE_OUTPUT_LIMIT,
    user: str = "",
    env: Sequence[str] = (),
) -> ProbeResult:
    """Run `argv` in the container's namespaces and cgroup to completion, killed at `timeout` seconds.

    Raises Conflict if the container is not running (nothing was run);
    everything else is in the result. The output never reaches the
    container's log. Cancelling the caller kills the process too.
    """
    deadline = trio.current_time() + (timeout if timeout > 0 else math.inf)
    buffer = _LimitedBuffer(output_limit)
    command = ExecCommand(argv=tuple(argv), user=user, env=tuple(env))
    process: ExecProcess | None = None
    with trio.move_on_at(deadline):
        try:
            process = await spawn_exec(engine, container, command)
        except StartFailed as err:
            await buffer.write("stderr", str(err).encode())
            return ProbeResult(exit_code=err.exit_code, output=buffer.text(), timed_out=False)
    if process is None:
        # Timed out before the exec happened: the launcher client has killed it already.
        return ProbeResult(exit_code=-1, output="", timed_out=True)
    try:
        status: ExitStatus | None = None
        with trio.move_on_at(deadline):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(pump_output, process, buffer.write)
                status = await process.wait()
        if status is None:
            process.kill()
            with trio.CancelScope(shield=True), trio.move_on_after(_CLEANUP_TIMEOUT):
                await process.wait()
            return ProbeResult(exit_code=-1, output=buffer.text(), timed_out=True)
        return ProbeResult(exit_code=status.exit_code, output=buffer.text(), timed_out=False)
    finally:
        await process.aclose()
