"""Small pieces the supervisor benches share: API calls, statistics, tables, run metadata, teardown."""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from services import REPO, CorralDaemon, ServiceError

from supervisor.cli.client import Client, ClientResponse


def api(socket_path: Path, method: str, path: str, **kwargs: Any) -> ClientResponse:
    """One request on a fresh connection (corral or dockerd: both speak Docker's API on a unix socket).

    A fresh Client each time: a reused one whose previous request had a
    timeout waits out that timeout before its next request (see README).
    """
    with Client(socket_path) as client:
        return client.request(method, path, **kwargs)


def api_json(socket_path: Path, method: str, path: str, **kwargs: Any) -> Any:
    response = api(socket_path, method, path, **kwargs)
    if not response.ok:
        raise RuntimeError(f"{method} {path} on {socket_path}: {response.status} {response.message}")
    return response.json()


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def p99(values: Sequence[float]) -> float | None:
    """The 99th percentile, interpolated; with fewer than 100 samples it lies near the maximum."""
    if len(values) < 2:
        return values[0] if values else None
    return statistics.quantiles(values, n=100, method="inclusive")[98]


def ratio(ours: float | None, theirs: float | None) -> float | None:
    if ours is None or theirs is None or theirs == 0:
        return None
    return ours / theirs


def fmt(value: float | None, digits: int = 1, suffix: str = "") -> str:
    return "-" if value is None else f"{value:.{digits}f}{suffix}"


def fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def render_table(header: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> str:
    """Columns padded to their widest cell; the first `left` columns left-aligned, the rest right-aligned."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = []
    for n, row in enumerate([header, *rows]):
        cells = [c.ljust(widths[i]) if i < left else c.rjust(widths[i]) for i, c in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def run_meta(**extra: Any) -> dict[str, Any]:
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "host": {
            "kernel": platform.release(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
        },
        "corral_commit": subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
        "corral_tree_dirty": bool(
            subprocess.run(
                ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no", "supervisor"],
                capture_output=True,
                text=True,
            ).stdout.strip()
        ),
        **extra,
    }


def check_prerequisites(name: str) -> int | None:
    """An exit status if the bench cannot run here (not root, not the project's venv), else None."""
    if os.geteuid() != 0:
        print(f"{name}: must run as root (containers, cgroups, dockerd)", file=sys.stderr)
        return 2
    try:
        import supervisor  # noqa: F401
    except ImportError:
        print(f"{name}: run it with the project's venv: .venv/bin/python bench/{name}.py", file=sys.stderr)
        return 2
    return None


class Teardown:
    """(name, stop) pairs in start order; run() calls them in reverse and collects their problems."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, Callable[[], list[str] | None]]] = []

    def add(self, name: str, stop: Callable[[], list[str] | None]) -> None:
        self.steps.append((name, stop))

    def run(self) -> list[str]:
        problems: list[str] = []
        for name, stop in reversed(self.steps):
            try:
                problems.extend(stop() or [])
            except Exception as err:  # noqa: BLE001 - tear down the rest regardless
                problems.append(f"stopping {name} failed: {type(err).__name__}: {err}")
        self.steps.clear()
        return problems


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def quietly(stop: Callable[[], object]) -> Callable[[], list[str]]:
    """A teardown step from a stop() that reports no problems."""

    def step() -> list[str]:
        stop()
        return []

    return step


def withdraw_configs(corral: CorralDaemon, directory: Path, timeout: float = 60) -> list[str]:
    """Delete the TOML files so the daemon stops and removes what they declare; wait until no container is left.

    (Removing config-declared containers through the API would leave the reconciler free to bring them back.)
    """
    if corral.pid is None:
        return []
    for path in directory.glob("*.toml"):
        path.unlink()
    with contextlib.suppress(Exception):
        api(corral.socket, "POST", "/corral/configs/reload", timeout=timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            left = api_json(corral.socket, "GET", "/corral/configs")["Containers"]
        except Exception as err:  # noqa: BLE001
            return [f"corral: configs status failed while withdrawing: {err}"]
        if not left:
            return []
        time.sleep(0.2)
    return [f"corral: {len(left)} config containers still there {timeout:.0f} s after their files were deleted"]


def apply_toml(corral: CorralDaemon, directory: Path, timeout: float = 60) -> dict[str, str]:
    """PUT the configs dir, wait until all of it runs; name -> id."""
    api_json(corral.socket, "PUT", "/corral/configs", json={"Directory": str(directory)})
    deadline = time.monotonic() + timeout
    while True:
        status = api_json(corral.socket, "GET", "/corral/configs")
        containers = status["Containers"]
        if status["Errors"] or any(f["Errors"] for f in status["Files"]):
            raise ServiceError(f"corral rejected the bench's configs: {status['Errors'] or status['Files']}")
        if containers and all(c["State"] == "running" for c in containers):
            return {c["Name"]: c["Id"] for c in containers}
        if time.monotonic() > deadline:
            waiting = [(c["Name"], c["State"], c["Error"]) for c in containers if c["State"] != "running"]
            raise ServiceError(f"corral configs not all running after {timeout:.0f} s: {waiting[:5]}")
        time.sleep(0.1)


def _netns_holders(netns: str) -> list[tuple[int, str, str]]:
    """(pid, command line, memory cgroup line) of the live processes in network namespace `netns`."""
    holders = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.readlink(entry / "ns" / "net") != netns:
                continue
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            cgroup = (entry / "cgroup").read_text()
        except OSError:
            continue
        holders.append((int(entry.name), cmdline[:120], cgroup))
    return holders


def own_leaks(leaks: dict[str, list[str]], base: Path) -> tuple[dict[str, list[str]], list[str]]:
    """Split the leak check's new netns into ours and other sessions' (by the processes that hold them).

    Other benches and tests on the host create network namespaces while this one runs; a new netns
    is ours only if a process holding it names our base dir or sits in our cgroups. One that nobody
    holds any more was transient. Returns (leaks, notes about the foreign ones).
    """
    kept = {kind: list(items) for kind, items in leaks.items() if kind != "netns"}
    notes = []
    ours = []
    for netns in leaks.get("netns", []):
        if netns.startswith("named:"):
            ours.append(netns)
            continue
        holders = _netns_holders(netns)
        if any(str(base) in cmd or base.name in cgroup for _pid, cmd, cgroup in holders):
            ours.append(netns)
        elif holders:
            notes.append(f"{netns} is another process's, not ours: {holders[0][0]} {holders[0][1]}")
        else:
            notes.append(f"{netns} appeared during the run and is gone (someone else's, transient)")
    if ours:
        kept["netns"] = ours
    return kept, notes
