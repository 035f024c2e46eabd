"""Snapshot set-up cost against image depth: containers over 1-, 10-, 50- and 120-layer images.

    sudo .venv/bin/python bench/snapshot_setup.py [-n 30] [--layers 1,10,50,120]

The images are busybox plus N-1 one-file layers, added with ImageStore.add_image
to a private daemon's store (and unpacked by a first, unmeasured container).
Three measurements, rounds interleaved across depths (1 10 50 120, 10 50 120 1, ...):

  (a) start -> running: POST /containers/{id}/start against the daemon. It answers once
      the launcher has seen the container's process exec, so it spans the whole start
      path: image and layer lookup, launch spec, clone, namespaces, overlay mount,
      pivot_root, exec. The container was created beforehand (create unpacks layers).
  (b) the overlay mount alone: `mount_overlay` (the code a container's first process
      runs) over the same layer dirs, relative to the same state root, timed in a child
      with its own mount namespace and unmounted after each sample.
  (c) the storage lookup on the start path: ImageStore.container_layers(image id).

Past 54 layers the options no longer fit one page and the mount names each layer by
an O_PATH descriptor (isolation/overlay_mount.py): the 120-layer row shows that path.
Writes bench/results/snapshot_setup.json. Everything lives under one
/tmp/corral-bench-snap-* dir, torn down and checked for leftovers at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from services import BENCH_MARK, REPO, CorralDaemon, ServiceError, cgroup_dirs_named, sigterm_as_interrupt  # noqa: E402

DEFAULT_JSON = BENCH_DIR / "results" / "snapshot_setup.json"
FAKE_ID = "b" * 64

_MOUNT_CHILD = """
import json, os, sys, time
from supervisor.isolation import syscalls
from supervisor.isolation.overlay_mount import mount_overlay
from supervisor.isolation.spec import Rootfs
jobs, rounds = json.loads(sys.argv[1]), int(sys.argv[2])
samples = {key: [] for key in jobs}
keys = list(jobs)
for index in range(rounds + 1):
    shift = index % len(keys)
    for key in keys[shift:] + keys[:shift]:
        rootfs = Rootfs(**jobs[key])
        t0 = time.perf_counter_ns()
        mount_overlay(rootfs)
        elapsed = time.perf_counter_ns() - t0
        syscalls.umount2(rootfs.merged)
        if index:
            samples[key].append(elapsed / 1e3)
print(json.dumps(samples))
"""


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def p90(values: list[float]) -> float | None:
    if len(values) < 2:
        return median(values)
    return statistics.quantiles(values, n=10, method="inclusive")[8]


def build_images(root: Path, depths: list[int]) -> dict[int, Any]:
    from supervisor.storage.images import ImageStore

    sys.path.insert(0, str(REPO / "tests"))
    from storage.tarbuild import file, tar_bytes

    store = ImageStore(root)
    busybox = store.resolve("busybox:latest")
    config = {key: value for key, value in busybox.config.items() if key not in ("rootfs", "history")}
    images = {}
    for depth in depths:
        layers: list[Path | bytes] = [store.content.path(busybox.layer_digests[0])]
        layers += [tar_bytes(file(f"layers/{depth}/{index}", b"%d\n" % index)) for index in range(1, depth)]
        images[depth] = store.add_image(config, layers, [f"depth{depth}:latest"])
    return images


def measure_starts(corral: CorralDaemon, depths: list[int], rounds: int, warmups: int) -> dict[int, list[float]]:
    from supervisor.cli.client import Client

    samples: dict[int, list[float]] = {depth: [] for depth in depths}
    with Client(corral.socket) as client:
        for index in range(warmups + rounds):
            shift = index % len(depths)
            for depth in depths[shift:] + depths[:shift]:
                created = client.request(
                    "POST", "/containers/create", json={"Image": f"depth{depth}:latest", "Cmd": ["true"]}
                )
                if not created.ok:
                    raise ServiceError(f"create over {depth} layers failed: {created.message}")
                container = created.json()["Id"]
                t0 = time.perf_counter_ns()
                started = client.request("POST", f"/containers/{container}/start")
                elapsed = (time.perf_counter_ns() - t0) / 1e6
                if not started.ok:
                    raise ServiceError(f"start over {depth} layers failed: {started.message}")
                client.request("DELETE", f"/containers/{container}", query={"force": True})
                if index >= warmups:
                    samples[depth].append(elapsed)
    return samples


def measure_mounts(root: Path, images: dict[int, Any], rounds: int) -> tuple[dict[int, list[float]], dict[int, int]]:
    from supervisor.isolation.spec import Rootfs
    from supervisor.storage.images import ImageStore

    store = ImageStore(root)
    jobs: dict[str, dict[str, Any]] = {}
    lengths = {}
    for depth, image in images.items():
        snap = root / "bench-mounts" / f"{depth:03d}{FAKE_ID[3:]}"
        for sub in ("upper", "work", "merged"):
            (snap / sub).mkdir(parents=True)
        rel = os.path.relpath(snap, root)
        rootfs = Rootfs(
            base=str(root),
            lowers=tuple(os.path.relpath(p, root) for p in reversed(store.container_layers(image.id))),
            upper=f"{rel}/upper",
            work=f"{rel}/work",
            merged=str(snap / "merged"),
            scratch=f"{rel}/scratch",
        )
        lengths[depth] = len(rootfs.overlay_options())
        jobs[str(depth)] = {
            "base": rootfs.base,
            "lowers": list(rootfs.lowers),
            "upper": rootfs.upper,
            "work": rootfs.work,
            "merged": rootfs.merged,
            "scratch": rootfs.scratch,
        }
    result = subprocess.run(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            sys.executable,
            "-c",
            _MOUNT_CHILD,
            json.dumps(jobs),
            str(rounds),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )
    if result.returncode != 0:
        raise ServiceError(f"the mount child failed: {result.stderr.strip()[-400:]}")
    raw = json.loads(result.stdout)
    return {int(key): values for key, values in raw.items()}, lengths


def measure_lookups(root: Path, images: dict[int, Any], rounds: int) -> dict[int, list[float]]:
    from supervisor.storage.images import ImageStore

    store = ImageStore(root)
    samples: dict[int, list[float]] = {depth: [] for depth in images}
    for _ in range(rounds):
        for depth, image in images.items():
            t0 = time.perf_counter_ns()
            store.container_layers(image.id)
            samples[depth].append((time.perf_counter_ns() - t0) / 1e3)
    return samples


def leftovers(base: Path) -> dict[str, list[str]]:
    """What this run left behind: processes, mounts, cgroups named after its dir, the dir itself."""
    found: dict[str, list[str]] = {}
    procs = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cgroup = (entry / "cgroup").read_text()
        except OSError:
            continue
        if base.name in cmdline or base.name in cgroup:
            procs.append(f"{entry.name} {cmdline[:100]}")
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines() if str(base) in line]
    for kind, items in (
        ("processes", procs),
        ("mounts", mounts),
        ("cgroups", cgroup_dirs_named(base.name)),
        ("tmp_dirs", [str(base)] if base.exists() else []),
    ):
        if items:
            found[kind] = items
    return found


def render(
    depths: list[int],
    starts: dict[int, list[float]],
    mounts: dict[int, list[float]],
    lookups: dict[int, list[float]],
    lengths: dict[int, int],
) -> str:
    first = depths[0]
    nan = float("nan")
    lines = [
        f"{'layers':>6} {'options':>8} {'start->running ms':>18} {'p90':>7} {'ratio':>6}"
        f" {'mount alone us':>15} {'ratio':>6} {'lookup us':>10}"
    ]
    for depth in depths:
        start, mount, lookup = median(starts[depth]), median(mounts[depth]), median(lookups[depth])
        start_base, mount_base = median(starts[first]), median(mounts[first])
        start_ratio = start / start_base if start and start_base else nan
        mount_ratio = mount / mount_base if mount and mount_base else nan
        lines.append(
            f"{depth:>6} {lengths[depth]:>8} {start or float('nan'):>18.2f} {p90(starts[depth]) or float('nan'):>7.2f}"
            f" {start_ratio:>5.2f}x {mount or float('nan'):>15.0f} {mount_ratio:>5.2f}x {lookup or float('nan'):>10.0f}"
        )
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--runs", type=int, default=30)
    parser.add_argument("--warmups", type=int, default=2)
    parser.add_argument("--layers", default="1,10,50,120", help="image depths, comma-separated")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    parser.add_argument("--keep", action="store_true")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    if os.geteuid() != 0:
        print("snapshot_setup: must run as root", file=sys.stderr)
        return 2
    depths = sorted({int(item) for item in args.layers.split(",")})
    base = Path(tempfile.mkdtemp(prefix=f"{BENCH_MARK}-snap-", dir="/tmp"))
    exit_code = 0
    corral = CorralDaemon(base)
    starts: dict[int, list[float]] = {}
    mounts: dict[int, list[float]] = {}
    lookups: dict[int, list[float]] = {}
    lengths: dict[int, int] = {}
    problems: list[str] = []
    from supervisor.logs import configure

    bench_log = open(base / "bench.log", "a")  # noqa: SIM115 - closed below
    configure(bench_log, "info")
    try:
        with sigterm_as_interrupt():
            try:
                print(f"[bench] state under {base}", file=sys.stderr)
                corral.start()
                corral.bootstrap_busybox()
                images = build_images(corral.root, depths)
                print(f"[bench] (a) start -> running, {args.runs} rounds ...", file=sys.stderr)
                starts = measure_starts(corral, depths, args.runs, args.warmups)
                print("[bench] (b) overlay mount alone ...", file=sys.stderr)
                mounts, lengths = measure_mounts(corral.root, images, args.runs)
                print("[bench] (c) layer lookup ...", file=sys.stderr)
                lookups = measure_lookups(corral.root, images, args.runs)
            finally:
                problems += corral.stop()
                bench_log.close()
                if not args.keep:
                    shutil.rmtree(base, ignore_errors=True)
    except KeyboardInterrupt:
        exit_code = 130
    except ServiceError as err:
        print(f"[bench] {err}", file=sys.stderr)
        exit_code = 1
    left = {} if args.keep else leftovers(base)
    if starts and mounts:
        print(render(depths, starts, mounts, lookups, lengths))
    for problem in problems:
        print(f"[bench] {problem}", file=sys.stderr)
    if left:
        print(f"[bench] LEFT BEHIND: {left}", file=sys.stderr)
        exit_code = exit_code or 1
    results = {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "host": {"kernel": platform.release(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "corral_commit": subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
        "runs": args.runs,
        "depths": {
            str(depth): {
                "option_bytes": lengths.get(depth),
                "start_ms": {
                    "median": median(starts.get(depth, [])),
                    "p90": p90(starts.get(depth, [])),
                    "samples": starts.get(depth, []),
                },
                "mount_us": {"median": median(mounts.get(depth, [])), "samples": mounts.get(depth, [])},
                "lookup_us": {"median": median(lookups.get(depth, [])), "samples": lookups.get(depth, [])},
            }
            for depth in depths
        },
        "problems": problems,
        "leftovers": left,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"[bench] wrote {args.json}", file=sys.stderr)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
