"""Health checks: probes on an interval, Docker's State.Health, and what to do when unhealthy.

One monitor task per running container with a check, in its supervision
task's nursery, so it ends with the process. Probes: exec (run in the
container's namespaces and cgroup through the launcher), tcp and http
(sockets made inside the container's network namespace, so 127.0.0.1 is
the container's own loopback). Docker's rules: a failure in the start
period does not count, a success marks the container healthy at once,
`retries` failures in a row mark it unhealthy; the last five results are
kept. Then corral acts, which Docker does not: restart, stop or kill.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import structlog
import trio

from supervisor.errors import CorralError
from supervisor.isolation.netns import socket_in_netns
from supervisor.reactor.container import Container
from supervisor.reactor.events import Event, container_attributes
from supervisor.reactor.execs import run_in_container
from supervisor.reactor.model import HealthCheck, HealthState, ProbeResult
from supervisor.reactor.stop import kill_everything, stop_container
from supervisor.timestamps import now_rfc3339

if TYPE_CHECKING:
    from supervisor.reactor.engine import Engine

log = structlog.get_logger(__name__)

_KEEP_RESULTS = 5
_OUTPUT_LIMIT = 4096


async def _connect(container: Container, host: str, port: int) -> trio.socket.SocketType:
    process = container.process
    if process is None:
        raise ConnectionError("the container is not running")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = trio.socket.from_stdlib_socket(socket_in_netns(process.pidfd, family))
    try:
        await sock.connect((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


async def _tcp_probe(container: Container, target: str) -> tuple[int, str]:
    host, _, port = target.rpartition(":")
    with await _connect(container, host.strip("[]") or "127.0.0.1", int(port)):
        return 0, f"connected to {target}"


async def _http_probe(container: Container, url: str) -> tuple[int, str]:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    with await _connect(container, host, parts.port or 80) as sock:
        request = f"GET {path} HTTP/1.0\r\nHost: {parts.netloc}\r\nUser-Agent: corral-health\r\n\r\n"
        await sock.send(request.encode())
        head = b""
        while b"\r\n" not in head and len(head) < _OUTPUT_LIMIT:
            chunk = await sock.recv(_OUTPUT_LIMIT)
            if not chunk:
                break
            head += chunk
    status_line = head.split(b"\r\n", 1)[0].decode(errors="replace")
    fields = status_line.split()
    if len(fields) < 2 or not fields[1].isdigit():
        return 1, f"bad HTTP answer from {url}: {status_line!r}"
    code = int(fields[1])
    return (0 if 200 <= code < 400 else 1), status_line


async def run_probe(engine: Engine, container: Container, check: HealthCheck) -> tuple[int, str]:
    """(exit code, output) of one probe: 0 healthy, 1 unhealthy; a timeout is a failure."""
    if check.kind == "exec":
        try:
            result = await run_in_container(engine, container, check.argv, timeout=check.timeout)
        except CorralError as err:
            return 1, f"exec probe failed: {err}"
        if result.timed_out:
            return 1, f"Health check exceeded timeout ({check.timeout:g}s)"
        return (0 if result.exit_code == 0 else 1), result.output
    probe = _tcp_probe if check.kind == "tcp" else _http_probe
    with trio.move_on_after(check.timeout) as timer:
        try:
            return await probe(container, check.target)
        except (OSError, ValueError, CorralError) as err:
            return 1, f"{check.kind} probe of {check.target} failed: {err}"
    assert timer.cancelled_caught
    return 1, f"Health check exceeded timeout ({check.timeout:g}s)"


def _record(container: Container, health: HealthState, result: ProbeResult, *, counts: bool) -> HealthState:
    log_ = (*health.log, result)[-_KEEP_RESULTS:]
    if result.exit_code == 0:
        return HealthState(status="healthy", failing_streak=0, log=log_)
    if not counts:
        return HealthState(status=health.status, failing_streak=health.failing_streak, log=log_)
    streak = health.failing_streak + 1
    check = container.spec.health
    assert check is not None
    status = "unhealthy" if streak >= check.retries else health.status
    return HealthState(status=status, failing_streak=streak, log=log_)


async def monitor_health(engine: Engine, container: Container, check: HealthCheck) -> None:
    """Probe until cancelled (the supervision task cancels it when the process exits)."""
    began = trio.current_time()
    container.transition(container.state.evolve(health=HealthState()))
    while True:
        await trio.sleep(check.interval)
        if container.state.status == "paused":
            continue  # a probe cannot run in a frozen container; a pause is no failure
        pauses = container.pauses
        start = now_rfc3339()
        exit_code, output = await run_probe(engine, container, check)
        if container.pauses != pauses:
            continue  # the pause froze the probe too: its timeout says nothing of the container
        result = ProbeResult(start=start, end=now_rfc3339(), exit_code=exit_code, output=output[-_OUTPUT_LIMIT:])
        in_start_period = trio.current_time() - began < check.start_period
        before = container.state.health or HealthState()
        after = _record(container, before, result, counts=not in_start_period)
        container.transition(container.state.evolve(health=after))
        if after.status != before.status:
            engine.events.publish(
                Event("container", f"health_status: {after.status}", container.id, container_attributes(container))
            )
            if after.status == "unhealthy":
                act_on_unhealthy(engine, container, check)


def act_on_unhealthy(engine: Engine, container: Container, check: HealthCheck) -> None:
    """Start the action in the engine's nursery: it waits for the exit this monitor will not see."""
    log.info("container.unhealthy", id=container.id, action=check.on_unhealthy)
    if check.on_unhealthy == "restart":
        container.restart_requested = True
        engine.nursery.start_soon(_stop_quietly, engine, container, False)
    elif check.on_unhealthy == "stop":
        engine.nursery.start_soon(_stop_quietly, engine, container, True)
    elif check.on_unhealthy == "kill":
        # Not a manual stop: the restart policy decides what follows.
        kill_everything(container)


async def _stop_quietly(engine: Engine, container: Container, manual: bool) -> None:
    try:
        await stop_container(engine, container, manual=manual)
    except CorralError as err:
        log.info("container.unhealthy_stop_skipped", id=container.id, reason=str(err))
