"""`corral daemon`: one trio run holding the launcher link, the engine and the API server."""

from __future__ import annotations

import fcntl
import os
import signal
from dataclasses import dataclass
from pathlib import Path

import structlog
import trio

from supervisor.api.app import build_router
from supervisor.api.http import serve_unix
from supervisor.isolation import syscalls
from supervisor.isolation.cgroups import detect
from supervisor.isolation.launcher.client import open_launcher
from supervisor.reactor.engine import Engine, EngineConfig, open_engine
from supervisor.storage.images import ImageStore

log = structlog.get_logger(__name__)

DEFAULT_ROOT = Path("/var/lib/corral")
DEFAULT_RUN_DIR = Path("/run/corral")
DEFAULT_CGROUP_PARENT = "corral"


@dataclass(frozen=True)
class DaemonOptions:
    root: Path = DEFAULT_ROOT
    run_dir: Path = DEFAULT_RUN_DIR
    cgroup_parent: str = DEFAULT_CGROUP_PARENT
    # Live restore is the default: containers outlive the daemon. This stops them at shutdown instead.
    shutdown_containers: bool = False
    # How long a created container's process, made ahead of its start, waits for it (reactor/prepare.py).
    prepare_window: float = 10.0
    # A directory of TOML container configs to converge on (docs/configuration.md).
    configs: Path | None = None

    @property
    def socket(self) -> Path:
        return self.run_dir / "corral.sock"


class DaemonAlreadyRunning(Exception):
    pass


def _lock_root(root: Path) -> int:
    fd = os.open(root / "daemon.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DaemonAlreadyRunning(f"another corral daemon is using {root}") from None
    return fd


async def _handle_signals(engine: Engine, options: DaemonOptions, cancel_scope: trio.CancelScope) -> None:
    """SIGTERM/SIGINT stop the daemon (and with --shutdown-containers its containers); SIGHUP reloads."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async for signum in signals:
            if signum == signal.SIGHUP:
                log.info("daemon.reload", signal="SIGHUP")
                if engine.reconciler is not None:
                    engine.reconciler.request()
                continue
            log.info("daemon.stopping", signal=signal.Signals(signum).name)
            if options.shutdown_containers:
                await engine.stop_all()
            cancel_scope.cancel()
            return


async def run_daemon(options: DaemonOptions, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    options.root.mkdir(parents=True, exist_ok=True, mode=0o711)
    options.run_dir.mkdir(parents=True, exist_ok=True, mode=0o711)
    lock_fd = _lock_root(options.root)
    # The launcher we start is our child; if it dies, its containers become ours (reactor/orphans.py).
    syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 1)
    try:
        images = ImageStore(options.root)
        cgroups = detect()
        async with open_launcher(options.run_dir) as launcher:
            config = EngineConfig(
                root=options.root,
                run_dir=options.run_dir,
                cgroup_parent=options.cgroup_parent,
                prepare_window=options.prepare_window,
            )
            async with open_engine(config, images=images, cgroups=cgroups, launcher=launcher) as engine:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_handle_signals, engine, options, nursery.cancel_scope)
                    await nursery.start(serve_unix, options.socket, build_router(engine))
                    if options.configs is not None:
                        await engine.use_configs(options.configs.resolve())
                    log.info(
                        "daemon.ready",
                        socket=str(options.socket),
                        root=str(options.root),
                        cgroups=cgroups.version,
                        pid=os.getpid(),
                    )
                    task_status.started()
        # Only an empty parent goes: containers left running under live restore keep theirs.
        cgroups.remove_parent(options.cgroup_parent)
    finally:
        os.close(lock_fd)
    log.info("daemon.stopped")
