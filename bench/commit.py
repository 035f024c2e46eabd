"""Commit time for 1 GiB of changes, against `tar -c | gzip` of the same upper dir, as ratios in one run.

    sudo .venv/bin/python bench/commit.py [-n 3] [--scenario files|big|both] [--gzip-writer]

Two containers write 1 GiB each from /dev/urandom (incompressible, the
worst case for gzip and the honest one for a tar): 1000 files of 1 MiB,
and one file of 1 GiB. For each, interleaved N times:

- corral: `POST /commit` of the (stopped) container, wall time until the
  201 (upper dir walked, layer tar written and hashed and fsynced, stored
  in the content store (copied, fsynced, measured) and the image added);
  the image is removed again (`DELETE /images/{id}`) before the next run;
- `tar -C upper -cf - . | gzip -c > file` (gzip's default level, as a
  pushed layer is compressed), and `tar -cf file` (no compression), both
  without fsync;
- with `--gzip-writer`, for the choice of format: corral's layer writer
  alone, at gzip level 1 and without compression.

Prints a table and writes bench/results/commit.json. Everything lives
under one /tmp/corral-bench-* dir, is torn down and leak-checked at the end.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import leakcheck  # noqa: E402
from common import Teardown, api, api_json, check_prerequisites, fmt, fmt_ratio, log, render_table, run_meta  # noqa: E402
from services import BENCH_MARK, CorralDaemon, sigterm_as_interrupt  # noqa: E402

MIB = 1 << 20
SCENARIOS = {
    "files": (
        "1000 files x 1 MiB",
        "mkdir /data && for i in $(seq 1000); do head -c 1048576 /dev/urandom > /data/f$i; done",
    ),
    "big": ("1 file x 1 GiB", "mkdir /data && head -c 1073741824 /dev/urandom > /data/big"),
}


def _timed(action: Any) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def _shell(command: str) -> None:
    subprocess.run(["sh", "-ec", command], check=True)


def _prepare(corral: CorralDaemon, name: str, script: str) -> Path:
    """A stopped container whose upper dir holds the scenario's files; its upper dir."""
    created = api_json(
        corral.socket,
        "POST",
        "/containers/create",
        query={"name": name},
        json={"Image": "busybox", "Cmd": ["sh", "-c", script]},
    )
    response = api(corral.socket, "POST", f"/containers/{created['Id']}/start")
    if not response.ok:
        raise RuntimeError(f"start {name}: {response.message}")
    result = api_json(corral.socket, "POST", f"/containers/{created['Id']}/wait", timeout=600)
    if result["StatusCode"] != 0:
        raise RuntimeError(f"{name} exited with {result['StatusCode']}")
    return corral.root / "containers" / str(created["Id"]) / "upper"


def _commit(corral: CorralDaemon, name: str) -> float:
    started = time.perf_counter()
    response = api(corral.socket, "POST", "/commit", query={"container": name}, timeout=1200)
    elapsed = time.perf_counter() - started
    if response.status != 201:
        raise RuntimeError(f"commit {name}: {response.status} {response.message}")
    removed = api(corral.socket, "DELETE", f"/images/{response.json()['Id']}", timeout=600)
    if not removed.ok:
        raise RuntimeError(f"rmi: {removed.message}")
    return elapsed


def _writer(upper: Path, out: Path, level: int | None) -> float:
    from supervisor.storage.commit import write_layer

    elapsed = _timed(lambda: write_layer(upper, out, compress_level=level))
    out.unlink()
    return elapsed


def measure(corral: CorralDaemon, base: Path, key: str, runs: int, gzip_writer: bool) -> dict[str, Any]:
    label, script = SCENARIOS[key]
    log(f"{label}: writing the data in a container ...")
    upper = _prepare(corral, f"bench-{key}", script)
    out = base / "out"
    samples: dict[str, list[float]] = {"corral_commit": [], "tar_gzip": [], "tar": []}
    if gzip_writer:
        samples.update({"writer_plain": [], "writer_gzip1": []})
    for run in range(runs):
        order = list(samples)
        if run % 2:
            order.reverse()
        for what in order:
            log(f"{label}: run {run + 1}/{runs}: {what}")
            if what == "corral_commit":
                samples[what].append(_commit(corral, f"bench-{key}"))
            elif what == "tar_gzip":
                samples[what].append(_timed(lambda: _shell(f"tar -C {upper} -cf - . | gzip -c > {out}")))
            elif what == "tar":
                samples[what].append(_timed(lambda: _shell(f"tar -C {upper} -cf {out} .")))
            else:
                samples[what].append(_writer(upper, out, 1 if what == "writer_gzip1" else None))
            out.unlink(missing_ok=True)
    medians = {what: statistics.median(values) for what, values in samples.items()}
    return {
        "scenario": label,
        "bytes": 1024 * MIB,
        "samples_s": samples,
        "median_s": medians,
        "ratio_commit_vs_tar_gzip": medians["corral_commit"] / medians["tar_gzip"],
        "ratio_commit_vs_tar": medians["corral_commit"] / medians["tar"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--runs", type=int, default=3)
    parser.add_argument("--scenario", choices=["files", "big", "both"], default="both")
    parser.add_argument("--gzip-writer", action="store_true", help="also time the layer writer at gzip -1 and plain")
    parser.add_argument("--json", type=Path, default=BENCH_DIR / "results" / "commit.json")
    args = parser.parse_args()
    if (code := check_prerequisites("commit")) is not None:
        return code
    from supervisor.logs import configure

    base = Path(tempfile.mkdtemp(prefix=f"{BENCH_MARK}-", dir="/tmp"))
    net_before = leakcheck.net_snapshot()
    bench_log = open(base / "bench.log", "a")  # noqa: SIM115 - closed below
    configure(bench_log, "warning")
    teardown = Teardown()
    results: list[dict[str, Any]] = []
    problems: list[str] = []
    exit_code = 0
    try:
        with sigterm_as_interrupt():
            try:
                corral = CorralDaemon(base)
                teardown.add("corral daemon", corral.stop)
                corral.start()
                corral.bootstrap_busybox()
                for key in ("files", "big") if args.scenario == "both" else (args.scenario,):
                    results.append(measure(corral, base, key, args.runs, args.gzip_writer))
            except Exception as err:  # noqa: BLE001 - report, then tear down
                log(f"failed: {type(err).__name__}: {err}")
                exit_code = 1
    finally:
        problems = teardown.run()
        bench_log.close()
        import shutil

        shutil.rmtree(base, ignore_errors=True)
        leaks = leakcheck.check(base, net_before, mark=base.name)
        if leaks:
            problems.append(f"leaks: {leaks}")
    rows = []
    for result in results:
        medians = result["median_s"]
        rows.append(
            [
                result["scenario"],
                fmt(medians["corral_commit"], 2, " s"),
                fmt(medians["tar_gzip"], 2, " s"),
                fmt(medians["tar"], 2, " s"),
                fmt_ratio(result["ratio_commit_vs_tar_gzip"]),
                fmt_ratio(result["ratio_commit_vs_tar"]),
                fmt(medians.get("writer_plain"), 2, " s") if "writer_plain" in medians else "-",
                fmt(medians.get("writer_gzip1"), 2, " s") if "writer_gzip1" in medians else "-",
            ]
        )
    header = ["1 GiB of changes", "corral commit", "tar|gzip", "tar", "vs tar|gzip", "vs tar", "writer", "writer gz1"]
    print(render_table(header, rows))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({**run_meta(runs=args.runs), "results": results, "problems": problems}, indent=2))
    for problem in problems:
        print(f"problem: {problem}", file=sys.stderr)
    return 1 if problems or exit_code else 0


if __name__ == "__main__":
    sys.exit(main())
