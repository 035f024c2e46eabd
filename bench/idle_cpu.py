"""Idle cost: CPU, wake-ups and memory of corral's daemon and launcher with 200 idle supervised containers.

    sudo .venv/bin/python bench/idle_cpu.py [--containers 200] [--seconds 60] [--skip-dockerd]

A private corral daemon runs `--containers` containers declared in
`--files` TOML files in one configs directory (restart = "always", no
health check), applied with PUT /corral/configs. Once all run and
`--settle` seconds have passed, the bench sleeps for `--seconds` and reads
/proc before and after: CPU time (utime+stime) of the daemon and of its
launcher as % of one core, their wake-ups (context switches), RSS and
PSS, in total and per container. The same before any container exists
(`--baseline-seconds`) gives the fixed part. The target (issue 3): the
daemon under 1% of a core.

For comparison, in the same windows: a private dockerd (with the
containerd it manages) with as many `docker run -d --restart always`
containers, counting dockerd, containerd and the containerd-shim of
every container. Prints a table and writes bench/results/idle_cpu.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import leakcheck  # noqa: E402
import procstat  # noqa: E402
from common import (  # noqa: E402
    Teardown,
    api,
    api_json,
    apply_toml,
    check_prerequisites,
    fmt,
    fmt_ratio,
    log,
    own_leaks,
    ratio,
    render_table,
    run_meta,
    withdraw_configs,
)
from services import (  # noqa: E402
    BENCH_MARK,
    CorralDaemon,
    Dockerd,
    ServiceError,
    busybox_layer_blob,
    processes_mentioning,
    sigterm_as_interrupt,
)

DEFAULT_JSON = BENCH_DIR / "results" / "idle_cpu.json"
IMAGE = "busybox:latest"
SLEEPER = "trap 'exit 0' TERM; sleep 1000000 & wait"
TARGET_DAEMON_CPU_PERCENT = 1.0


# -- corral ---------------------------------------------------------------------------------


def write_configs(directory: Path, containers: int, files: int) -> list[str]:
    """`containers` idle containers spread over `files` TOML files; their names."""
    names = [f"idle-{i:03d}" for i in range(containers)]
    command = json.dumps(SLEEPER)
    for f in range(files):
        chunk = names[f::files]
        text = "".join(
            f'[containers.{name}]\nimage = "busybox"\ncommand = ["sh", "-c", {command}]\nrestart = "always"\n\n'
            for name in chunk
        )
        (directory / f"idle-{f}.toml").write_text(text)
    return names


def corral_groups(corral: CorralDaemon) -> dict[str, list[int]]:
    assert corral.pid is not None
    return {"corral daemon": [corral.pid], "corral launcher": corral.launcher_pids()}


# -- dockerd --------------------------------------------------------------------------------


def dockerd_groups(dockerd: Dockerd) -> dict[str, list[int]]:
    assert dockerd.process is not None
    containerd, shims = [], []
    for pid, cmdline in processes_mentioning(str(dockerd.dir)):
        program = Path(cmdline.split()[0]).name if cmdline else ""
        if program.startswith("containerd-shim"):
            shims.append(pid)
        elif program == "containerd":
            containerd.append(pid)
    return {"dockerd": [dockerd.process.pid], "containerd": containerd, "containerd-shim": shims}


def run_docker_containers(dockerd: Dockerd, count: int, workers: int, deadline: float) -> tuple[int, list[str]]:
    """`docker run -d --restart always` × count, `workers` at a time; (started, errors)."""

    def one(i: int) -> str | None:
        if time.monotonic() > deadline:
            return "deadline passed"
        result = dockerd.docker_cli(
            "run", "-d", "--name", f"idle-{i:03d}", "--restart", "always", IMAGE, "sh", "-c", SLEEPER,
            timeout=120, check=False,
        )  # fmt: skip
        return None if result.returncode == 0 else result.stderr.strip()[:200]

    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(one, range(count)))
    errors = [r for r in results if r is not None]
    return count - len(errors), errors


def remove_docker_containers(dockerd: Dockerd, workers: int = 8) -> list[str]:
    """All of dockerd's containers, removed in parallel (its own stop() removes them in one slow `rm -f`)."""
    if dockerd.process is None or dockerd.process.poll() is not None:
        return []
    try:
        ids = [c["Id"] for c in api_json(dockerd.socket, "GET", "/containers/json", query={"all": True})]
    except Exception as err:  # noqa: BLE001
        return [f"dockerd: listing containers failed: {err}"]

    def remove(container_id: str) -> str | None:
        response = api(dockerd.socket, "DELETE", f"/containers/{container_id}", query={"force": True}, timeout=120)
        return None if response.ok else f"{container_id[:12]}: {response.status} {response.message}"

    with ThreadPoolExecutor(workers) as pool:
        errors = [e for e in pool.map(remove, ids) if e]
    return [f"dockerd: removing containers: {errors[:3]}"] if errors else []


# -- measuring ------------------------------------------------------------------------------


def measure(groups: dict[str, list[int]], seconds: float) -> dict[str, procstat.GroupUsage]:
    window = procstat.Window(groups)
    window.begin()
    time.sleep(seconds)
    window.finish()
    return window.usage()


def add_totals(usage: dict[str, procstat.GroupUsage]) -> None:
    for total, parts in (("corral total", ("corral daemon", "corral launcher")),
                         ("docker total", ("dockerd", "containerd", "containerd-shim"))):  # fmt: skip
        members = [usage[p] for p in parts if p in usage]
        if not members:
            continue
        pss: int | None = 0
        for m in members:
            pss = None if pss is None or m.pss_kb is None else pss + m.pss_kb
        usage[total] = procstat.GroupUsage(
            name=total,
            pids=[pid for m in members for pid in m.pids],
            seconds=members[0].seconds,
            cpu_ticks=sum(m.cpu_ticks for m in members),
            run_ns=sum(m.run_ns for m in members),
            wakeups=sum(m.wakeups for m in members),
            threads=sum(m.threads for m in members),
            rss_kb=sum(m.rss_kb for m in members),
            pss_kb=pss,
            vanished=[pid for m in members for pid in m.vanished],
        )


def mib(kb: int | None) -> str:
    return "-" if kb is None else f"{kb / 1024:.1f}"


ROWS = ("corral daemon", "corral launcher", "corral total", "dockerd", "containerd", "containerd-shim", "docker total")


def usage_table(loaded: dict[str, procstat.GroupUsage], baseline: dict[str, procstat.GroupUsage]) -> str:
    header = ("process", "procs", "CPU s", "% core", "% core (ns)", "wakeups/s", "RSS MiB", "PSS MiB",
              "| base % core", "base wakeups/s", "base RSS MiB", "base PSS MiB")  # fmt: skip
    rows = []
    for name in ROWS:
        u, b = loaded.get(name), baseline.get(name)
        if u is None and b is None:
            continue
        cells = [name]
        if u is not None:
            cells += [str(len(u.pids)), f"{u.cpu_seconds:.2f}", f"{u.cpu_percent:.3f}", f"{u.run_percent:.3f}",
                      f"{u.wakeups_per_second:.1f}", mib(u.rss_kb), mib(u.pss_kb)]  # fmt: skip
        else:
            cells += ["-"] * 7
        if b is not None and b.pids:
            cells += [f"| {b.cpu_percent:.3f}", f"{b.wakeups_per_second:.1f}", mib(b.rss_kb), mib(b.pss_kb)]
        else:
            cells += ["| -", "-", "-", "-"]
        rows.append(tuple(cells))
    return render_table(header, rows)


def per_container(
    loaded: dict[str, procstat.GroupUsage], baseline: dict[str, procstat.GroupUsage], n: int
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for total in ("corral total", "docker total"):
        u, b = loaded.get(total), baseline.get(total)
        if u is None or n == 0:
            continue
        entry: dict[str, Any] = {
            "rss_kb_per_container": u.rss_kb / n,
            "pss_kb_per_container": None if u.pss_kb is None else u.pss_kb / n,
        }
        if b is not None:
            entry["marginal_rss_kb_per_container"] = (u.rss_kb - b.rss_kb) / n
            entry["marginal_pss_kb_per_container"] = (
                None if u.pss_kb is None or b.pss_kb is None else (u.pss_kb - b.pss_kb) / n
            )
        out[total] = entry
    return out


def sanity_after(corral: CorralDaemon, names: list[str]) -> list[str]:
    """Every declared container still running, never restarted: the window really was idle."""
    status = api_json(corral.socket, "GET", "/corral/configs")
    bad = [
        f"{c['Name']}: {c['State']} restarts={c['RestartCount']}"
        for c in status["Containers"]
        if c["State"] != "running" or c["RestartCount"]
    ]
    missing = set(names) - {c["Name"] for c in status["Containers"]}
    return bad + [f"{m}: missing" for m in sorted(missing)]


# -- main -----------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--containers", type=int, default=200, help="idle containers per engine (default 200)")
    parser.add_argument("--seconds", type=float, default=60, help="measurement window (default 60)")
    parser.add_argument("--baseline-seconds", type=float, default=30, help="window with 0 containers (default 30)")
    parser.add_argument("--settle", type=float, default=10, help="wait after start-up before a window (default 10)")
    parser.add_argument("--files", type=int, default=4, help="TOML files the containers are spread over (default 4)")
    parser.add_argument("--workers", type=int, default=8, help="parallel `docker run`s for dockerd (default 8)")
    parser.add_argument(
        "--dockerd-timeout",
        type=float,
        default=240,
        help="give up on dockerd if its containers take longer to start (default 240 s)",
    )
    parser.add_argument("--skip-dockerd", action="store_true")
    parser.add_argument("--docker", default=shutil.which("docker"), help="the docker CLI (default: from PATH)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    parser.add_argument("--keep", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args()  # fmt: skip


def main() -> int:
    args = parse_args()
    status = check_prerequisites("idle_cpu")
    if status is not None:
        return status
    meta = run_meta(
        containers=args.containers,
        seconds=args.seconds,
        baseline_seconds=args.baseline_seconds,
        settle_s=args.settle,
        files=args.files,
        how="corral: TOML files applied with PUT /corral/configs (restart always, no health check); "
        "dockerd: docker run -d --restart always",
        clk_tck=procstat.CLK_TCK,
        notes=[
            "CPU: utime+stime of /proc/PID/stat over the window (resolution one tick, 1/CLK_TCK s); "
            "'% core (ns)': schedstat run time of the live threads, finer",
            "wakeups: voluntary + involuntary context switches of all live threads over the window",
            "RSS: VmRSS; PSS: smaps_rollup (shared pages split between the processes mapping them)",
            "marginal per container: (with containers - baseline) / containers",
            "the bench makes no API call during a window; corral and dockerd are measured in the same windows",
        ],
    )
    base = Path(tempfile.mkdtemp(prefix=f"{BENCH_MARK}-", dir="/tmp"))
    net_before = leakcheck.net_snapshot()
    teardown = Teardown()
    problems: list[str] = []
    exit_code = 0
    baseline: dict[str, procstat.GroupUsage] = {}
    loaded: dict[str, procstat.GroupUsage] = {}
    docker_note: str | None = None
    sanity: list[str] = []
    timings: dict[str, float] = {}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    from supervisor.logs import configure

    bench_log = open(base / "bench.log", "a")  # noqa: SIM115 - closed below
    configure(bench_log, "info")
    try:
        with sigterm_as_interrupt():
            try:
                log(f"state under {base}")
                corral = CorralDaemon(base)
                teardown.add("corral daemon", corral.stop)
                corral.start()
                corral.bootstrap_busybox()
                configs = base / "configs"
                configs.mkdir()
                teardown.add("corral configs", lambda: withdraw_configs(corral, configs, timeout=120))

                dockerd: Dockerd | None = None
                dockerd_path = shutil.which("dockerd")
                if args.skip_dockerd or dockerd_path is None or args.docker is None:
                    docker_note = "skipped (--skip-dockerd)" if args.skip_dockerd else "dockerd or docker not installed"
                else:
                    peer = Dockerd(base, f"{base.name}-dockerd", dockerd_path, args.docker)
                    teardown.add("dockerd", peer.stop)
                    teardown.add("dockerd containers", lambda: remove_docker_containers(peer))
                    dockerd = peer
                    try:
                        dockerd.start()
                        dockerd.import_image(busybox_layer_blob(corral.root), IMAGE)
                        meta["dockerd"] = dockerd.info
                    except ServiceError as err:
                        docker_note = f"dockerd failed to start: {str(err).splitlines()[0]}"
                        dockerd = None

                log(f"baseline: 0 containers, settle {args.settle:g} s, window {args.baseline_seconds:g} s ...")
                time.sleep(args.settle)
                groups = corral_groups(corral)
                if dockerd is not None:
                    groups |= dockerd_groups(dockerd)
                baseline = measure(groups, args.baseline_seconds)
                add_totals(baseline)

                log(f"corral: {args.containers} containers in {args.files} TOML files ...")
                t0 = time.monotonic()
                names = write_configs(configs, args.containers, args.files)
                apply_toml(corral, configs, timeout=300)
                timings["corral_all_running_s"] = time.monotonic() - t0
                log(f"corral: all running after {timings['corral_all_running_s']:.1f} s")
                if dockerd is not None:
                    log(f"dockerd: {args.containers} x docker run -d --restart always ({args.workers} at a time) ...")
                    t0 = time.monotonic()
                    started, errors = run_docker_containers(
                        dockerd, args.containers, args.workers, time.monotonic() + args.dockerd_timeout
                    )
                    timings["dockerd_all_running_s"] = time.monotonic() - t0
                    if errors:
                        docker_note = f"only {started}/{args.containers} dockerd containers started: {errors[0]}"
                        log(docker_note)
                        dockerd = None
                    else:
                        log(f"dockerd: all running after {timings['dockerd_all_running_s']:.1f} s")

                log(f"settle {args.settle:g} s, then a {args.seconds:g} s idle window ...")
                time.sleep(args.settle)
                groups = corral_groups(corral)
                if dockerd is not None:
                    groups |= dockerd_groups(dockerd)
                loaded = measure(groups, args.seconds)
                add_totals(loaded)
                sanity = sanity_after(corral, names)
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
    n = args.containers
    table = usage_table(loaded, baseline)
    per = per_container(loaded, baseline, n)
    print(f"idle: {n} containers per engine, {args.seconds:g} s window (baseline: 0 containers, "
          f"{args.baseline_seconds:g} s window)")  # fmt: skip
    print(table)
    if docker_note:
        print(f"dockerd: {docker_note}")
    print(f"\nmemory per container (KiB), {n} containers:")
    for total, entry in per.items():
        print(
            f"  {total:13s} RSS {fmt(entry['rss_kb_per_container'], 0)}, PSS {fmt(entry['pss_kb_per_container'], 0)}"
            f"   marginal (minus baseline): RSS {fmt(entry.get('marginal_rss_kb_per_container'), 0)},"
            f" PSS {fmt(entry.get('marginal_pss_kb_per_container'), 0)}"
        )
    ratios: dict[str, float | None] = {}
    ours, theirs = loaded.get("corral total"), loaded.get("docker total")
    if ours is not None and theirs is not None:
        ratios = {
            "cpu_percent": ratio(ours.cpu_percent, theirs.cpu_percent),
            "schedstat_percent": ratio(ours.run_percent, theirs.run_percent),
            "wakeups_per_second": ratio(ours.wakeups_per_second, theirs.wakeups_per_second),
            "rss": ratio(ours.rss_kb, theirs.rss_kb),
            "pss": ratio(ours.pss_kb, theirs.pss_kb),
        }
        print(
            "\nratios, corral (daemon + launcher) / docker (dockerd + containerd + shims), same window: "
            + ", ".join(f"{k} {fmt_ratio(v)}" for k, v in ratios.items())
        )
    daemon = loaded.get("corral daemon")
    verdict = None
    if daemon is not None:
        verdict = daemon.cpu_percent < TARGET_DAEMON_CPU_PERCENT
        print(
            f"\ntarget: corral daemon under {TARGET_DAEMON_CPU_PERCENT:g}% of a core with {n} idle containers: "
            f"{'PASS' if verdict else 'FAIL'} ({daemon.cpu_percent:.3f}% from ticks, {daemon.run_percent:.3f}% "
            f"from schedstat, {daemon.wakeups_per_second:.2f} wake-ups/s)"
        )
    if sanity:
        print(f"not idle: {len(sanity)} containers restarted or stopped during the run: {sanity[:5]}")
    if problems:
        print("\nteardown notes:\n  " + "\n  ".join(problems))
    print("\nleak check: " + ("clean" if not leaks else json.dumps(leaks, indent=2)))
    for note in foreign:
        print(f"  (not a leak: {note})")
    document = {
        "meta": {**meta, "timings": timings},
        "baseline": {k: v.as_json() for k, v in baseline.items()},
        "loaded": {k: v.as_json() for k, v in loaded.items()},
        "per_container": per,
        "ratios_corral_over_docker": ratios,
        "dockerd_note": docker_note,
        "target_daemon_cpu_percent": TARGET_DAEMON_CPU_PERCENT,
        "target_met": verdict,
        "not_idle": sanity,
        "table": table,
        "teardown_problems": problems,
        "leaks": leaks,
        "foreign_netns": foreign,
    }
    args.json.write_text(json.dumps(document, indent=2) + "\n")
    print(f"results: {args.json}")
    if exit_code:
        return exit_code
    return 1 if leaks or sanity or not loaded else 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
