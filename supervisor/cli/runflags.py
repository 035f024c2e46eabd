"""`corral run`/`create` flags -> a Docker create body (pure, so it is unit-tested)."""

from __future__ import annotations

import argparse
import os
import shlex
from collections.abc import Mapping
from typing import Any

from supervisor.cli.mountflags import mount_flag, tmpfs_flags, volume_flags
from supervisor.units import parse_cpus, parse_duration, parse_size


def add_create_flags(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--name", help="assign a name to the container")
    add(
        "-e",
        "--env",
        action="append",
        default=[],
        help="set environment variables (KEY=VALUE, or KEY to pass the current value)",
    )
    add("--env-file", action="append", default=[], help="read environment variables from a file")
    add("-w", "--workdir", default="", help="working directory inside the container")
    add("-u", "--user", default="", help="username or UID (format: <name|uid>[:<group|gid>])")
    add("-h", "--hostname", default="", help="container host name")
    add("-l", "--label", action="append", default=[], help="set metadata on the container (KEY=VALUE)")
    add("--entrypoint", help="overwrite the default ENTRYPOINT of the image")
    add("-i", "--interactive", action="store_true", help="keep STDIN open")
    add("-t", "--tty", action="store_true", help="allocate a pseudo-TTY")
    add("--rm", action="store_true", help="automatically remove the container when it exits")
    add("-m", "--memory", help="memory limit (e.g. 32m, 1g)")
    add("--memory-swap", help="memory plus swap limit; -1 for unlimited swap")
    add("--pids-limit", type=int, help="tune the container's pids limit (-1 for unlimited)")
    add("--cpus", help="number of CPUs (e.g. 0.5)")
    add("-c", "--cpu-shares", type=int, help="CPU shares (relative weight)")
    add("--cpuset-cpus", help="CPUs in which to allow execution (0-3, 0,1)")
    add("--cap-add", action="append", default=[], help="add Linux capabilities")
    add("--cap-drop", action="append", default=[], help="drop Linux capabilities")
    add("--security-opt", action="append", default=[], help="security options (no-new-privileges)")
    add("--stop-signal", help="signal to stop the container")
    add("--stop-timeout", type=int, help="timeout (in seconds) to stop a container")
    add("--log-driver", help="logging driver for the container (only json-file)")
    add(
        "--log-opt",
        action="append",
        default=[],
        help="log driver options: max-size=SIZE (e.g. 10m), max-file=N (files kept, with max-size)",
    )
    add("--health-cmd", help="command to run to check health (run with /bin/sh -c)")
    add("--health-interval", help="time between running the check (e.g. 30s)")
    add("--health-timeout", help="maximum time to allow one check to run (e.g. 30s)")
    add("--health-retries", type=int, help="consecutive failures needed to report unhealthy")
    add("--health-start-period", help="start period during which failures do not count")
    add("--no-healthcheck", action="store_true", help="disable any container-specified HEALTHCHECK")
    add("-v", "--volume", action="append", default=[], help="bind mount a volume (NAME:/ctr, /host:/ctr[:ro], /ctr)")
    add("--mount", action="append", default=[], help="attach a mount (type=bind|volume|tmpfs,source=,target=,...)")
    add("--tmpfs", action="append", default=[], help="mount a tmpfs directory (/path[:options])")
    add("image", help="the image to run")
    add("command", nargs=argparse.REMAINDER, help="the command and its arguments")


def _env_entries(items: list[str], files: list[str], environ: Mapping[str, str]) -> list[str]:
    entries: list[str] = []
    for path in files:
        with open(path, encoding="utf-8") as file:
            lines = [line.strip() for line in file]
        items = [line for line in lines if line and not line.startswith("#")] + items
    for item in items:
        if "=" in item:
            entries.append(item)
        elif item in environ:
            # Docker passes `-e KEY` through from the client's environment, and drops it when unset.
            entries.append(f"{item}={environ[item]}")
    return entries


def _labels(items: list[str]) -> dict[str, str]:
    labels = {}
    for item in items:
        key, _, value = item.partition("=")
        labels[key] = value
    return labels


def _nanoseconds(text: str | None, flag: str) -> int:
    return int(parse_duration(text, field=flag) * 1_000_000_000) if text else 0


def _healthcheck(args: argparse.Namespace) -> dict[str, Any] | None:
    """Docker's Healthcheck object from the --health-* flags, as the docker CLI builds it."""
    if args.no_healthcheck:
        return {"Test": ["NONE"]}
    timing = {
        "Interval": _nanoseconds(args.health_interval, "--health-interval"),
        "Timeout": _nanoseconds(args.health_timeout, "--health-timeout"),
        "StartPeriod": _nanoseconds(args.health_start_period, "--health-start-period"),
        "Retries": args.health_retries or 0,
    }
    if args.health_cmd is None:
        return {"Test": None, **timing} if any(timing.values()) else None
    return {"Test": ["CMD-SHELL", args.health_cmd], **timing}


def create_body(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    environ = os.environ if environ is None else environ
    memory = parse_size(args.memory, field="--memory") if args.memory else 0
    if args.memory_swap in (None, ""):
        swap = 0
    elif args.memory_swap.strip() == "-1":
        swap = -1
    else:
        swap = parse_size(args.memory_swap, field="--memory-swap")
    entrypoint: list[str] | None = None
    if args.entrypoint is not None:
        entrypoint = shlex.split(args.entrypoint) if args.entrypoint else [""]
    host_config: dict[str, Any] = {
        "AutoRemove": args.rm,
        "Memory": memory,
        "MemorySwap": swap,
        "NanoCpus": parse_cpus(args.cpus, field="--cpus") if args.cpus else 0,
        "CpuShares": args.cpu_shares or 0,
        "CpusetCpus": args.cpuset_cpus or "",
        "PidsLimit": args.pids_limit,
        "CapAdd": args.cap_add or None,
        "CapDrop": args.cap_drop or None,
        "SecurityOpt": args.security_opt or None,
        "NetworkMode": "default",
        "LogConfig": {"Type": args.log_driver or "", "Config": _labels(args.log_opt)},
    }
    binds, volumes = volume_flags(list(args.volume))
    host_config["Binds"] = binds or None
    host_config["Mounts"] = [mount_flag(value) for value in args.mount] or None
    host_config["Tmpfs"] = tmpfs_flags(list(args.tmpfs)) or None
    body: dict[str, Any] = {
        "Image": args.image,
        "Cmd": args.command or None,
        "Entrypoint": entrypoint,
        "Env": _env_entries(list(args.env), list(args.env_file), environ),
        "WorkingDir": args.workdir,
        "User": args.user,
        "Hostname": args.hostname,
        "Labels": _labels(args.label),
        "Tty": args.tty,
        "OpenStdin": args.interactive,
        "StdinOnce": args.interactive,
        "AttachStdin": args.interactive,
        "AttachStdout": True,
        "AttachStderr": True,
        "StopSignal": args.stop_signal,
        "StopTimeout": args.stop_timeout,
        "Healthcheck": _healthcheck(args),
        "Volumes": volumes or None,
        "HostConfig": host_config,
    }
    return body
