"""The runtime alone: corral's launcher against `runc run`, `/bin/true` each, interleaved.

One corral container, from nothing back to nothing, as the engine does it:

    create its cgroup (the host's driver, from detect())
    make its dirs (upper, work, merged, scratch, log) and its LaunchSpec
    launcher.start()          -> the launcher forked it and it exec'd
    pidfd readable            -> it exited
    launcher.wait(), forget() -> the launcher reaped it and drained its output
    remove the cgroup and the dirs

runc's side is the wall time of `runc run` (which creates its own cgroup
and state dir, runs, and deletes both), started from this same process.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import trio

from supervisor.isolation.cgroups import Resources, detect
from supervisor.isolation.launcher.client import LauncherClient, open_launcher
from supervisor.reactor.launchspec import build_launch_spec
from supervisor.reactor.model import ContainerSpec, merge_image_config
from supervisor.storage.images import ImageStore
from supervisor.storage.snapshots import create_snapshot

PHASES = ("prepare", "start_to_exec", "exec_to_exit", "reap_and_teardown")


@dataclass
class LauncherSamples:
    total_ms: list[float] = field(default_factory=list)
    phases_ms: dict[str, list[float]] = field(default_factory=lambda: {p: [] for p in PHASES})
    launcher_pid: int = 0
    failures: list[str] = field(default_factory=list)


@dataclass
class RuncSamples:
    total_ms: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def _ms(start: int, end: int) -> float:
    return (end - start) / 1e6


class LauncherBench:
    def __init__(self, *, root: Path, run_dir: Path, cgroup_parent: str, image_ref: str, args: tuple[str, ...]) -> None:
        self.root = root
        self.run_dir = run_dir
        self.cgroup_parent = cgroup_parent
        self.containers_dir = root / "bench-containers"
        self.driver = detect()
        images = ImageStore(root)
        image = images.resolve(image_ref)
        self.layers = images.layer_dirs(image)
        self.spec = merge_image_config(ContainerSpec(image=image_ref, image_id=image.id, cmd=args), image.config)
        try:
            self.resolv_conf = Path("/etc/resolv.conf").read_text()
        except OSError:
            self.resolv_conf = ""
        self._count = 0

    async def one(self, launcher: LauncherClient, samples: LauncherSamples, record: bool) -> None:
        self._count += 1
        container_id = f"{os.getpid():08x}{self._count:08x}".ljust(64, "0")
        container_dir = self.containers_dir / container_id
        t0 = time.perf_counter_ns()
        cgroup = self.driver.create(self.cgroup_parent, container_id, Resources())
        try:
            container_dir.mkdir(parents=True)
            create_snapshot(container_dir)
            (container_dir / "scratch").mkdir()
            log_path = container_dir / "json.log"
            log_path.touch(mode=0o640)
            spec = build_launch_spec(
                container_id=container_id,
                spec=self.spec,
                state_root=self.root,
                container_dir=container_dir,
                layers=self.layers,
                cgroup=cgroup.membership(),
                log_path=log_path,
                host_resolv_conf=self.resolv_conf,
            )
            t1 = time.perf_counter_ns()
            started = await launcher.start(spec)
            t2 = time.perf_counter_ns()
            try:
                await trio.lowlevel.wait_readable(started.pidfd)
                t3 = time.perf_counter_ns()
                status = await launcher.wait(container_id)
                await launcher.forget(container_id)
            finally:
                os.close(started.pidfd)
                for fd in (started.stdin_fd, started.pty_fd):
                    if fd is not None:
                        os.close(fd)
        finally:
            removed = cgroup.remove()
            shutil.rmtree(container_dir, ignore_errors=True)
        t4 = time.perf_counter_ns()
        if status is None or status.exit_code != 0:
            samples.failures.append(f"{container_id[:16]}: exit {status}")
        if not removed:
            samples.failures.append(f"{container_id[:16]}: cgroup not removed")
        if record:
            samples.total_ms.append(_ms(t0, t4))
            for name, (a, b) in zip(PHASES, ((t0, t1), (t1, t2), (t2, t3), (t3, t4)), strict=True):
                samples.phases_ms[name].append(_ms(a, b))


def run_runc(run: Callable[[str], object], samples: RuncSamples, container_id: str, record: bool) -> None:
    t0 = time.perf_counter_ns()
    result = run(container_id)
    t1 = time.perf_counter_ns()
    returncode = getattr(result, "returncode", 0)
    if returncode != 0:
        stderr = getattr(result, "stderr", b"") or b""
        samples.failures.append(
            f"{container_id}: runc exited {returncode}: {stderr.decode(errors='replace').strip()[:200]}"
        )
    if record:
        samples.total_ms.append(_ms(t0, t1))


async def _compare(
    bench: LauncherBench, runc_run: Callable[[str], object] | None, runs: int, warmups: int, tag: str, gap: float
) -> tuple[LauncherSamples, RuncSamples | None]:
    ours = LauncherSamples()
    theirs = RuncSamples() if runc_run is not None else None
    async with open_launcher(bench.run_dir) as launcher:
        ours.launcher_pid = launcher.pid
        for i in range(warmups + runs):
            record = i >= warmups
            # Idle before every start, so each finds the host as a lone start would: kernel state
            # left by the previous start (an RCU grace period still in flight after a cgroup
            # migration, say) would otherwise make the next one cheaper than it is on its own.
            # Alternate who goes first, so drift hits both alike.
            order = ("corral", "runc") if i % 2 == 0 else ("runc", "corral")
            for who in order:
                if who == "runc" and (theirs is None or runc_run is None):
                    continue
                await trio.sleep(gap)
                if who == "corral":
                    await bench.one(launcher, ours, record)
                else:
                    assert theirs is not None and runc_run is not None
                    # Blocking on purpose: nothing else runs in this trio program meanwhile.
                    run_runc(runc_run, theirs, f"{tag}-runc-{i}", record)
    if bench.containers_dir.exists():
        shutil.rmtree(bench.containers_dir, ignore_errors=True)
    return ours, theirs


def compare(
    bench: LauncherBench, runc_run: Callable[[str], object] | None, runs: int, warmups: int, tag: str, gap: float = 0.05
) -> tuple[LauncherSamples, RuncSamples | None]:
    return trio.run(_compare, bench, runc_run, runs, warmups, tag, gap)
