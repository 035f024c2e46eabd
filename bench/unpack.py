"""Layer unpack throughput: corral against GNU tar and umoci on the same layers, as ratios measured in one run.

    sudo .venv/bin/python bench/unpack.py [-n 5] [--size-mb 200] [--dir /tmp]

Layers: (a) the busybox layer `corral image bootstrap` builds, (b) a
synthetic layer of about --size-mb MB: many small files (100 B - 8 KB, in
directories of 500) and six big ones, some symlinks and hardlinks,
text-like content; both gzip level 6 (Docker's default).

Contenders, each into a fresh directory, rounds interleaved (A B C, B C A, ...):
  corral       unpack_layer on the gzip blob, in a child process (timed inside it, without the
               interpreter's start-up): decompression, blob and diff-ID hashing, unpack, syncfs, rename
  tar          `tar -xzf` (GNU tar; gzip runs in a second process) and `tar -xzf` + `sync -f` (syncfs)
  umoci        `umoci unpack` of an OCI layout holding the layer (verifies digests, writes an mtree)
  plain        corral and `tar -xf` on the uncompressed tar: the unpacking alone
Where: by default a fresh ext4 filesystem made for the run (a sparse image file in the
bench's temp dir, loop-mounted, unmounted at the end), so other processes' deletions on the
host's filesystem cannot disturb it: on ext4, creating inodes shortly after many were deleted
goes through the allocator's `recently_deleted` scan (measured here: tar -x 1.4 s -> 13 s).
`--fs dir` unpacks straight into --dir instead. Nothing is deleted until the end.

Writes bench/results/unpack.json; prints a table with medians, MB/s of uncompressed tar, ratios.
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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from unpack_inputs import Layer, busybox_layer, oci_layout, synthetic_layer  # noqa: E402

REPO = BENCH_DIR.parent
DEFAULT_JSON = BENCH_DIR / "results" / "unpack.json"


@dataclass
class Contender:
    key: str
    label: str
    layer: Layer
    baseline: str | None = None
    samples_ms: list[float] = field(default_factory=list)
    extra: dict[str, list[float]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    skipped: str | None = None

    @property
    def median(self) -> float | None:
        return statistics.median(self.samples_ms) if self.samples_ms else None


# -- running -----------------------------------------------------------------------------------


_CHILD = """
import json, sys, time
from pathlib import Path
from supervisor.logs import configure
from supervisor.storage import layers
configure(sys.stderr, "warning")
blob, diff_id, root = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
synced = []
original = layers._syncfs
def timed_syncfs(path):
    t0 = time.perf_counter_ns(); original(path); synced.append(time.perf_counter_ns() - t0)
layers._syncfs = timed_syncfs
def rss(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) / 1024
with open("/proc/self/clear_refs", "w") as refs:
    refs.write("5")  # resets the peak RSS (VmHWM) to the current RSS
baseline = rss("VmRSS:")
t0 = time.perf_counter_ns()
layers.unpack_layer(blob, diff_id, root)
elapsed = time.perf_counter_ns() - t0
print(json.dumps({"ms": elapsed / 1e6, "syncfs_ms": sum(synced) / 1e6, "rss_growth_mb": rss("VmHWM:") - baseline}))
"""


def run_corral(blob: Path, diff_id: str, dest: Path) -> tuple[float, dict[str, float]]:
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, str(blob), diff_id, str(dest)],
        capture_output=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        cwd=REPO,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(result.stderr.decode(errors="replace").strip()[-400:])
    report = json.loads(result.stdout.decode().strip().splitlines()[-1])
    return report["ms"], {"syncfs_ms": report["syncfs_ms"], "rss_growth_mb": report["rss_growth_mb"]}


def run_timed(argvs: list[list[str]]) -> float:
    t0 = time.perf_counter_ns()
    for argv in argvs:
        result = subprocess.run(argv, capture_output=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)}: {result.stderr.decode(errors='replace').strip()[:300]}")
    return (time.perf_counter_ns() - t0) / 1e6


class Runner:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.serial = 0
        self.tar = shutil.which("tar")
        self.umoci = shutil.which("umoci")
        self.layouts: dict[str, Path] = {}

    def fresh(self, what: str) -> Path:
        self.serial += 1
        path = self.base / "out" / f"{what}-{self.serial}"
        path.mkdir(parents=True)
        return path

    def run(self, contender: Contender) -> tuple[float, dict[str, float]]:
        layer = contender.layer
        kind = contender.key.split(":")[1]
        extra: dict[str, float] = {}
        if kind == "corral":
            elapsed, extra = run_corral(layer.gz, layer.diff_id, self.fresh("corral"))
        elif kind == "corral_plain":
            elapsed, extra = run_corral(layer.tar, layer.diff_id, self.fresh("corral-plain"))
        elif kind == "tar":
            elapsed = run_timed([[self._tar(), "--numeric-owner", "-xzf", str(layer.gz), "-C", str(self.fresh("tar"))]])
        elif kind == "tar_sync":
            dest = self.fresh("tar-sync")
            elapsed = run_timed(
                [[self._tar(), "--numeric-owner", "-xzf", str(layer.gz), "-C", str(dest)], ["sync", "-f", str(dest)]]
            )
        elif kind == "tar_plain":
            dest = self.fresh("tar-plain")
            elapsed = run_timed([[self._tar(), "--numeric-owner", "-xf", str(layer.tar), "-C", str(dest)]])
        elif kind == "umoci":
            assert self.umoci is not None
            if layer.name not in self.layouts:
                self.layouts[layer.name] = oci_layout(self.base, layer)
            layout = self.layouts[layer.name]
            bundle = self.fresh("umoci")
            bundle.rmdir()
            elapsed = run_timed([[self.umoci, "unpack", "--image", f"{layout}:bench", str(bundle)]])
        else:
            raise AssertionError(kind)
        return elapsed, extra

    def _tar(self) -> str:
        assert self.tar is not None
        return self.tar


def contenders_for(layer: Layer, runner: Runner) -> list[Contender]:
    name = layer.name
    found = [
        Contender(f"{name}:corral", "corral unpack_layer (gzip)", layer, baseline=f"{name}:tar"),
        Contender(f"{name}:tar", "tar -xzf", layer),
        Contender(f"{name}:tar_sync", "tar -xzf + sync -f", layer),
        Contender(f"{name}:umoci", "umoci unpack", layer),
        Contender(f"{name}:corral_plain", "corral unpack_layer (plain tar)", layer, baseline=f"{name}:tar_plain"),
        Contender(f"{name}:tar_plain", "tar -xf (plain tar)", layer),
    ]
    for contender in found:
        if "tar" in contender.key.split(":")[1] and runner.tar is None:
            contender.skipped = "GNU tar not installed"
        if contender.key.endswith(":umoci") and runner.umoci is None:
            contender.skipped = "umoci not installed (apt-get install umoci)"
    return found


def run_interleaved(runner: Runner, contenders: list[Contender], runs: int, warmups: int) -> None:
    active = [c for c in contenders if c.skipped is None]
    for round_index in range(warmups + runs):
        shift = round_index % len(active)
        for contender in active[shift:] + active[:shift]:
            # Each run starts with nothing dirty: a syncfs must not pay for the previous run's writeback.
            os.sync()
            try:
                elapsed, extra = runner.run(contender)
            except Exception as err:  # noqa: BLE001 - recorded, the others go on
                contender.failures.append(f"{type(err).__name__}: {err}"[:400])
                continue
            if round_index >= warmups:
                contender.samples_ms.append(elapsed)
                for key, value in extra.items():
                    contender.extra.setdefault(key, []).append(value)


# -- report -----------------------------------------------------------------------------------


def render(layers: list[Layer], contenders: list[Contender]) -> str:
    by_key = {c.key: c for c in contenders}
    lines = []
    for layer in layers:
        lines.append(
            f"\n{layer.name}: {layer.tar_bytes / 1e6:.1f} MB tar, {layer.members} members, "
            f"{layer.gz.stat().st_size / 1e6:.1f} MB gzip"
        )
        lines.append(f"  {'contender':34} {'median ms':>10} {'MB/s':>8} {'ratio':>16}  notes")
        for contender in (c for c in contenders if c.layer is layer):
            if contender.skipped:
                lines.append(f"  {contender.label:34} {'-':>10} {'-':>8} {'':>16}  skipped: {contender.skipped}")
                continue
            median = contender.median
            if median is None:
                lines.append(f"  {contender.label:34} {'failed':>10}  {'; '.join(contender.failures)[:200]}")
                continue
            ratio = ""
            base = by_key.get(contender.baseline or "")
            if base is not None and base.median:
                ratio = f"{median / base.median:.2f}x {base.label.split()[0]}"
            umoci = by_key.get(f"{layer.name}:umoci")
            notes = []
            if contender.key.endswith(":corral") and umoci is not None and umoci.median:
                notes.append(f"{median / umoci.median:.2f}x umoci")
            if "syncfs_ms" in contender.extra:
                notes.append(f"syncfs {statistics.median(contender.extra['syncfs_ms']):.0f} ms")
            if "rss_growth_mb" in contender.extra:
                notes.append(f"peak RSS +{max(contender.extra['rss_growth_mb']):.0f} MB")
            mb_s = layer.tar_bytes / 1e6 / (median / 1000)
            lines.append(f"  {contender.label:34} {median:>10.1f} {mb_s:>8.1f} {ratio:>16}  {', '.join(notes)}")
    return "\n".join(lines)


def ratio(contender: Contender, contenders: list[Contender]) -> float | None:
    base = next((c.median for c in contenders if c.key == contender.baseline), None)
    return contender.median / base if contender.median and base else None


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--runs", type=int, default=5)
    parser.add_argument("--warmups", type=int, default=1)
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--dir", type=Path, default=Path("/tmp"), help="the temporary dir's parent")
    parser.add_argument("--fs", choices=("loop", "dir"), default="loop", help="a fresh loop-mounted ext4, or --dir")
    parser.add_argument("--fs-size-gb", type=int, default=16)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    parser.add_argument("--keep", action="store_true", help="keep the temporary dir")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    if os.geteuid() != 0:
        print("unpack: must run as root (owners, device nodes, overlay xattrs)", file=sys.stderr)
        return 2
    base = Path(tempfile.mkdtemp(prefix="corral-bench-unpack-", dir=args.dir))
    scratch = base / "fs"
    exit_code = 0
    try:
        print(f"[bench] building layers under {base} ...", file=sys.stderr)
        layers = [busybox_layer(base), synthetic_layer(base, args.size_mb)]
        if args.fs == "loop":
            make_scratch_fs(base / "fs.img", scratch, args.fs_size_gb)
        else:
            scratch.mkdir()
        os.sync()  # the inputs' writeback must not land inside a measurement
        runner = Runner(scratch)
        contenders: list[Contender] = []
        for layer in layers:
            group = contenders_for(layer, runner)
            contenders += group
            runs = args.runs if layer.name != "busybox" else max(args.runs, 10)
            print(f"[bench] {layer.name}: {runs} interleaved rounds ...", file=sys.stderr)
            run_interleaved(runner, group, runs, args.warmups)
        table = render(layers, contenders)
        print(table)
        results = {
            "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "host": {"kernel": platform.release(), "cpus": os.cpu_count(), "python": platform.python_version()},
            "corral_commit": subprocess.run(
                ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
            ).stdout.strip(),
            "filesystem": subprocess.run(
                ["findmnt", "-no", "SOURCE,FSTYPE,OPTIONS", "-T", str(scratch)], capture_output=True, text=True
            ).stdout.strip(),
            "versions": {
                "tar": _version([runner.tar, "--version"]) if runner.tar else None,
                "umoci": _version([runner.umoci, "--version"]) if runner.umoci else None,
            },
            "layers": [
                {
                    "name": layer.name,
                    "tar_bytes": layer.tar_bytes,
                    "gzip_bytes": layer.gz.stat().st_size,
                    "members": layer.members,
                }
                for layer in layers
            ],
            "contenders": [
                {
                    "key": c.key,
                    "label": c.label,
                    "median_ms": c.median,
                    "mb_per_s": (c.layer.tar_bytes / 1e6 / (c.median / 1000)) if c.median else None,
                    "ratio_to_baseline": ratio(c, contenders),
                    "samples_ms": c.samples_ms,
                    "extra": c.extra,
                    "failures": c.failures,
                    "skipped": c.skipped,
                }
                for c in contenders
            ],
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"\n[bench] wrote {args.json}", file=sys.stderr)
        if any(c.failures for c in contenders):
            exit_code = 1
    except KeyboardInterrupt:
        exit_code = 130
    finally:
        if os.path.ismount(scratch) and subprocess.run(["umount", str(scratch)], check=False).returncode != 0:
            print(f"[bench] could not unmount {scratch}", file=sys.stderr)
            exit_code = 1
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
            if base.exists():
                print(f"[bench] could not remove {base}", file=sys.stderr)
                exit_code = 1
    return exit_code


def make_scratch_fs(image: Path, mountpoint: Path, size_gb: int) -> None:
    """A fresh ext4 on a sparse image, loop-mounted (util-linux sets autoclear: umount frees the loop device)."""
    with open(image, "wb") as file:
        file.truncate(size_gb << 30)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", str(image)], check=True)
    mountpoint.mkdir()
    subprocess.run(["mount", "-o", "loop", str(image), str(mountpoint)], check=True)


def _version(argv: list[str]) -> str:
    return subprocess.run(argv, capture_output=True, text=True).stdout.strip().splitlines()[0]


if __name__ == "__main__":
    sys.exit(main())
