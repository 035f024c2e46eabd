"""`stats`: a container's resource use in the shape of Docker's StatsJSON.

Each sample reads the container's cgroup (`Cgroup.usage`) and the host's
CPU time; `precpu_stats` is the sample before, so a client computes
CPU % from the two as the docker CLI does. A stream yields a sample every
second (moby's collector interval); `stream=false` waits one interval so
its single sample has a `precpu_stats`, unless `one-shot` asks for it at
once. A container that is not running reads as moby's empty sample; a
stream ends when its container is removed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import trio

from supervisor.hostinfo import HostFacts, read_system_cpu_ns
from supervisor.isolation.cgroups.interface import Usage
from supervisor.reactor.container import Container
from supervisor.timestamps import now_rfc3339

INTERVAL = 1.0
ZERO_TIME = "0001-01-01T00:00:00Z"
_BLKIO_LISTS = (
    "io_service_bytes_recursive",
    "io_serviced_recursive",
    "io_queue_recursive",
    "io_service_time_recursive",
    "io_wait_time_recursive",
    "io_merged_recursive",
    "io_time_recursive",
    "sectors_recursive",
)


async def container_stats(container: Container, *, stream: bool, one_shot: bool) -> AsyncIterator[dict[str, Any]]:
    host = HostFacts.read()
    previous = _sample(container, host, None)
    if not stream:
        if not one_shot and container.state.status in ("running", "paused"):
            await trio.sleep(INTERVAL)
            previous = _sample(container, host, previous)
        yield previous
        return
    while not container.removed:
        yield previous
        await trio.sleep(INTERVAL)
        previous = _sample(container, host, previous)


def _sample(container: Container, host: HostFacts, previous: dict[str, Any] | None) -> dict[str, Any]:
    cgroup = container.cgroup
    usage: Usage | None = None
    if container.state.running and cgroup is not None:
        try:
            usage = cgroup.usage()
        except OSError:
            usage = None  # the container exited under us: its cgroup is going
    if usage is None:
        return empty_stats(container)
    return stats_json(container, usage, read_system_cpu_ns(), previous, read=now_rfc3339(), host=host)


def empty_stats(container: Container) -> dict[str, Any]:
    """moby's answer for a container that is not running: the zero StatsJSON with its name and ID."""
    return {
        "read": ZERO_TIME,
        "preread": ZERO_TIME,
        "pids_stats": {},
        "blkio_stats": dict.fromkeys(_BLKIO_LISTS),
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": _zero_cpu(),
        "precpu_stats": _zero_cpu(),
        "memory_stats": {},
        "name": f"/{container.name}",
        "id": container.id,
    }


def stats_json(
    container: Container,
    usage: Usage,
    system_cpu_ns: int,
    previous: dict[str, Any] | None,
    *,
    read: str,
    host: HostFacts,
) -> dict[str, Any]:
    """One sample (pure): Docker's field names and units (nanoseconds for CPU, bytes for memory)."""
    body = empty_stats(container)
    body["read"] = read
    if previous is not None and previous["read"] != ZERO_TIME:
        body["preread"] = previous["read"]
        body["precpu_stats"] = previous["cpu_stats"]
    body["cpu_stats"] = {
        "cpu_usage": {
            "total_usage": usage.cpu.usage_usec * 1000,
            "usage_in_kernelmode": usage.system_usec * 1000,
            "usage_in_usermode": usage.user_usec * 1000,
        },
        "system_cpu_usage": system_cpu_ns,
        "online_cpus": host.cpus,
        "throttling_data": {
            "periods": usage.cpu.nr_periods,
            "throttled_periods": usage.cpu.nr_throttled,
            "throttled_time": usage.cpu.throttled_usec * 1000,
        },
    }
    memory: dict[str, Any] = {"usage": usage.memory, "stats": usage.memory_stat}
    if usage.memory_max is not None:
        memory["max_usage"] = usage.memory_max
    if usage.memory_failcnt is not None:
        memory["failcnt"] = usage.memory_failcnt
    # As moby: no limit (or one above the host's memory) reads as the host's memory.
    limit = usage.memory_limit
    memory["limit"] = host.memory if limit is None or (host.memory and limit > host.memory) else limit
    body["memory_stats"] = memory
    body["pids_stats"] = {"current": usage.pids} | ({"limit": usage.pids_limit} if usage.pids_limit else {})
    if usage.io:
        body["blkio_stats"]["io_service_bytes_recursive"] = [
            {"major": io.major, "minor": io.minor, "op": io.op, "value": io.value} for io in usage.io
        ]
    return body


def _zero_cpu() -> dict[str, Any]:
    return {
        "cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
        "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
    }
