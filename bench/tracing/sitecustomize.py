"""Span tracing for `bench/trace_docker_run.py`: loaded into the corral daemon and its launcher only.

The trace script starts the daemon with this directory first on PYTHONPATH
and CORRAL_BENCH_TRACE=<file>; Python imports `sitecustomize` at start-up,
and this module wraps a fixed list of corral functions so each call
appends "pid monotonic_ns B|E label" lines to the file (one O_APPEND write
per line, so the daemon, the launcher and the container's pre-exec child
can share it). The launcher is a child of the daemon and inherits the
environment; so does every container's first process until its exec.

Nothing here changes behaviour; a target that no longer exists is
recorded as "missing" and skipped.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import os
import time
from collections.abc import Callable
from typing import Any

_PATH = os.environ.get("CORRAL_BENCH_TRACE")

# (module, attribute path, label)
TARGETS = (
    # the API and the engine
    ("supervisor.api.connection", "_Connection._exchange", "api.request"),
    ("supervisor.reactor.engine", "Engine.create", "engine.create"),
    ("supervisor.reactor.engine", "Engine.start", "engine.start"),
    ("supervisor.storage.images", "ImageStore.resolve", "images.resolve"),
    ("supervisor.storage.images", "ImageStore.layer_dirs", "images.layer_dirs"),
    ("supervisor.reactor.create", "create_snapshot", "create.create_snapshot"),
    ("supervisor.reactor.state", "write_json_atomic", "state.write_json_atomic"),
    ("supervisor.reactor.inotify", "InotifyHub.watch", "inotify.watch (add a watch)"),
    ("supervisor.isolation.cgroups.v1.driver", "V1Driver.create", "cgroup.create"),
    ("supervisor.isolation.cgroups.v2.driver", "V2Driver.create", "cgroup.create"),
    ("supervisor.isolation.cgroups.v1.cgroup", "V1Cgroup.remove", "cgroup.remove"),
    ("supervisor.isolation.cgroups.v2.cgroup", "V2Cgroup.remove", "cgroup.remove"),
    ("supervisor.reactor.prepare", "launch_spec_for", "launch_spec_for"),
    ("supervisor.reactor.engine", "prepare", "prepare (task)"),
    ("supervisor.reactor.launch", "take_prepared", "take_prepared"),
    ("supervisor.isolation.launcher.client", "LauncherClient.start", "launcher_client.start"),
    ("supervisor.isolation.launcher.client", "LauncherClient.prepare", "launcher_client.prepare"),
    ("supervisor.isolation.launcher.client", "LauncherClient.go", "launcher_client.go"),
    ("supervisor.isolation.launcher.client", "LauncherClient.wait", "launcher_client.wait"),
    ("supervisor.isolation.launcher.client", "LauncherClient.forget", "launcher_client.forget"),
    ("supervisor.reactor.supervise", "record_exit", "supervise.record_exit"),
    ("supervisor.reactor.supervise", "retire_container", "supervise.retire_container (auto-remove)"),
    ("supervisor.reactor.supervise", "delete_retired", "supervise.delete_retired (after the grace)"),
    ("supervisor.reactor.remove", "_delete_files", "remove._delete_files (worker thread)"),
    # the launcher
    ("supervisor.isolation.launcher.containers", "Containers.start", "launcher.start/prepare"),
    ("supervisor.isolation.launcher.containers", "Containers.go", "launcher.go"),
    ("supervisor.isolation.launcher.containers", "Containers._fork", "launcher.fork_container"),
    ("supervisor.isolation.launcher.spares", "Spares.take", "launcher.spare_handover"),
    ("supervisor.isolation.launcher.spares", "Spares.fork", "launcher.spare_fork (ahead of a create)"),
    ("supervisor.isolation.launcher.containers", "open_stdio", "launcher.open_stdio"),
    ("supervisor.isolation.launcher.containers", "LogFile", "launcher.open_log"),
    ("supervisor.isolation.launcher.containers", "syscalls.clone_process", "launcher.clone3"),
    ("supervisor.isolation.launcher.containers", "Containers._on_status", "launcher.on_status"),
    ("supervisor.isolation.launcher.containers", "Containers._maybe_finish", "launcher.maybe_finish"),
    ("supervisor.isolation.launcher.server", "Launcher._on_signal", "launcher.on_sigchld (reap)"),
    # the container's first process, between fork and exec
    ("supervisor.isolation.process", "_setup_stdio", "child.setup_stdio"),
    ("supervisor.isolation.process", "join_v1_cgroups", "child.join_v1_cgroups"),
    ("supervisor.isolation.process", "_loopback_up", "child.loopback_up"),
    ("supervisor.isolation.process", "syscalls.unshare", "child.unshare (pid ns came with clone3)"),
    ("supervisor.isolation.process", "socket.sethostname", "child.sethostname"),
    ("supervisor.isolation.process", "rootfs.build_rootfs", "child.build_rootfs"),
    ("supervisor.isolation.rootfs", "_mount_overlay", "child.rootfs.mount_overlay"),
    ("supervisor.isolation.rootfs", "_clone_etc_files", "child.rootfs.etc_files"),
    ("supervisor.isolation.rootfs", "_pivot", "child.rootfs.pivot_root"),
    ("supervisor.isolation.rootfs", "_mount_proc", "child.rootfs.proc"),
    ("supervisor.isolation.rootfs", "_mount_dev", "child.rootfs.dev"),
    ("supervisor.isolation.rootfs", "_mount_sys", "child.rootfs.sys"),
    ("supervisor.isolation.rootfs", "_mask", "child.rootfs.masked_paths"),
    ("supervisor.isolation.rootfs", "_make_readonly", "child.rootfs.readonly_paths"),
    ("supervisor.isolation.process", "_prepare_exec", "child.prepare_exec (user, caps, checks)"),
    ("supervisor.isolation.process", "_park", "child.park (until go)"),
    ("supervisor.isolation.process", "_exec", "child.exec"),
)


def _install(path: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)

    def mark(event: str) -> None:
        os.write(fd, f"{os.getpid()} {time.monotonic_ns()} {event}\n".encode())

    def wrapped(original: Callable[..., Any], label: str) -> Callable[..., Any]:
        if inspect.iscoroutinefunction(original):

            @functools.wraps(original)
            async def traced_async(*args: Any, **kwargs: Any) -> Any:
                mark(f"B {label}")
                try:
                    return await original(*args, **kwargs)
                finally:
                    mark(f"E {label}")

            return traced_async

        @functools.wraps(original)
        def traced(*args: Any, **kwargs: Any) -> Any:
            mark(f"B {label}")
            try:
                return original(*args, **kwargs)
            finally:
                mark(f"E {label}")

        return traced

    for module_name, attribute, label in TARGETS:
        try:
            owner: Any = importlib.import_module(module_name)
            *parents, name = attribute.split(".")
            for parent in parents:
                owner = getattr(owner, parent)
            setattr(owner, name, wrapped(getattr(owner, name), label))
        except Exception as err:  # noqa: BLE001 - trace what we can
            mark(f"missing {module_name}.{attribute}: {type(err).__name__}")

    # A forked container closes every descriptor not its own; the trace file is kept open
    # through that, else the child's marks fail with EBADF.
    try:
        containers: Any = importlib.import_module("supervisor.isolation.launcher.containers")
        syscalls: Any = importlib.import_module("supervisor.isolation.syscalls")
        real_close = syscalls.close_fds_except

        def close_fds_except(keep: set[int]) -> None:
            real_close(keep | {fd})

        containers.close_fds_except = syscalls.close_fds_except = close_fds_except
    except Exception as err:  # noqa: BLE001
        mark(f"missing close_fds_except hook: {type(err).__name__}")

    # The exec itself, so the trace shows when the container stops being Python.
    try:
        process: Any = importlib.import_module("supervisor.isolation.process")
        real_execve = os.execve

        def execve(*args: Any) -> Any:
            mark("I child.execve")
            return real_execve(*args)

        process.os = _OsProxy(process.os, execve)
    except Exception as err:  # noqa: BLE001
        mark(f"missing execve hook: {type(err).__name__}")


class _OsProxy:
    """`os` for supervisor.isolation.process only, with execve traced."""

    def __init__(self, real: Any, execve: Callable[..., Any]) -> None:
        self._real = real
        self.execve = execve

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


if _PATH:
    _install(_PATH)
