"""stats: Docker's StatsJSON from the container's cgroup, one-shot, one sample or a stream."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from harness import DOCKER, Daemon

from supervisor.hostinfo import HostFacts, system_cpu_ns
from supervisor.isolation.cgroups.fs import parse_max
from supervisor.isolation.cgroups.interface import CpuStats, IoBytes, Usage
from supervisor.isolation.cgroups.v1 import blkio
from supervisor.isolation.cgroups.v1 import cpu as v1_cpu
from supervisor.isolation.cgroups.v1 import memory as v1_memory
from supervisor.isolation.cgroups.v2 import cpu as v2_cpu
from supervisor.isolation.cgroups.v2 import io as v2_io

needs_docker = pytest.mark.skipif(DOCKER is None, reason="the docker CLI is not installed")
MIB = 1 << 20


def _stats(d: Daemon, ref: str, **query: str) -> dict[str, Any]:
    response = d.api("GET", f"/containers/{ref}/stats", query={"stream": "false", **query})
    assert response.ok, response.message
    return dict(response.json())


def test_a_limited_busy_container(clean: Daemon) -> None:
    limits = ["--memory", "64m", "--pids-limit", "30", "--cpus", "0.5"]
    ran = clean.corral("run", "-d", "--name", "busy", *limits, "busybox", "sh", "-c", "while :; do :; done")
    assert ran.returncode == 0, ran.stderr
    container_id = ran.stdout.strip()

    sample = _stats(clean, "busy")
    assert (sample["name"], sample["id"]) == ("/busy", container_id)
    assert sample["memory_stats"]["limit"] == 64 * MIB and 0 < sample["memory_stats"]["usage"] < 64 * MIB
    assert (
        "total_inactive_file" in sample["memory_stats"]["stats"] or "inactive_file" in sample["memory_stats"]["stats"]
    )
    assert sample["pids_stats"] == {"current": 1, "limit": 30}
    cpu, before = sample["cpu_stats"], sample["precpu_stats"]
    # Without one-shot the sample waits an interval, so a client has two to compute CPU % from.
    assert sample["preread"] != "0001-01-01T00:00:00Z" and sample["preread"] < sample["read"]
    assert cpu["cpu_usage"]["total_usage"] > before["cpu_usage"]["total_usage"] > 0
    assert cpu["system_cpu_usage"] > before["system_cpu_usage"] > 0 and cpu["online_cpus"] >= 1
    assert cpu["throttling_data"]["throttled_periods"] > 0

    once = _stats(clean, "busy", **{"one-shot": "true"})
    assert once["preread"] == "0001-01-01T00:00:00Z" and once["precpu_stats"]["cpu_usage"]["total_usage"] == 0
    assert once["cpu_stats"]["cpu_usage"]["total_usage"] > 0

    # A stream: a sample a second, each with the one before as its precpu_stats.
    with clean.client() as client, client.stream("GET", "/containers/busy/stats", timeout=10) as response:
        assert response.ok
        lines: list[dict[str, Any]] = []
        buffer = b""
        for chunk in response.iter_chunks():
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                lines.append(json.loads(line))
            if len(lines) >= 2:
                break
    first, second = lines
    assert second["preread"] == first["read"] and second["precpu_stats"] == first["cpu_stats"]

    # A stream ends when its container is removed.
    with clean.client() as client, client.stream("GET", "/containers/busy/stats", timeout=10) as response:
        chunks = response.iter_chunks()
        next(chunks)
        assert clean.corral("rm", "-f", "busy").returncode == 0
        for _ in chunks:
            pass
        assert response.complete


@needs_docker
def test_docker_stats(clean: Daemon) -> None:
    assert clean.docker("run", "-d", "--name", "watched", "--memory", "32m", "busybox", "sleep", "600").returncode == 0
    assert clean.docker("create", "--name", "never", "busybox", "true").returncode == 0
    shown = clean.docker("stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}} {{.PIDs}}", "watched", "never")
    assert shown.returncode == 0, shown.stderr
    rows = dict(line.split(" ", 1) for line in shown.stdout.splitlines())
    assert rows["watched"].endswith("/ 32MiB 1") and rows["never"] == "0B / 0B 0"
    missing = clean.docker("stats", "--no-stream", "nosuch")
    assert missing.returncode == 1 and "No such container: nosuch" in missing.stderr
    assert clean.docker("rm", "-f", "watched", "never").returncode == 0


def test_a_container_that_is_not_running(clean: Daemon) -> None:
    assert clean.corral("create", "--name", "idle", "busybox", "true").returncode == 0
    started = time.monotonic()
    sample = _stats(clean, "idle")
    assert time.monotonic() - started < 0.9  # nothing to wait an interval for
    assert sample["name"] == "/idle" and sample["read"] == "0001-01-01T00:00:00Z"
    assert sample["memory_stats"] == {} and sample["pids_stats"] == {}
    assert clean.api("GET", "/containers/nosuch/stats").status == 404
    assert clean.corral("rm", "idle").returncode == 0


# -- pure parts ------------------------------------------------------------------


def test_cgroup_file_parsing() -> None:
    assert v1_cpu.times_usec("user 250\nsystem 50\n", 100) == (2_500_000, 500_000)
    assert v2_cpu.times_usec("usage_usec 10\nuser_usec 7\nsystem_usec 3\n") == (7, 3)
    assert v1_memory.limit_of("9223372036854771712\n") is None and v1_memory.limit_of("67108864") == 64 * MIB
    assert parse_max("max\n") is None and parse_max("1048576\n") == MIB  # v2 memory.max
    assert parse_max("max\n") is None and parse_max("30\n") == 30  # pids.max
    assert blkio.service_bytes("8:0 Read 4096\n8:0 Write 512\n8:0 Sync 1\n8:0 Total 4608\nTotal 4608\n") == (
        IoBytes(8, 0, "read", 4096),
        IoBytes(8, 0, "write", 512),
    )
    assert v2_io.service_bytes("259:0 rbytes=10 wbytes=20 rios=1 wios=2 dbytes=0 dios=0\n\n") == (
        IoBytes(259, 0, "read", 10),
        IoBytes(259, 0, "write", 20),
    )
    # user nice system idle iowait irq softirq (steal and the rest are left out, as moby does)
    assert system_cpu_ns("cpu  1 2 3 4 5 6 7 100 0 0\ncpu0 1 1 1 1 1 1 1\n", 100) == 28 * 10_000_000


def test_stats_json_shape() -> None:
    from supervisor.reactor.stats import stats_json

    class Named:
        id = "c" * 64
        name = "shape"

    usage = Usage(
        cpu=CpuStats(usage_usec=5, nr_periods=2, nr_throttled=1, throttled_usec=3),
        user_usec=4,
        system_usec=1,
        memory=100,
        memory_limit=None,
        memory_max=200,
        memory_failcnt=0,
        memory_stat={"total_inactive_file": 10},
        pids=2,
        pids_limit=None,
        io=(IoBytes(8, 0, "read", 7),),
    )
    host = HostFacts.read()
    body = stats_json(Named(), usage, 1000, None, read="2026-01-01T00:00:00Z", host=host)  # type: ignore[arg-type]
    assert body["cpu_stats"]["cpu_usage"] == {
        "total_usage": 5000,
        "usage_in_kernelmode": 1000,
        "usage_in_usermode": 4000,
    }
    assert body["cpu_stats"]["throttling_data"] == {"periods": 2, "throttled_periods": 1, "throttled_time": 3000}
    assert body["memory_stats"]["limit"] > 0 and body["memory_stats"]["max_usage"] == 200  # the host's memory
    assert body["pids_stats"] == {"current": 2}
    assert body["blkio_stats"]["io_service_bytes_recursive"] == [{"major": 8, "minor": 0, "op": "read", "value": 7}]
    later = stats_json(Named(), usage, 2000, body, read="2026-01-01T00:00:01Z", host=host)  # type: ignore[arg-type]
    assert later["preread"] == body["read"] and later["precpu_stats"] == body["cpu_stats"]


def test_corral_stats(clean: Daemon) -> None:
    assert clean.corral("run", "-d", "--name", "counted", "--memory", "32m", "busybox", "sleep", "600").returncode == 0
    shown = clean.corral("stats", "--no-stream")
    assert shown.returncode == 0, shown.stderr
    header, row = shown.stdout.splitlines()
    assert header.split("   ")[0] == "CONTAINER ID" and "MEM USAGE / LIMIT" in header
    assert row.split()[1] == "counted" and "/ 32MiB" in row and row.split()[-1] == "1"
    missing = clean.corral("stats", "--no-stream", "nosuch")
    assert missing.returncode == 1 and "No such container: nosuch" in missing.stderr
    assert clean.corral("rm", "-f", "counted").returncode == 0


def test_stats_row_as_the_docker_cli_computes_it() -> None:
    from supervisor.cli.stats import stats_row

    sample = {
        "id": "a" * 64,
        "name": "/web",
        "cpu_stats": {"cpu_usage": {"total_usage": 300}, "system_cpu_usage": 2000, "online_cpus": 2},
        "precpu_stats": {"cpu_usage": {"total_usage": 100}, "system_cpu_usage": 1000},
        "memory_stats": {"usage": 3 * MIB, "limit": 64 * MIB, "stats": {"total_inactive_file": MIB}},
        "blkio_stats": {"io_service_bytes_recursive": [{"op": "Read", "value": 2000}, {"op": "write", "value": 5}]},
        "pids_stats": {"current": 3},
    }
    assert stats_row(sample) == ["a" * 12, "web", "40.00%", "2MiB / 64MiB", "3.12%", "0B / 0B", "2kB / 5B", "3"]
