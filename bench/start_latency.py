"""Start latency of a container: corral against dockerd and runc, as ratios measured in one run.

    sudo .venv/bin/python bench/start_latency.py [-n 30] [--warmups 3] [--profile]

(a) end to end: `docker run --rm busybox true` with the docker CLI against a
    corral daemon and against a private dockerd (same image, imported
    offline from corral's bootstrapped layer), plus `corral run --rm
    busybox true` for information.
(b) the runtime alone: corral's launcher (cgroup, fork, namespaces,
    overlay, pivot_root, exec /bin/true, reap, cgroup removed) against
    `runc run` of the same rootfs.

Runs of the compared scenarios are interleaved (A B, B A, ...) so drift
hits all of them alike. Prints a table and writes JSON to
bench/results/start_latency.json. Everything it starts lives under one
/tmp/corral-bench-* dir and cgroup parent, and is torn down and checked
for leaks at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import leakcheck  # noqa: E402
from fake_docker import FakeDocker  # noqa: E402
from services import (  # noqa: E402
    BENCH_MARK,
    REPO,
    CorralDaemon,
    Dockerd,
    Podman,
    RuncBundle,
    ServiceError,
    busybox_layer_blob,
    processes_mentioning,
    sigterm_as_interrupt,
    wait_gone,
)

DEFAULT_JSON = BENCH_DIR / "results" / "start_latency.json"
IMAGE = "busybox:latest"
# Targets from the issue: corral at most this fraction of its peer's median.
TARGET_END_TO_END = 0.20
TARGET_RUNTIME = 0.50


@dataclass
class Scenario:
    key: str
    group: str  # "end_to_end" | "runtime"
    label: str
    command: str
    baseline: str | None = None  # key of the scenario this one is a ratio of
    target: float | None = None
    samples_ms: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    skipped: str | None = None
    phases_ms: dict[str, list[float]] = field(default_factory=dict)

    @property
    def median(self) -> float | None:
        return statistics.median(self.samples_ms) if self.samples_ms else None

    @property
    def p90(self) -> float | None:
        if len(self.samples_ms) < 2:
            return self.median
        return statistics.quantiles(self.samples_ms, n=10, method="inclusive")[8]


# -- measuring -------------------------------------------------------------


def timed_run(argv: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[bytes]]:
    t0 = time.perf_counter_ns()
    result = subprocess.run(
        argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False
    )
    return (time.perf_counter_ns() - t0) / 1e6, result


def run_interleaved(
    jobs: list[tuple[Scenario, list[str], dict[str, str]]], runs: int, warmups: int, settle: float
) -> None:
    """Each round runs every job once, the order rotated by one each round.

    `settle` seconds of idle come before each run, so no run pays for the work a daemon does after
    the previous one (dockerd, containerd and the shim go on tearing a container down after the
    CLI has exited): each is measured as a lone `docker run` on a quiet host.
    """
    for i in range(warmups + runs):
        shift = i % len(jobs)
        for scenario, argv, env in jobs[shift:] + jobs[:shift]:
            time.sleep(settle)
            elapsed, result = timed_run(argv, env)
            if result.returncode != 0:
                scenario.failures.append(
                    f"exit {result.returncode}: {result.stderr.decode(errors='replace').strip()[:300]}"
                )
            elif i >= warmups:
                scenario.samples_ms.append(elapsed)


def measure_runtime(args: argparse.Namespace, base: Path, corral: CorralDaemon, scenarios: dict[str, Scenario]) -> str:
    """(b): the launcher against runc run; returns the runc version (or why it was skipped)."""
    import launcher_timing

    ours, theirs = scenarios["launcher"], scenarios["runc"]
    runc_path = None if args.skip_runc else shutil.which("runc")
    bundle: RuncBundle | None = None
    bench = launcher_timing.LauncherBench(
        root=corral.root,
        run_dir=base / "launcher-run",
        cgroup_parent=f"{base.name}-launcher",
        image_ref=IMAGE,
        args=("/bin/true",),
    )
    runc_version = "not installed"
    if runc_path is None:
        theirs.skipped = "runc skipped (--skip-runc)" if args.skip_runc else "runc not installed"
        ours.baseline = None
    else:
        bundle = RuncBundle(base, runc_path)
        cleanup.append(("runc", bundle.stop))
        bundle.create(single_layer(bench.layers), ["/bin/true"])
        runc_version = bundle.version()
        theirs.command = " ".join(bundle.argv("<id>")).replace(str(base), "$TMP")
    (base / "launcher-run").mkdir()
    # Torn down in reverse: first the launcher leaves, then its cgroup parent can go.
    cleanup.append(("launcher cgroup parent", lambda: _remove_parent(f"{base.name}-launcher")))
    cleanup.append(("bench launcher", lambda: _await_launcher_exit(base / "launcher-run")))
    corral_samples, runc_samples = launcher_timing.compare(
        bench, bundle.run if bundle else None, args.runs, args.warmups, tag=base.name, gap=args.gap_ms / 1000
    )
    ours.samples_ms = corral_samples.total_ms
    ours.phases_ms = corral_samples.phases_ms
    ours.failures = corral_samples.failures
    if runc_samples is not None:
        theirs.samples_ms = runc_samples.total_ms
        theirs.failures = runc_samples.failures
    return runc_version


def single_layer(layers: list[Path] | tuple[str, ...]) -> Any:
    if len(layers) != 1:
        raise ServiceError(
            "busybox:latest has more than one layer; this bench expects the bootstrapped one-layer image"
        )
    return layers[0]


def _await_launcher_exit(run_dir: Path) -> list[str]:
    """The bench's own launcher exits by itself once its client is gone and it has no containers."""
    left = [pid for pid, _ in processes_mentioning(str(run_dir / "launcher.sock"))]
    stuck = wait_gone(left, timeout=10)
    for pid in stuck:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return [f"the bench's launcher {pid} did not exit by itself; killed it" for pid in stuck]


def _remove_parent(parent: str) -> list[str]:
    from services import remove_cgroup_parent

    problems: list[str] = []
    remove_cgroup_parent(parent, problems)
    return problems


def measure_end_to_end(
    args: argparse.Namespace, base: Path, corral: CorralDaemon, scenarios: dict[str, Scenario], meta: dict[str, Any]
) -> Dockerd | None:
    docker = args.docker
    dockerd_path = shutil.which("dockerd")
    cli_config = base / "docker-cli"
    cli_config.mkdir()
    corral_env = {**corral.env, "DOCKER_CONFIG": str(cli_config)}
    jobs: list[tuple[Scenario, list[str], dict[str, str]]] = []
    dockerd: Dockerd | None = None

    if docker is None:
        for key in ("corral_docker", "dockerd", "dockerd_net_none"):
            scenarios[key].skipped = "docker CLI not installed"
        scenarios["corral_cli"].baseline = None
    else:
        meta["docker_cli"] = (
            f"{docker}: " + subprocess.run([docker, "--version"], capture_output=True, text=True).stdout.strip()
        )
        jobs.append((scenarios["corral_docker"], [docker, "run", "--rm", "busybox", "true"], corral_env))
    jobs.append((scenarios["corral_cli"], corral.corral_argv("run", "--rm", "busybox", "true"), corral_env))

    if docker is not None and (dockerd_path is None or args.skip_dockerd):
        why = "dockerd skipped (--skip-dockerd)" if args.skip_dockerd else "dockerd not installed"
        for key in ("dockerd", "dockerd_net_none"):
            scenarios[key].skipped = why
        for key in ("corral_docker", "corral_cli"):
            scenarios[key].baseline = None
    elif docker is not None and dockerd_path is not None:
        dockerd = Dockerd(base, f"{base.name}-dockerd", dockerd_path, docker)
        cleanup.append(("dockerd", dockerd.stop))
        try:
            dockerd.start()
            from supervisor.storage.images import ImageStore

            store = ImageStore(corral.root)
            image = store.resolve(IMAGE)
            dockerd.import_image(store.content.path(single_layer(image.layer_digests)), IMAGE)
        except ServiceError as err:
            print(f"dockerd could not be set up, skipping it: {err}", file=sys.stderr)
            for key in ("dockerd", "dockerd_net_none"):
                scenarios[key].skipped = f"dockerd failed to start: {str(err).splitlines()[0]}"
            for key in ("corral_docker", "corral_cli"):
                scenarios[key].baseline = None
        else:
            meta["dockerd"] = dockerd.info
            denv = dockerd.env
            jobs.append((scenarios["dockerd"], [docker, "run", "--rm", "busybox", "true"], denv))
            jobs.append(
                (scenarios["dockerd_net_none"], [docker, "run", "--rm", "--network", "none", "busybox", "true"], denv)
            )

    podman_path = None if args.skip_podman else shutil.which("podman")
    if podman_path is None:
        scenarios["podman"].skipped = "podman skipped (--skip-podman)" if args.skip_podman else "podman not installed"
    else:
        podman = Podman(base, f"{base.name}-podman", podman_path)
        cleanup.append(("podman", podman.stop))
        try:
            podman.start()
            podman.import_image(busybox_layer_blob(corral.root), IMAGE)
        except ServiceError as err:
            print(f"podman could not be set up, skipping it: {err}", file=sys.stderr)
            scenarios["podman"].skipped = f"podman failed: {str(err).splitlines()[0]}"
        else:
            meta["podman"] = podman.info
            argv = podman.argv("run", "--rm", *podman.run_flags(), "busybox", "true")
            jobs.append((scenarios["podman"], argv, podman.env))

    if docker is not None:
        stub_socket = base / "stub.sock"
        jobs.append((scenarios["docker_floor"], [docker, "run", "--rm", "busybox", "true"],
                     {**corral_env, "DOCKER_HOST": f"unix://{stub_socket}"}))  # fmt: skip
        with FakeDocker(stub_socket):
            run_interleaved(jobs, args.runs, args.warmups, args.settle_ms / 1000)
    else:
        scenarios["docker_floor"].skipped = "docker CLI not installed"
        run_interleaved(jobs, args.runs, args.warmups, args.settle_ms / 1000)
    return dockerd


# -- profiling -----------------------------------------------------------------


def profile_daemon(args: argparse.Namespace, corral: CorralDaemon, base: Path, results_dir: Path) -> dict[str, Any]:
    """py-spy samples of the daemon and its launcher over `--profile-runs` `docker run`s (CPU only, no idle)."""
    py_spy = args.py_spy or shutil.which("py-spy")
    docker = args.docker
    if py_spy is None or docker is None:
        return {
            "skipped": "py-spy not found (pip install py-spy, or --py-spy PATH)"
            if docker
            else "docker CLI not installed"
        }
    env = {**corral.env, "DOCKER_CONFIG": str(base / "docker-cli")}
    launchers = corral.launcher_pids()
    targets = {"daemon": corral.pid, "launcher": launchers[0] if launchers else None}
    rate = 1000
    spies = {}
    for name, pid in targets.items():
        if pid is None:
            continue
        out = results_dir / f"profile-{name}.txt"
        spies[name] = (
            subprocess.Popen(
                [
                    py_spy,
                    "record",
                    "--pid",
                    str(pid),
                    "--rate",
                    str(rate),
                    "--format",
                    "raw",
                    "--output",
                    str(out),
                    "--nonblocking",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            ),
            out,
        )
    time.sleep(1.0)  # py-spy attaches
    wall = []
    for _ in range(args.profile_runs):
        elapsed, _result = timed_run([docker, "run", "--rm", "busybox", "true"], env)
        wall.append(elapsed)
    summary: dict[str, Any] = {"runs": args.profile_runs, "rate_hz": rate, "median_wall_ms": statistics.median(wall)}
    for name, (proc, out) in spies.items():
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        summary[name] = summarize_profile(out, rate, args.profile_runs)
    return summary


def _short_frame(frame: str) -> str:
    """ "func (/path/to/site-packages/pkg/mod.py:12)" -> "func (pkg/mod.py)"."""
    name, _, where = frame.partition(" (")
    where = re.sub(r":\d+$", "", where.rstrip(")")).replace(str(REPO) + "/", "")
    where = re.sub(r"^.*/(site-packages|python3\.\d+)/", "", where)
    return f"{name} ({where})" if where else name


def summarize_profile(path: Path, rate: int, runs: int, top: int = 15) -> dict[str, Any]:
    """CPU ms per run: total, by leaf function (self) and by function anywhere on the stack (inclusive)."""
    if not path.exists():
        return {"error": "py-spy wrote no output"}
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short_frame(f) for f in stack.split(";")]
        total += count
        self_time[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    per_run = 1000.0 / rate / max(runs, 1)
    # Frames of corral itself below the entry points (those on nearly every sample say nothing).
    ours = [(f, c) for f, c in inclusive.most_common() if "(supervisor/" in f and c < 0.6 * total]
    return {
        "raw": str(path),
        "cpu_ms_per_run": round(total * per_run, 2),
        "self_ms_per_run": [(f, round(c * per_run, 2)) for f, c in self_time.most_common(top)],
        "inclusive_ms_per_run": [(f, round(c * per_run, 2)) for f, c in ours[: top * 2]],
    }


# -- report --------------------------------------------------------------------


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def ratio_of(scenario: Scenario, scenarios: dict[str, Scenario]) -> float | None:
    if scenario.baseline is None or scenario.median is None:
        return None
    base = scenarios[scenario.baseline]
    if base.median is None or base.median == 0:
        return None
    return scenario.median / base.median


def render_table(scenarios: dict[str, Scenario]) -> str:
    header = ("scenario", "N", "median ms", "p90 ms", "ratio", "target", "note")
    rows = []
    for s in scenarios.values():
        ratio = ratio_of(s, scenarios)
        if s.skipped:
            note = s.skipped
        elif s.baseline is None and any(o.baseline == s.key for o in scenarios.values()):
            note = "baseline"
        elif ratio is not None and s.target is not None:
            note = "PASS" if ratio <= s.target else "FAIL"
        elif ratio is not None:
            note = f"info, vs {scenarios[s.baseline].label}" if s.baseline else "info"
        elif s.baseline is not None or s.target is not None:
            note = "no baseline measured"
        else:
            note = ""
        if s.failures:
            note += f" ({len(s.failures)} failed runs)"
        rows.append(
            (
                s.label,
                str(len(s.samples_ms)),
                fmt(s.median),
                fmt(s.p90),
                # Three places: 0.205x must not read as 0.20x beside a 0.20x target.
                "-" if ratio is None else f"{ratio:.3f}x",
                "-" if s.target is None else f"<= {s.target:.2f}x",
                note,
            )
        )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    right = {1, 2, 3, 4}
    lines = []
    for n, row in enumerate([header, *rows]):
        cells = [c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def scenario_json(s: Scenario, scenarios: dict[str, Scenario]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "key": s.key,
        "group": s.group,
        "label": s.label,
        "command": s.command,
        "n": len(s.samples_ms),
        "median_ms": s.median,
        "p90_ms": s.p90,
        "min_ms": min(s.samples_ms) if s.samples_ms else None,
        "max_ms": max(s.samples_ms) if s.samples_ms else None,
        "baseline": s.baseline,
        "ratio": ratio_of(s, scenarios),
        "target": s.target,
        "skipped": s.skipped,
        "failures": s.failures,
        "samples_ms": [round(x, 3) for x in s.samples_ms],
    }
    if s.phases_ms:
        out["phases_median_ms"] = {k: (statistics.median(v) if v else None) for k, v in s.phases_ms.items()}
    return out


# -- main ----------------------------------------------------------------------

# (name, callable returning a list of problems) in start order; torn down in reverse.
cleanup: list[tuple[str, Any]] = []


def build_scenarios() -> dict[str, Scenario]:
    items = [
        Scenario("corral_docker", "end_to_end", "corral: docker run --rm busybox true", "docker run --rm busybox true",
                 baseline="dockerd", target=TARGET_END_TO_END),
        Scenario("dockerd", "end_to_end", "dockerd: docker run --rm busybox true", "docker run --rm busybox true"),
        Scenario("corral_cli", "end_to_end", "corral: corral run --rm busybox true", "corral run --rm busybox true",
                 baseline="dockerd"),
        Scenario("dockerd_net_none", "end_to_end", "dockerd: docker run --rm --network none busybox true",
                 "docker run --rm --network none busybox true", baseline="dockerd"),
        Scenario("podman", "end_to_end", "podman: podman run --rm --network none busybox true",
                 "podman run --rm --network none busybox true (private storage, cgroupfs)", baseline="dockerd"),
        Scenario("docker_floor", "end_to_end", "stub daemon: docker run --rm busybox true (CLI floor)",
                 "docker run --rm busybox true against bench/fake_docker.py", baseline="dockerd"),
        Scenario("launcher", "runtime", "corral launcher: /bin/true (cgroup+start+exit+reap)",
                 "LauncherClient.start/wait/forget with cgroup create/remove", baseline="runc", target=TARGET_RUNTIME),
        Scenario("runc", "runtime", "runc run /bin/true", "runc run"),
    ]  # fmt: skip
    return {s.key: s for s in items}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--runs", type=int, default=30, help="measured runs per scenario (default 30)")
    parser.add_argument("--warmups", type=int, default=3, help="unmeasured runs first (default 3)")
    parser.add_argument(
        "--json", type=Path, default=DEFAULT_JSON, help=f"where to write results (default {DEFAULT_JSON})"
    )
    parser.add_argument("--gap-ms", type=float, default=50, help="idle time before each start in (b) (default 50)")
    parser.add_argument(
        "--settle-ms", type=float, default=200, help="idle time before each docker run in (a) (default 200)"
    )
    parser.add_argument("--docker", default=shutil.which("docker"), help="the docker CLI (default: from PATH)")
    parser.add_argument("--skip-dockerd", action="store_true", help="do not start dockerd")
    parser.add_argument("--skip-runc", action="store_true", help="do not compare with runc")
    parser.add_argument("--skip-podman", action="store_true", help="do not compare with podman")
    parser.add_argument(
        "--profile", action="store_true", help="afterwards, py-spy the daemon and launcher over some docker runs"
    )
    parser.add_argument("--profile-runs", type=int, default=50)
    parser.add_argument("--py-spy", help="path to py-spy (default: from PATH)")
    parser.add_argument("--keep", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    if os.geteuid() != 0:
        print("start_latency: must run as root (containers, cgroups, dockerd)", file=sys.stderr)
        return 2
    try:
        import supervisor  # noqa: F401
    except ImportError:
        print("start_latency: run it with the project's venv: .venv/bin/python bench/start_latency.py", file=sys.stderr)
        return 2

    scenarios = build_scenarios()
    meta: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "host": {"kernel": platform.release(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "corral_commit": subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
        "runs": args.runs,
        "warmups": args.warmups,
        "interleaved": True,
        "runtime_gap_ms": args.gap_ms,
        "settle_ms": args.settle_ms,
        "notes": [
            "end to end: wall time of the docker CLI process, fork to exit; both daemons idle apart from the bench",
            "dockerd runs with --bridge=none: its default network is a fresh netns with loopback only, like corral's",
            "runc's rootfs is a plain copy of the unpacked busybox layer (no overlay); corral's launcher mounts one",
        ],
    }
    base = Path(tempfile.mkdtemp(prefix=f"{BENCH_MARK}-", dir="/tmp"))
    net_before = leakcheck.net_snapshot()
    problems: list[str] = []
    profile: dict[str, Any] = {}
    exit_code = 0
    results_dir = args.json.parent
    results_dir.mkdir(parents=True, exist_ok=True)
    from supervisor.logs import configure

    # The bench's own corral calls (launcher client, cgroups) log at info, as the daemon does, to a file.
    bench_log = open(base / "bench.log", "a")  # noqa: SIM115 - closed below
    configure(bench_log, "info")
    try:
        with sigterm_as_interrupt():
            try:
                from supervisor.isolation.cgroups import detect

                meta["host"]["cgroup_driver_version"] = detect().version
                corral = CorralDaemon(base)
                cleanup.append(("corral daemon", corral.stop))
                print(f"[bench] state under {base}", file=sys.stderr)
                corral.start()
                corral.bootstrap_busybox()
                print("[bench] (b) runtime: corral launcher vs runc run ...", file=sys.stderr)
                meta["runc"] = measure_runtime(args, base, corral, scenarios)
                print("[bench] (a) end to end: docker run against corral and dockerd ...", file=sys.stderr)
                measure_end_to_end(args, base, corral, scenarios, meta)
                if args.profile:
                    print("[bench] profiling the daemon ...", file=sys.stderr)
                    profile = profile_daemon(args, corral, base, results_dir)
            finally:
                for name, stop in reversed(cleanup):
                    try:
                        problems.extend(stop() or [])
                    except Exception as err:  # noqa: BLE001 - tear down the rest regardless
                        problems.append(f"stopping {name} failed: {type(err).__name__}: {err}")
                bench_log.close()
                if not args.keep:
                    shutil.rmtree(base, ignore_errors=True)
    except KeyboardInterrupt:
        print("[bench] interrupted; cleaned up", file=sys.stderr)
        meta["interrupted"] = True
        exit_code = 130
    except ServiceError as err:
        print(f"[bench] {err}", file=sys.stderr)
        exit_code = 1

    leaks = {} if args.keep else leakcheck.check(base, net_before)
    table = render_table(scenarios)
    print(table)
    ours, net_none, podman = scenarios["corral_docker"], scenarios["dockerd_net_none"], scenarios["podman"]
    if ours.median and net_none.median:
        print(f"\ncorral (docker CLI) vs dockerd --network none: {ours.median / net_none.median:.2f}x")
    if ours.median and podman.median:
        print(f"corral (docker CLI) vs podman run --network none: {ours.median / podman.median:.2f}x")
    launcher = scenarios["launcher"]
    if launcher.phases_ms and launcher.samples_ms:
        parts = ", ".join(f"{k} {statistics.median(v):.1f}" for k, v in launcher.phases_ms.items() if v)
        print(f"\ncorral launcher phases (median ms): {parts}")
    for s in scenarios.values():
        for failure in s.failures[:3]:
            print(f"failed run in {s.label}: {failure}")
    if profile:
        print_profile(profile)
    if problems:
        print("\nteardown notes:\n  " + "\n  ".join(problems))
    print("\nleak check: " + ("clean" if not leaks else json.dumps(leaks, indent=2)))

    document = {
        "meta": meta,
        "scenarios": [scenario_json(s, scenarios) for s in scenarios.values()],
        "table": table,
        "profile": profile,
        "teardown_problems": problems,
        "leaks": leaks,
    }
    args.json.write_text(json.dumps(document, indent=2) + "\n")
    print(f"results: {args.json}")
    if exit_code:
        return exit_code
    if leaks or any(s.failures for s in scenarios.values()):
        return 1
    return 0


def print_profile(profile: dict[str, Any]) -> None:
    if "skipped" in profile:
        print(f"\nprofile: {profile['skipped']}")
        return
    print(
        f"\nprofile over {profile['runs']} docker runs (median wall {profile['median_wall_ms']:.1f} ms), "
        "CPU ms per run:"
    )
    for name in ("daemon", "launcher"):
        summary = profile.get(name)
        if not summary or "error" in summary:
            continue
        print(f"  {name}: {summary['cpu_ms_per_run']} ms CPU/run")
        print("    corral functions, inclusive:")
        for frame, ms in summary["inclusive_ms_per_run"][:18]:
            print(f"      {ms:6.2f}  {frame}")
        print("    leaf functions (self):")
        for frame, ms in summary["self_ms_per_run"][:10]:
            print(f"      {ms:6.2f}  {frame}")


if __name__ == "__main__":
    sys.exit(main())
