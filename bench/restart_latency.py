"""Restart latency: crash-to-running and health-failure-to-restart, corral against dockerd and podman in one run.

    sudo .venv/bin/python bench/restart_latency.py [-n 30] [--health-runs 20] [--skip-dockerd] [--skip-podman]

(a) crash to running. The bench `kill -9`s a container's init from the
    host and takes the times of its `die` and next `start` events (the
    engines' own timestamps). Scenarios, interleaved round by round:
      corral, TOML, `restart = always`, backoff `initial = 0` (its best case)
      corral, `docker run -d --restart always` (Docker's backoff: 100 ms first)
      dockerd, `docker run -d --restart always` (100 ms, doubling, reset after 10 s up)
      podman, `podman run -d --restart always` (restarts at once, no backoff)
    Every crash hits a container that has been up at least `--min-uptime`
    (11 s), so every restart is a first one, after the engine's initial
    delay: several containers per scenario are crashed in turn, one crash
    in flight at a time, `--gap` apart.
(b) health failure to restart. A container whose check is `test -f
    /tmp/ok` (interval 200 ms, `--retries` 3); the bench deletes the file
    through /proc/PID/root at a random phase of the interval and takes the
    times of the `health_status: unhealthy` event and of the next `start`.
      corral, TOML, `on_unhealthy = "restart"`, backoff initial 0 and 100 ms
      dockerd: reports unhealthy but cannot restart on it (moby/moby#28400)
      podman `--health-on-failure restart`: its probe timers need systemd,
      absent here, so the bench runs `podman healthcheck run` every interval.

Prints two tables and writes bench/results/restart_latency.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import leakcheck  # noqa: E402
from common import (  # noqa: E402
    Teardown,
    api_json,
    apply_toml,
    check_prerequisites,
    fmt,
    fmt_ratio,
    log,
    median,
    own_leaks,
    p99,
    quietly,
    ratio,
    render_table,
    run_meta,
    withdraw_configs,
)
from eventstream import DockerEvents, EventLog, PodmanEvents  # noqa: E402
from services import (  # noqa: E402
    BENCH_MARK,
    CorralDaemon,
    Dockerd,
    Podman,
    ServiceError,
    busybox_layer_blob,
    pid_alive,
    sigterm_as_interrupt,
)

DEFAULT_JSON = BENCH_DIR / "results" / "restart_latency.json"
IMAGE = "busybox:latest"
# Exits at once on SIGTERM (a bare `sleep` as pid 1 would ignore it until the stop timeout).
SLEEPER = "trap 'exit 0' TERM; sleep 1000000 & wait"
HEALTHY_SLEEPER = "touch /tmp/ok; " + SLEEPER
HEALTH_CMD = "test -f /tmp/ok"
DOCKER_BACKOFF = 0.1  # moby's restartmanager: 100 ms, doubling, reset after 10 s of uptime


# -- engines ----------------------------------------------------------------------------


@dataclass
class Engine:
    key: str
    events: EventLog
    pid_of: Callable[[str], int]  # container id -> host pid of its init, 0 when not running
    health_of: Callable[[str], str]  # container id -> State.Health.Status


def docker_api_engine(key: str, socket_path: Path, events: EventLog) -> Engine:
    def state(container_id: str) -> dict[str, Any]:
        result: dict[str, Any] = api_json(socket_path, "GET", f"/containers/{container_id}/json")["State"]
        return result

    def pid_of(container_id: str) -> int:
        current = state(container_id)
        return int(current.get("Pid") or 0) if current.get("Running") else 0

    def health_of(container_id: str) -> str:
        return str((state(container_id).get("Health") or {}).get("Status", ""))

    return Engine(key, events, pid_of, health_of)


def podman_engine(podman: Podman, events: EventLog) -> Engine:
    def pid_of(container_id: str) -> int:
        out = podman.cli("inspect", "--format", "{{.State.Running}} {{.State.Pid}}", container_id).stdout.split()
        return int(out[1]) if out and out[0] == "true" else 0

    def health_of(container_id: str) -> str:
        return podman.cli("inspect", "--format", "{{.State.Health.Status}}", container_id).stdout.strip()

    return Engine("podman", events, pid_of, health_of)


@dataclass
class Target:
    """One container under test: its id, the pid of its current init, when it last started (wall ns)."""

    name: str
    id: str
    pid: int
    started_ns: int
    broken: str | None = None


def refresh_pid(engine: Engine, target: Target, old_pid: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = engine.pid_of(target.id)
        if pid and pid != old_pid and pid_alive(pid):
            target.pid = pid
            return
        time.sleep(0.02)
    raise RuntimeError(f"{target.name}: no new running pid {timeout:.0f} s after its start event")


# -- scenarios ----------------------------------------------------------------------------


@dataclass
class CrashScenario:
    key: str
    label: str
    backoff_s: float
    how: str
    engine: Engine | None = None
    targets: list[Target] = field(default_factory=list)
    kill_to_start_ms: list[float] = field(default_factory=list)
    die_to_start_ms: list[float] = field(default_factory=list)
    kill_to_die_ms: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    skipped: str | None = None


@dataclass
class HealthScenario:
    key: str
    label: str
    how: str
    restarts: bool
    backoff_s: float = 0.0
    engine: Engine | None = None
    target: Target | None = None
    # Runs one probe when the engine does not (podman without systemd); None: the engine's own timer.
    probe: Callable[[str], int] | None = None
    fail_to_unhealthy_ms: list[float] = field(default_factory=list)
    unhealthy_to_start_ms: list[float] = field(default_factory=list)
    fail_to_start_ms: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    skipped: str | None = None


def build_scenarios(args: argparse.Namespace) -> tuple[dict[str, CrashScenario], dict[str, HealthScenario]]:
    crash = [
        CrashScenario("corral_toml0", "corral TOML, initial = 0", 0.0,
                      'TOML [restart] policy = "always", initial = "0s"'),
        CrashScenario("corral_docker", "corral docker run --restart always", DOCKER_BACKOFF,
                      "docker run -d --restart always (corral's default backoff, as Docker's)"),
        CrashScenario("dockerd", "dockerd docker run --restart always", DOCKER_BACKOFF,
                      "docker run -d --restart always"),
        CrashScenario("podman", "podman run --restart always", 0.0,
                      "podman run -d --restart always (conmon runs `podman container cleanup`, which restarts)"),
    ]  # fmt: skip
    interval = f"{args.interval_ms:g}ms"
    health = [
        HealthScenario("corral_h0", "corral TOML, on_unhealthy restart, initial = 0",
                       f'cmd_shell "{HEALTH_CMD}", interval {interval}, retries {args.retries}, initial = "0s", '
                       'reset_after = "0s"',
                       restarts=True),
        HealthScenario("corral_h100", "corral TOML, on_unhealthy restart, initial = 100ms",
                       f'cmd_shell "{HEALTH_CMD}", interval {interval}, retries {args.retries}, initial = "100ms", '
                       'reset_after = "0s"',
                       restarts=True, backoff_s=0.1),
        HealthScenario("dockerd_h", "dockerd --health-cmd (no restart: moby#28400)",
                       f"--health-cmd '{HEALTH_CMD}' --health-interval {interval} --health-retries {args.retries}",
                       restarts=False),
        HealthScenario("podman_h", "podman --health-on-failure restart (bench-driven probes)",
                       f"--health-on-failure restart; `podman healthcheck run` every {interval} by the bench",
                       restarts=True),
    ]  # fmt: skip
    return {s.key: s for s in crash}, {s.key: s for s in health}


# -- setting up -----------------------------------------------------------------------------


def toml_configs(crash_names: list[str], interval_ms: float, retries: int) -> str:
    sleeper = json.dumps(SLEEPER)
    parts = []
    for name in crash_names:
        parts.append(
            f'[containers.{name}]\nimage = "busybox"\ncommand = ["sh", "-c", {sleeper}]\n'
            f'[containers.{name}.restart]\npolicy = "always"\ninitial = "0s"\n'
        )
    for name, initial in (("health0", '"0s"'), ("health100", '"100ms"')):
        parts.append(
            f'[containers.{name}]\nimage = "busybox"\ncommand = ["sh", "-c", {json.dumps(HEALTHY_SLEEPER)}]\n'
            f'[containers.{name}.restart]\npolicy = "always"\ninitial = {initial}\nreset_after = "0s"\n'
            f'[containers.{name}.health]\ncmd_shell = "{HEALTH_CMD}"\ninterval = "{interval_ms:g}ms"\n'
            f'timeout = "2s"\nretries = {retries}\non_unhealthy = "restart"\n'
        )
    return "\n".join(parts)


def docker_run(env: dict[str, str], docker: str, name: str, *flags: str, command: str = SLEEPER) -> str:
    result = subprocess.run(
        [docker, "run", "-d", "--name", name, *flags, IMAGE, "sh", "-c", command],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    if result.returncode != 0:
        raise ServiceError(f"docker run {name} failed: {result.stderr.strip()}")
    return result.stdout.strip()


def make_target(engine: Engine, name: str, container_id: str) -> Target:
    target = Target(name, container_id, 0, time.time_ns())
    refresh_pid(engine, target, old_pid=-1, timeout=10)
    return target


# -- (a) crash to running -------------------------------------------------------------------


def crash_once(scenario: CrashScenario, target: Target, timeout: float) -> None:
    engine = scenario.engine
    assert engine is not None
    pid = target.pid
    t_kill = time.time_ns()
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        target.broken = f"pid {pid} was gone before the kill"
        scenario.failures.append(f"{target.name}: {target.broken}")
        return
    start = engine.events.next(target.id, "start", t_kill, timeout)
    if start is None:
        seen = [(e.action, round((e.time_ns - t_kill) / 1e6, 1)) for e in engine.events.of(target.id, t_kill)]
        target.broken = f"not running again {timeout:.0f} s after kill -9 (events since, ms after the kill: {seen})"
        scenario.failures.append(f"{target.name}: {target.broken}")
        return
    die = engine.events.wait_for(
        lambda e: e.container == target.id and e.action == "die" and t_kill <= e.time_ns <= start.time_ns, 1.0
    )
    scenario.kill_to_start_ms.append((start.time_ns - t_kill) / 1e6)
    if die is not None:
        scenario.die_to_start_ms.append((start.time_ns - die.time_ns) / 1e6)
        scenario.kill_to_die_ms.append((die.time_ns - t_kill) / 1e6)
    target.started_ns = start.time_ns
    try:
        refresh_pid(engine, target, old_pid=pid)
    except RuntimeError as err:
        target.broken = str(err)
        scenario.failures.append(str(err))


def run_crashes(scenarios: list[CrashScenario], args: argparse.Namespace) -> None:
    """Round r crashes target r % K of every scenario (order rotated each round), one crash at a time."""
    min_uptime_ns = int(args.min_uptime * 1e9)
    last_done = 0.0
    for round_no in range(args.runs):
        shift = round_no % len(scenarios)
        for scenario in scenarios[shift:] + scenarios[:shift]:
            live = [t for t in scenario.targets if t.broken is None]
            if not live:
                continue
            target = live[round_no % len(live)]
            wait_ns = target.started_ns + min_uptime_ns - time.time_ns()
            if wait_ns > 0:
                time.sleep(wait_ns / 1e9)
            pause = last_done + args.gap - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            crash_once(scenario, target, args.timeout)
            last_done = time.monotonic()
        if (round_no + 1) % 5 == 0:
            log(f"(a) {round_no + 1}/{args.runs} rounds")


# -- (b) health failure to restart ------------------------------------------------------------


def wait_healthy(scenario: HealthScenario, timeout: float = 15.0) -> bool:
    engine, target = scenario.engine, scenario.target
    assert engine is not None and target is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if scenario.probe is not None:
            if scenario.probe(target.id) == 0:
                return True
        elif engine.health_of(target.id) == "healthy":
            return True
        time.sleep(0.05)
    return False


def remove_marker(pid: int) -> int:
    """Delete /tmp/ok inside the container, through its root as the host sees it; when it happened (wall ns)."""
    os.unlink(f"/proc/{pid}/root/tmp/ok")
    return time.time_ns()


def drive_probes(scenario: HealthScenario, t_fail: int, interval: float, retries: int) -> None:
    """For an engine without its own probe timer: probe every `interval` until it restarted (or gave up)."""
    engine, target = scenario.engine, scenario.target
    assert engine is not None and target is not None and scenario.probe is not None
    for _ in range(retries + 3):
        time.sleep(interval)
        scenario.probe(target.id)
        if engine.events.next(target.id, "start", t_fail, 0) is not None:
            return


def health_once(scenario: HealthScenario, args: argparse.Namespace) -> None:
    engine, target = scenario.engine, scenario.target
    assert engine is not None and target is not None
    interval = args.interval_ms / 1000
    if not wait_healthy(scenario):
        target.broken = "not healthy within 15 s"
        scenario.failures.append(f"{target.name}: {target.broken}")
        return
    time.sleep(random.uniform(0, interval))  # a random phase of the probe interval
    t_fail = remove_marker(target.pid)
    if scenario.probe is not None:
        drive_probes(scenario, t_fail, interval, args.retries)
    patience = (interval + 2.0) * (args.retries + 2) + 10
    if scenario.probe is None:
        unhealthy = engine.events.next(target.id, "health_status: unhealthy", t_fail, patience)
    else:
        # podman publishes no `health_status: unhealthy` when it acts on it: the failing probe's exit stands in.
        start_seen = engine.events.next(target.id, "start", t_fail, patience)
        before = start_seen.time_ns if start_seen else math.inf
        probes = [
            e
            for e in engine.events.of(target.id, t_fail)
            if e.action == "exec_die" and e.attributes.get("ContainerExitCode", "0") != "0" and e.time_ns <= before
        ]
        unhealthy = probes[-1] if probes and start_seen else None
    if unhealthy is None:
        seen = [(e.action, round((e.time_ns - t_fail) / 1e6, 1)) for e in engine.events.of(target.id, t_fail)]
        target.broken = f"no unhealthy within {patience:.0f} s of the failure (events since, ms: {seen})"
        scenario.failures.append(f"{target.name}: {target.broken}")
        return
    scenario.fail_to_unhealthy_ms.append((unhealthy.time_ns - t_fail) / 1e6)
    if not scenario.restarts:
        # dockerd: put the file back and let it turn healthy again.
        Path(f"/proc/{target.pid}/root/tmp/ok").touch()
        return
    start = engine.events.next(target.id, "start", unhealthy.time_ns - 1, args.timeout)
    if start is None:
        seen = [(e.action, round((e.time_ns - t_fail) / 1e6, 1)) for e in engine.events.of(target.id, t_fail)]
        target.broken = (
            f"unhealthy but not restarted within {args.timeout:.0f} s (events since the failure, ms: {seen})"
        )
        scenario.failures.append(f"{target.name}: {target.broken}")
        return
    scenario.unhealthy_to_start_ms.append((start.time_ns - unhealthy.time_ns) / 1e6)
    scenario.fail_to_start_ms.append((start.time_ns - t_fail) / 1e6)
    old = target.pid
    target.started_ns = start.time_ns
    try:
        refresh_pid(engine, target, old_pid=old)
    except RuntimeError as err:
        target.broken = str(err)
        scenario.failures.append(str(err))


def run_health(scenarios: list[HealthScenario], args: argparse.Namespace) -> None:
    for round_no in range(args.health_runs):
        shift = round_no % len(scenarios)
        for scenario in scenarios[shift:] + scenarios[:shift]:
            if scenario.target is not None and scenario.target.broken is None:
                health_once(scenario, args)
        if (round_no + 1) % 5 == 0:
            log(f"(b) {round_no + 1}/{args.health_runs} rounds")


# -- report ----------------------------------------------------------------------------------


def crash_table(crash: dict[str, CrashScenario]) -> str:
    header = ("scenario", "backoff", "N", "kill->start med", "p99", "die->start med", "p99", "kill->die med",
              "over backoff med")  # fmt: skip
    rows = []
    for s in crash.values():
        if s.skipped:
            rows.append((s.label, fmt(s.backoff_s * 1000, 0, " ms"), "0", *["-"] * 6))
            continue
        over = [x - s.backoff_s * 1000 for x in s.kill_to_start_ms]
        rows.append(
            (
                s.label + (f" ({len(s.failures)} failed)" if s.failures else ""),
                fmt(s.backoff_s * 1000, 0, " ms"),
                str(len(s.kill_to_start_ms)),
                fmt(median(s.kill_to_start_ms)),
                fmt(p99(s.kill_to_start_ms)),
                fmt(median(s.die_to_start_ms)),
                fmt(p99(s.die_to_start_ms)),
                fmt(median(s.kill_to_die_ms)),
                fmt(median(over)),
            )
        )
    return render_table(header, rows)


def health_table(health: dict[str, HealthScenario]) -> str:
    header = ("scenario", "N", "fail->unhealthy med", "p99", "unhealthy->start med", "p99", "fail->start med", "p99")
    rows = []
    for s in health.values():
        if s.skipped:
            rows.append((s.label, "0", *["-"] * 6))
            continue
        na = "n/a" if not s.restarts else None
        rows.append(
            (
                s.label + (f" ({len(s.failures)} failed)" if s.failures else ""),
                str(len(s.fail_to_unhealthy_ms)),
                fmt(median(s.fail_to_unhealthy_ms)),
                fmt(p99(s.fail_to_unhealthy_ms)),
                na or fmt(median(s.unhealthy_to_start_ms)),
                na or fmt(p99(s.unhealthy_to_start_ms)),
                na or fmt(median(s.fail_to_start_ms)),
                na or fmt(p99(s.fail_to_start_ms)),
            )
        )
    return render_table(header, rows)


# (ours, theirs, which samples, what the ratio compares)
CRASH_RATIOS = (
    ("corral_docker", "dockerd", "kill_to_start_ms", "like for like: docker run --restart always, 100 ms backoff both"),
    ("corral_toml0", "podman", "kill_to_start_ms", "both restart at once (corral initial = 0; podman has no backoff)"),
    ("corral_toml0", "dockerd", "kill_to_start_ms", "corral's best case vs dockerd's only setting (100 ms backoff)"),
    ("corral_docker", "dockerd", "die_to_start_ms", "from the engine's own die event: the restart path alone"),
)
HEALTH_RATIOS = (
    ("corral_h0", "dockerd_h", "fail_to_unhealthy_ms", "detection, same probe/interval/retries"),
    ("corral_h0", "podman_h", "unhealthy_to_start_ms", "the action: unhealthy -> running again"),
    ("corral_h0", "podman_h", "fail_to_start_ms", "failure -> running again"),
)


def ratio_lines(scenarios: dict[str, Any], table: tuple[tuple[str, str, str, str], ...]) -> list[dict[str, Any]]:
    out = []
    for ours_key, theirs_key, metric, what in table:
        ours, theirs = scenarios[ours_key], scenarios[theirs_key]
        a, b = getattr(ours, metric), getattr(theirs, metric)
        out.append(
            {
                "ours": ours_key,
                "theirs": theirs_key,
                "metric": metric,
                "compares": what,
                "median_ratio": ratio(median(a), median(b)),
                "p99_ratio": ratio(p99(a), p99(b)),
                "skipped": theirs.skipped or ours.skipped,
            }
        )
    return out


def format_ratios(lines: list[dict[str, Any]], labels: dict[str, str]) -> str:
    text = []
    for r in lines:
        head = f"  {labels[r['ours']]} / {labels[r['theirs']]}, {r['metric'].removesuffix('_ms').replace('_to_', '->')}"
        if r["skipped"] or r["median_ratio"] is None:
            text.append(f"{head}: - ({r['skipped'] or 'no samples'})")
        else:
            text.append(
                f"{head}: median {fmt_ratio(r['median_ratio'])}, p99 {fmt_ratio(r['p99_ratio'])}  [{r['compares']}]"
            )
    return "\n".join(text)


def scenario_json(s: CrashScenario | HealthScenario) -> dict[str, Any]:
    out: dict[str, Any] = {"key": s.key, "label": s.label, "how": s.how, "skipped": s.skipped, "failures": s.failures}
    metrics = (
        ("kill_to_start_ms", "die_to_start_ms", "kill_to_die_ms")
        if isinstance(s, CrashScenario)
        else ("fail_to_unhealthy_ms", "unhealthy_to_start_ms", "fail_to_start_ms")
    )
    out["backoff_ms"] = s.backoff_s * 1000
    for metric in metrics:
        values: list[float] = getattr(s, metric)
        out[metric] = {
            "n": len(values),
            "median": median(values),
            "p99": p99(values),
            "min": min(values) if values else None,
            "max": max(values) if values else None,
            "samples": [round(v, 3) for v in values],
        }
    if isinstance(s, HealthScenario):
        out["restarts_on_unhealthy"] = s.restarts
        out["probes_driven_by_bench"] = s.probe is not None
    return out


# -- main ------------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--runs", type=int, default=30, help="crashes per scenario (default 30)")
    parser.add_argument("--health-runs", type=int, default=20, help="health failures per scenario (default 20)")
    parser.add_argument(
        "--min-uptime",
        type=float,
        default=11.0,
        help="seconds a container runs before it is crashed (default 11: past the 10 s backoff reset)",
    )
    parser.add_argument("--gap", type=float, default=0.4, help="seconds between the end of one crash and the next")
    parser.add_argument("--interval-ms", type=float, default=200, help="health probe interval (default 200)")
    parser.add_argument("--retries", type=int, default=3, help="health retries (default 3)")
    parser.add_argument("--timeout", type=float, default=15.0, help="seconds to wait for a restart")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    parser.add_argument("--docker", default=shutil.which("docker"), help="the docker CLI (default: from PATH)")
    parser.add_argument("--skip-dockerd", action="store_true")
    parser.add_argument("--skip-podman", action="store_true")
    parser.add_argument("--skip-health", action="store_true")
    parser.add_argument("--skip-crash", action="store_true")
    parser.add_argument("--keep", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args()  # fmt: skip


def targets_per_scenario(active: int, args: argparse.Namespace) -> int:
    """Enough containers that each has been up `--min-uptime` when its turn comes round again."""
    round_seconds: float = max(active, 1) * (float(args.gap) + 0.05)
    return max(2, min(int(args.runs), math.ceil(float(args.min_uptime) / round_seconds) + 1))


def setup(
    args: argparse.Namespace,
    base: Path,
    teardown: Teardown,
    crash: dict[str, CrashScenario],
    health: dict[str, HealthScenario],
    meta: dict[str, Any],
) -> None:
    docker = args.docker
    dockerd_path = None if args.skip_dockerd else shutil.which("dockerd")
    podman_path = None if args.skip_podman else shutil.which("podman")
    if docker is None:
        for key in ("corral_docker", "dockerd"):
            crash[key].skipped = "docker CLI not installed"
        health["dockerd_h"].skipped = "docker CLI not installed"
    if dockerd_path is None:
        why = "skipped (--skip-dockerd)" if args.skip_dockerd else "dockerd not installed"
        crash["dockerd"].skipped = crash["dockerd"].skipped or why
        health["dockerd_h"].skipped = health["dockerd_h"].skipped or why
    if podman_path is None:
        why = "skipped (--skip-podman)" if args.skip_podman else "podman not installed"
        crash["podman"].skipped = why
        health["podman_h"].skipped = why
    if args.skip_crash:
        for s in crash.values():
            s.skipped = "skipped (--skip-crash)"
    if args.skip_health:
        for h in health.values():
            h.skipped = "skipped (--skip-health)"

    active = sum(1 for s in crash.values() if not s.skipped)
    per = targets_per_scenario(active, args)
    meta["containers_per_crash_scenario"] = per

    corral = CorralDaemon(base)
    teardown.add("corral daemon", corral.stop)
    corral.start()
    corral.bootstrap_busybox()
    layer = busybox_layer_blob(corral.root)
    corral_events = DockerEvents(corral.socket)
    corral_events.start()
    teardown.add("corral events", quietly(corral_events.stop))
    corral_engine = docker_api_engine("corral", corral.socket, corral_events.log)

    # corral's TOML containers: the initial = 0 crash set and the two health ones.
    configs = base / "configs"
    configs.mkdir()
    crash_names = [f"crash0-{i:02d}" for i in range(per)] if not crash["corral_toml0"].skipped else []
    (configs / "bench.toml").write_text(toml_configs(crash_names, args.interval_ms, args.retries))
    teardown.add("corral configs", lambda: withdraw_configs(corral, configs))
    ids = apply_toml(corral, configs)
    if crash_names:
        crash["corral_toml0"].engine = corral_engine
        crash["corral_toml0"].targets = [make_target(corral_engine, n, ids[n]) for n in crash_names]
    for key, name in (("corral_h0", "health0"), ("corral_h100", "health100")):
        if not health[key].skipped:
            health[key].engine = corral_engine
            health[key].target = make_target(corral_engine, name, ids[name])

    cli_config = base / "docker-cli"
    cli_config.mkdir()
    if docker is not None and not crash["corral_docker"].skipped:
        env = {**corral.env, "DOCKER_CONFIG": str(cli_config)}
        s = crash["corral_docker"]
        s.engine = corral_engine
        for i in range(per):
            name = f"crashd-{i:02d}"
            s.targets.append(make_target(corral_engine, name, docker_run(env, docker, name, "--restart", "always")))

    if docker is not None and dockerd_path is not None:
        dockerd = Dockerd(base, f"{base.name}-dockerd", dockerd_path, docker)
        teardown.add("dockerd", dockerd.stop)
        try:
            dockerd.start()
            dockerd.import_image(layer, IMAGE)
            meta["dockerd"] = dockerd.info
            dockerd_events = DockerEvents(dockerd.socket)
            dockerd_events.start()
            teardown.add("dockerd events", quietly(dockerd_events.stop))
            engine = docker_api_engine("dockerd", dockerd.socket, dockerd_events.log)
            if not crash["dockerd"].skipped:
                crash["dockerd"].engine = engine
                for i in range(per):
                    name = f"crash-{i:02d}"
                    container_id = docker_run(dockerd.env, docker, name, "--restart", "always")
                    crash["dockerd"].targets.append(make_target(engine, name, container_id))
            if not health["dockerd_h"].skipped:
                flags = ("--restart", "always", "--health-cmd", HEALTH_CMD,
                         "--health-interval", f"{args.interval_ms:g}ms", "--health-timeout", "2s",
                         "--health-retries", str(args.retries))  # fmt: skip
                container_id = docker_run(dockerd.env, docker, "health", *flags, command=HEALTHY_SLEEPER)
                health["dockerd_h"].engine = engine
                health["dockerd_h"].target = make_target(engine, "health", container_id)
        except ServiceError as err:
            log(f"dockerd could not be set up, skipping it: {err}")
            crash["dockerd"].skipped = health["dockerd_h"].skipped = f"dockerd failed: {str(err).splitlines()[0]}"

    if podman_path is not None:
        podman = Podman(base, f"{base.name}-podman", podman_path)
        teardown.add("podman", podman.stop)
        try:
            podman.start()
            podman.import_image(layer, IMAGE)
            meta["podman"] = podman.info
            podman_events = PodmanEvents(podman.argv(), podman.env)
            podman_events.start()
            teardown.add("podman events", quietly(podman_events.stop))
            engine = podman_engine(podman, podman_events.log)

            def podman_run(name: str, *flags: str, command: str = SLEEPER) -> str:
                argv = ("run", "-d", "--name", name, *podman.run_flags(), *flags, IMAGE, "sh", "-c", command)
                return podman.cli(*argv).stdout.strip().splitlines()[-1]

            if not crash["podman"].skipped:
                crash["podman"].engine = engine
                for i in range(per):
                    name = f"crash-{i:02d}"
                    crash["podman"].targets.append(make_target(engine, name, podman_run(name, "--restart", "always")))
            if not health["podman_h"].skipped:
                podman_flags = ("--restart", "always", "--health-cmd", HEALTH_CMD, "--health-interval", "disable",
                         "--health-timeout", "2s", "--health-retries", str(args.retries),
                         "--health-on-failure", "restart")  # fmt: skip
                container_id = podman_run("health", *podman_flags, command=HEALTHY_SLEEPER)

                def probe(container: str) -> int:
                    return podman.cli("healthcheck", "run", container, check=False, timeout=30).returncode

                h = health["podman_h"]
                h.engine, h.probe = engine, probe
                h.target = make_target(engine, "health", container_id)
        except ServiceError as err:
            log(f"podman could not be set up, skipping it: {err}")
            crash["podman"].skipped = health["podman_h"].skipped = f"podman failed: {str(err).splitlines()[0]}"


def main() -> int:
    args = parse_args()
    status = check_prerequisites("restart_latency")
    if status is not None:
        return status
    crash, health = build_scenarios(args)
    meta = run_meta(
        runs=args.runs,
        health_runs=args.health_runs,
        min_uptime_s=args.min_uptime,
        gap_s=args.gap,
        interval_ms=args.interval_ms,
        retries=args.retries,
        notes=[
            "times are the engines' own event timestamps (timeNano / podman's Time), the kill's from the bench",
            "kill->start: kill -9 of the container's init from the host to its next `start` event",
            "die->start: from the engine's `die` event (podman's `died` comes from its cleanup process, later)",
            "every crash hits a container up >= min_uptime, so each restart is a first one (backoff reset)",
            "health: the marker file is deleted at a random phase of the probe interval",
            "corral's health containers set reset_after = 0s: the failures come ~1 s apart, and an unhealthy restart "
            "goes through the restart backoff, which would otherwise double (100, 200, 400 ms ...) each time",
            "podman's health timers need systemd (absent here): the bench runs `podman healthcheck run` every "
            "interval, and its unhealthy moment is the failing probe's exec_died event",
        ],
    )
    base = Path(tempfile.mkdtemp(prefix=f"{BENCH_MARK}-", dir="/tmp"))
    net_before = leakcheck.net_snapshot()
    teardown = Teardown()
    problems: list[str] = []
    exit_code = 0
    args.json.parent.mkdir(parents=True, exist_ok=True)
    from supervisor.logs import configure

    bench_log = open(base / "bench.log", "a")  # noqa: SIM115 - closed below
    configure(bench_log, "info")
    try:
        with sigterm_as_interrupt():
            try:
                log(f"state under {base}")
                setup(args, base, teardown, crash, health, meta)
                crash_active = [s for s in crash.values() if not s.skipped and s.targets]
                health_active = [h for h in health.values() if not h.skipped and h.target]
                if crash_active:
                    log(f"(a) {args.runs} crashes x {len(crash_active)} scenarios ...")
                    run_crashes(crash_active, args)
                if health_active:
                    log(f"(b) {args.health_runs} health failures x {len(health_active)} scenarios ...")
                    run_health(health_active, args)
            finally:
                log("tearing down ...")
                problems = teardown.run()
                bench_log.close()
                if not args.keep:
                    shutil.rmtree(base, ignore_errors=True)
    except KeyboardInterrupt:
        log("interrupted; cleaned up")
        meta["interrupted"] = True
        exit_code = 130
    except ServiceError as err:
        log(str(err))
        exit_code = 1

    leaks = {} if args.keep else leakcheck.check(base, net_before, mark=base.name)
    leaks, foreign = own_leaks(leaks, base)
    meta["loadavg_at_end"] = Path("/proc/loadavg").read_text().split()[:3]
    everything: list[CrashScenario | HealthScenario] = [*crash.values(), *health.values()]
    labels = {**{k: s.label for k, s in crash.items()}, **{k: s.label for k, s in health.items()}}
    crash_ratios = ratio_lines(crash, CRASH_RATIOS)
    health_ratios = ratio_lines(health, HEALTH_RATIOS)
    tables = {"crash": crash_table(crash), "health": health_table(health)}
    print(f"(a) crash (kill -9) to running again, ms; every restart a first one (up >= {args.min_uptime:g} s)")
    print(tables["crash"])
    print("ratios (corral / peer):")
    print(format_ratios(crash_ratios, labels))
    print(
        f"\n(b) health failure to restart, ms; probe `{HEALTH_CMD}`, interval {args.interval_ms:g} ms, "
        f"retries {args.retries}"
    )
    print(tables["health"])
    print("ratios (corral / peer):")
    print(format_ratios(health_ratios, labels))
    print("  dockerd / anything, restart on unhealthy: n/a (moby/moby#28400: dockerd only reports it)")
    for s in everything:
        for failure in s.failures[:3]:
            print(f"FAILED in {s.label}: {failure}")
    if problems:
        print("\nteardown notes:\n  " + "\n  ".join(problems))
    print("\nleak check: " + ("clean" if not leaks else json.dumps(leaks, indent=2)))
    for note in foreign:
        print(f"  (not a leak: {note})")
    document = {
        "meta": meta,
        "crash": [scenario_json(s) for s in crash.values()],
        "health": [scenario_json(h) for h in health.values()],
        "ratios": {"crash": crash_ratios, "health": health_ratios},
        "tables": tables,
        "teardown_problems": problems,
        "leaks": leaks,
        "foreign_netns": foreign,
    }
    args.json.write_text(json.dumps(document, indent=2) + "\n")
    print(f"results: {args.json}")
    if exit_code:
        return exit_code
    failed = any(s.failures for s in everything)
    return 1 if leaks or failed else 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
