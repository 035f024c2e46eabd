"""`corral stats`: the columns `docker stats` shows, computed from the API's samples as it does."""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from typing import Any

from supervisor.cli.client import Client
from supervisor.cli.context import CliContext, CommandFailed
from supervisor.cli.output import table
from supervisor.humanize import binary_size, human_size

HEADERS = ("CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O", "BLOCK I/O", "PIDS")


def stats_row(sample: dict[str, Any]) -> list[str]:
    """One row from one StatsJSON sample (pure): CPU % from the sample and its precpu_stats, memory
    without the inactive page cache, as the docker CLI computes them."""
    cpu, before = sample["cpu_stats"], sample["precpu_stats"]
    cpu_delta = cpu["cpu_usage"]["total_usage"] - before["cpu_usage"]["total_usage"]
    system_delta = cpu.get("system_cpu_usage", 0) - before.get("system_cpu_usage", 0)
    cpu_percent = 0.0
    if cpu_delta > 0 and system_delta > 0:
        cpu_percent = cpu_delta / system_delta * cpu.get("online_cpus", 1) * 100
    memory = sample["memory_stats"]
    used = memory.get("usage", 0)
    stat = memory.get("stats", {})
    inactive = stat.get("total_inactive_file", stat.get("inactive_file", 0))
    if inactive < used:
        used -= inactive
    limit = memory.get("limit", 0)
    read = written = 0
    for entry in sample["blkio_stats"].get("io_service_bytes_recursive") or []:
        if entry["op"][:1] in ("r", "R"):
            read += entry["value"]
        elif entry["op"][:1] in ("w", "W"):
            written += entry["value"]
    return [
        sample["id"][:12],
        sample["name"].lstrip("/"),
        f"{cpu_percent:.2f}%",
        f"{binary_size(used)} / {binary_size(limit)}",
        f"{used / limit * 100 if limit else 0:.2f}%",
        "0B / 0B",
        f"{human_size(read)} / {human_size(written)}",
        str(sample["pids_stats"].get("current", 0)),
    ]


def cmd_stats(ctx: CliContext, args: argparse.Namespace) -> int:
    with ctx.client() as client:
        refs = args.containers or _listed(client, show_all=args.all)
    if args.no_stream:
        table(HEADERS, [stats_row(sample) for sample in _one_sample_each(ctx, refs)])
        return 0
    latest: dict[str, list[str]] = {}
    lock = threading.Lock()
    followers = [threading.Thread(target=_follow, args=(ctx, ref, latest, lock), daemon=True) for ref in refs]
    for follower in followers:
        follower.start()
    try:
        while any(f.is_alive() for f in followers):
            time.sleep(1.0)
            with lock:
                rows = [latest[ref] for ref in refs if ref in latest]
            if sys.stdout.isatty():
                sys.stdout.write("\033[H\033[J")
            table(HEADERS, rows)
            sys.stdout.flush()
    except KeyboardInterrupt:
        pass
    return 0


def _listed(client: Client, *, show_all: bool) -> list[str]:
    response = client.request("GET", "/containers/json", query={"all": show_all})
    if not response.ok:
        raise CommandFailed(f"Error response from daemon: {response.message}", 1)
    return [str(c["Id"]) for c in response.json()]


def _one_sample_each(ctx: CliContext, refs: list[str]) -> list[dict[str, Any]]:
    """Each container's sample, asked for all at once: each waits an interval for its precpu."""
    samples: dict[str, dict[str, Any]] = {}
    failures: dict[str, str] = {}

    def ask(ref: str) -> None:
        with ctx.client() as client:
            response = client.request("GET", f"/containers/{ref}/stats", query={"stream": False})
        if response.ok:
            samples[ref] = response.json()
        else:
            failures[ref] = response.message

    askers = [threading.Thread(target=ask, args=(ref,)) for ref in refs]
    for asker in askers:
        asker.start()
    for asker in askers:
        asker.join()
    if failures:
        raise CommandFailed("\n".join(f"Error response from daemon: {failures[ref]}" for ref in failures), 1)
    return [samples[ref] for ref in refs]


def _follow(ctx: CliContext, ref: str, latest: dict[str, list[str]], lock: threading.Lock) -> None:
    with ctx.client() as client, client.stream("GET", f"/containers/{ref}/stats", timeout=None) as response:
        if not response.ok:
            return
        buffer = b""
        for chunk in response.iter_chunks():
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                with lock:
                    latest[ref] = stats_row(json.loads(line))


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    stats = commands.add_parser("stats", help="display a live stream of containers' resource usage")
    stats.add_argument("-a", "--all", action="store_true", help="show all containers (default shows just running)")
    stats.add_argument("--no-stream", action="store_true", help="print one sample and exit")
    stats.add_argument("containers", nargs="*")
    stats.set_defaults(func=cmd_stats)
