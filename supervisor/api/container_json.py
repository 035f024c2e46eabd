"""Containers in Docker's JSON shapes: `inspect` and the `ps` list entries."""

from __future__ import annotations

import time
from typing import Any

from supervisor.humanize import human_duration
from supervisor.reactor.container import Container
from supervisor.reactor.model import ContainerSpec, HealthCheck, HealthState, LogOptions
from supervisor.reactor.mountspec import MountSpec, host_source
from supervisor.timestamps import ZERO_TIME, parse_rfc3339_ns


def _since(stamp: str, now: float) -> float:
    ns = parse_rfc3339_ns(stamp)
    return max(0.0, now - ns / 1e9) if ns else 0.0


def status_text(container: Container, now: float | None = None) -> str:
    now = time.time() if now is None else now
    state = container.state
    if state.status == "running":
        health = ""
        if state.health is not None:
            health = " (health: starting)" if state.health.status == "starting" else f" ({state.health.status})"
        return f"Up {human_duration(_since(state.started_at, now))}{health}"
    if state.status == "paused":
        return f"Up {human_duration(_since(state.started_at, now))} (Paused)"
    if state.status == "restarting":
        return f"Restarting ({state.exit_code}) {human_duration(_since(state.finished_at, now))} ago"
    if state.status == "exited":
        return f"Exited ({state.exit_code}) {human_duration(_since(state.finished_at, now))} ago"
    if state.status == "removing":
        return "Removal In Progress"
    if state.status == "dead":
        return "Dead"
    return "Created"


def _log_config(options: LogOptions) -> dict[str, str]:
    """Docker's json-file options as strings; a size in the largest decimal unit that is exact (FromHumanSize's)."""
    config: dict[str, str] = {}
    if options.max_size is not None:
        size, unit = options.max_size, ""
        for suffix, factor in (("g", 10**9), ("m", 10**6), ("k", 10**3)):
            if size % factor == 0:
                size, unit = size // factor, suffix
                break
        config["max-size"] = f"{size}{unit}"
        config["max-file"] = str(options.max_files)
    return config


def _mount_points(container: Container) -> list[dict[str, Any]]:
    """Docker's MountPoint list: volumes and binds, and tmpfs asked for with --mount (not --tmpfs)."""
    state_root = container.files.dir.parent.parent
    return [
        {
            "Type": m.type,
            **({"Name": m.source} if m.type == "volume" else {}),
            "Source": host_source(m, state_root),
            "Destination": m.target,
            **({"Driver": "local"} if m.type == "volume" else {}),
            "Mode": m.mode,
            "RW": not m.readonly,
            "Propagation": "rprivate" if m.type == "bind" else "",
        }
        for m in sorted(container.spec.mounts, key=lambda m: m.target)
        if m.origin != "tmpfs"
    ]


def _mount_request(m: MountSpec) -> dict[str, Any]:
    """A HostConfig.Mounts entry as it was sent (omitempty fields left out, as Docker's JSON)."""
    entry: dict[str, Any] = {"Type": m.type, **({"Source": m.source} if m.source else {}), "Target": m.target}
    if m.readonly:
        entry["ReadOnly"] = True
    if m.type == "bind" and m.create_source:
        entry["BindOptions"] = {"CreateMountpoint": True}
    if m.type == "volume" and (m.no_copy or m.labels):
        options: dict[str, Any] = {"NoCopy": True} if m.no_copy else {}
        entry["VolumeOptions"] = {**options, **({"Labels": m.labels} if m.labels else {})}
    if m.type == "tmpfs" and (m.tmpfs_size or m.tmpfs_mode or m.tmpfs_options):
        entry["TmpfsOptions"] = {
            **({"SizeBytes": m.tmpfs_size} if m.tmpfs_size else {}),
            **({"Mode": m.tmpfs_mode} if m.tmpfs_mode else {}),
            **({"Options": [o.split("=", 1) for o in m.tmpfs_options]} if m.tmpfs_options else {}),
        }
    return entry


def _host_mounts(spec: ContainerSpec) -> dict[str, Any]:
    """HostConfig.Binds, .Mounts and .Tmpfs echoed (the create body's; anonymous volumes show their names)."""
    binds = [m.raw for m in spec.mounts if m.origin == "binds"]
    mounts = [_mount_request(m) for m in spec.mounts if m.origin == "mounts"]
    tmpfs = {m.target: m.raw for m in spec.mounts if m.origin == "tmpfs"}
    return {"Binds": binds or None, **({"Mounts": mounts} if mounts else {}), **({"Tmpfs": tmpfs} if tmpfs else {})}


def _host_config(spec: ContainerSpec) -> dict[str, Any]:
    r = spec.resources
    return {
        **_host_mounts(spec),
        "NetworkMode": "none",
        "PortBindings": {},
        "RestartPolicy": {"Name": spec.restart_policy.name, "MaximumRetryCount": spec.restart_policy.max_retries},
        "AutoRemove": spec.auto_remove,
        "CapAdd": list(spec.cap_add) or None,
        "CapDrop": list(spec.cap_drop) or None,
        "SecurityOpt": ["no-new-privileges"] if spec.no_new_privileges else None,
        "Privileged": False,
        "ReadonlyRootfs": False,
        "Memory": r.memory or 0,
        "MemorySwap": r.memory_swap or 0,
        "NanoCpus": r.nano_cpus or 0,
        "CpuShares": r.cpu_shares or 0,
        "CpusetCpus": r.cpuset_cpus or "",
        "PidsLimit": r.pids_limit,
        "LogConfig": {"Type": "json-file", "Config": _log_config(spec.log)},
        "MaskedPaths": None,
        "ReadonlyPaths": None,
    }


def _config(container: Container) -> dict[str, Any]:
    spec = container.spec
    return {
        "Hostname": spec.hostname,
        "Domainname": spec.domainname,
        "User": spec.user,
        "AttachStdin": False,
        "AttachStdout": False,
        "AttachStderr": False,
        "Tty": spec.tty,
        "OpenStdin": spec.open_stdin,
        "StdinOnce": spec.stdin_once,
        "Env": list(spec.env),
        "Cmd": list(spec.cmd) if spec.cmd else None,
        "Image": spec.image,
        "Volumes": {m.target: {} for m in spec.mounts if m.origin in ("volumes", "image")} or None,
        "WorkingDir": spec.working_dir,
        "Entrypoint": list(spec.entrypoint) if spec.entrypoint else None,
        "OnBuild": None,
        "Labels": dict(spec.labels),
        "StopSignal": spec.stop_signal,
        **({"Healthcheck": _healthcheck_json(spec.health)} if spec.health is not None else {}),
        "StopTimeout": spec.stop_timeout,
    }


def _health_json(health: HealthState) -> dict[str, Any]:
    return {
        "Status": health.status,
        "FailingStreak": health.failing_streak,
        "Log": [{"Start": r.start, "End": r.end, "ExitCode": r.exit_code, "Output": r.output} for r in health.log],
    }


def _healthcheck_json(check: HealthCheck | None) -> dict[str, Any] | None:
    if check is None:
        return None
    if check.kind != "exec":
        return {"Test": [f"CORRAL-{check.kind.upper()}", check.target]}
    return {
        "Test": ["CMD", *check.argv],
        "Interval": int(check.interval * 1e9),
        "Timeout": int(check.timeout * 1e9),
        "Retries": check.retries,
        "StartPeriod": int(check.start_period * 1e9),
    }


def inspect_json(container: Container) -> dict[str, Any]:
    spec, state = container.spec, container.state
    args = spec.args
    return {
        "Id": container.id,
        "Created": container.created,
        "Path": args[0] if args else "",
        "Args": list(args[1:]),
        "State": {
            "Status": state.status,
            # Docker counts a paused container, and one waiting to restart, as running.
            "Running": state.running,
            "Paused": state.status == "paused",
            "Restarting": state.status == "restarting",
            "OOMKilled": state.oom_killed,
            "Dead": state.status == "dead",
            "Pid": state.pid,
            "ExitCode": state.exit_code,
            "Error": state.error,
            "StartedAt": state.started_at or ZERO_TIME,
            "FinishedAt": state.finished_at or ZERO_TIME,
            **({"Health": _health_json(state.health)} if state.health is not None else {}),
        },
        "Image": spec.image_id,
        "ResolvConfPath": "",
        "HostnamePath": "",
        "HostsPath": "",
        "LogPath": str(container.files.log),
        "Name": "/" + container.name,
        "RestartCount": state.restart_count,
        "Driver": "overlay",
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": None,
        "HostConfig": _host_config(spec),
        "GraphDriver": {
            "Name": "overlay",
            "Data": {
                "UpperDir": str(container.files.dir / "upper"),
                "WorkDir": str(container.files.dir / "work"),
                "MergedDir": str(container.files.dir / "merged"),
            },
        },
        "Mounts": _mount_points(container),
        "Config": _config(container),
        "NetworkSettings": {
            "Networks": {},
            "Ports": {},
            "SandboxKey": "",
            "IPAddress": "",
            "Gateway": "",
            "MacAddress": "",
        },
    }


def list_json(container: Container, now: float | None = None) -> dict[str, Any]:
    spec = container.spec
    created_ns = parse_rfc3339_ns(container.created) or 0
    return {
        "Id": container.id,
        "Names": ["/" + container.name],
        "Image": spec.image,
        "ImageID": spec.image_id,
        "Command": " ".join(spec.args),
        "Created": created_ns // 1_000_000_000,
        "Ports": [],
        "Labels": dict(spec.labels),
        "State": container.state.status,
        "Status": status_text(container, now),
        "HostConfig": {"NetworkMode": "none"},
        "NetworkSettings": {"Networks": {}},
        "Mounts": _mount_points(container),
    }
