"""Containers in Docker's JSON shapes: `inspect` and the `ps` list entries."""

from __future__ import annotations

import time
from typing import Any

from supervisor.humanize import human_duration
from supervisor.reactor.container import Container
from supervisor.reactor.model import ContainerSpec
from supervisor.timestamps import ZERO_TIME, parse_rfc3339_ns


def _since(stamp: str, now: float) -> float:
    ns = parse_rfc3339_ns(stamp)
    return max(0.0, now - ns / 1e9) if ns else 0.0


def status_text(container: Container, now: float | None = None) -> str:
    now = time.time() if now is None else now
    state = container.state
    if state.status == "running":
        return f"Up {human_duration(_since(state.started_at, now))}"
    if state.status == "restarting":
        return f"Restarting ({state.exit_code}) {human_duration(_since(state.finished_at, now))} ago"
    if state.status == "exited":
        return f"Exited ({state.exit_code}) {human_duration(_since(state.finished_at, now))} ago"
    if state.status == "removing":
        return "Removal In Progress"
    if state.status == "dead":
        return "Dead"
    return "Created"


def _host_config(spec: ContainerSpec) -> dict[str, Any]:
    r = spec.resources
    return {
        "Binds": None,
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
        "LogConfig": {"Type": "json-file", "Config": {}},
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
        "Volumes": None,
        "WorkingDir": spec.working_dir,
        "Entrypoint": list(spec.entrypoint) if spec.entrypoint else None,
        "OnBuild": None,
        "Labels": dict(spec.labels),
        "StopSignal": spec.stop_signal,
        "StopTimeout": spec.stop_timeout,
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
            # Docker counts a container waiting to restart as running.
            "Running": state.status in ("running", "restarting"),
            "Paused": state.status == "paused",
            "Restarting": state.status == "restarting",
            "OOMKilled": state.oom_killed,
            "Dead": state.status == "dead",
            "Pid": state.pid,
            "ExitCode": state.exit_code,
            "Error": state.error,
            "StartedAt": state.started_at or ZERO_TIME,
            "FinishedAt": state.finished_at or ZERO_TIME,
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
        "Mounts": [],
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
        "Mounts": [],
    }
