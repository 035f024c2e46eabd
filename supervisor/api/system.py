"""`/_ping`, `/version`, `/info`: what clients negotiate from and `docker info` shows."""

from __future__ import annotations

import os
import platform
import socket
from typing import Any

from supervisor import __version__
from supervisor.api.request import Request
from supervisor.api.responses import JSONResponse, TextResponse
from supervisor.hostinfo import mem_total
from supervisor.reactor.engine import Engine
from supervisor.timestamps import now_rfc3339

API_VERSION = "1.41"
MIN_API_VERSION = "1.24"
_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}

PING_HEADERS = (
    ("Api-Version", API_VERSION),
    ("Docker-Experimental", "false"),
    ("Ostype", "linux"),
    ("Server", f"corral/{__version__} (linux)"),
    ("Cache-Control", "no-cache, no-store, must-revalidate"),
    ("Pragma", "no-cache"),
)


def _os_name() -> str:
    try:
        with open("/etc/os-release", encoding="utf-8") as file:
            for line in file:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "Linux"


async def ping(_request: Request) -> TextResponse:
    return TextResponse("OK", headers=PING_HEADERS)


async def version(_request: Request) -> JSONResponse:
    arch = _ARCH.get(platform.machine(), platform.machine())
    details = {
        "ApiVersion": API_VERSION,
        "Arch": arch,
        "BuildTime": "",
        "GitCommit": "",
        "GoVersion": f"python{platform.python_version()}",
        "KernelVersion": platform.release(),
        "MinAPIVersion": MIN_API_VERSION,
        "Os": "linux",
    }
    return JSONResponse(
        {
            "Platform": {"Name": f"corral {__version__}"},
            "Components": [{"Name": "Engine", "Version": __version__, "Details": {**details, "Experimental": "false"}}],
            "Version": __version__,
            **details,
        }
    )


def info_json(engine: Engine) -> dict[str, Any]:
    containers = list(engine.registry)
    running = sum(1 for c in containers if c.state.status == "running")
    paused = sum(1 for c in containers if c.state.status == "paused")
    return {
        "ID": engine.config.root.as_posix(),
        "Containers": len(containers),
        "ContainersRunning": running,
        "ContainersPaused": paused,
        "ContainersStopped": len(containers) - running - paused,
        "Images": len(engine.images.list_images()),
        "Driver": "overlay",
        "DriverStatus": [["Backing Filesystem", "overlay lower dirs per layer"]],
        "Plugins": {"Volume": [], "Network": ["none"], "Authorization": None, "Log": ["json-file"]},
        "MemoryLimit": True,
        "SwapLimit": True,
        "CpuCfsPeriod": True,
        "CpuCfsQuota": True,
        "CPUShares": True,
        "CPUSet": True,
        "PidsLimit": True,
        "OomKillDisable": False,
        "IPv4Forwarding": False,
        "Debug": False,
        "NFd": len(os.listdir("/proc/self/fd")),
        "NGoroutines": 0,
        "SystemTime": now_rfc3339(),
        "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": engine.cgroups.version,
        "KernelVersion": platform.release(),
        "OperatingSystem": _os_name(),
        "OSType": "linux",
        "Architecture": platform.machine(),
        "NCPU": os.cpu_count() or 1,
        "MemTotal": mem_total(),
        "DockerRootDir": str(engine.config.root),
        "Name": socket.gethostname(),
        "Labels": [],
        "ExperimentalBuild": False,
        "ServerVersion": __version__,
        "Runtimes": {"corral": {"path": "corral-launcher"}},
        "DefaultRuntime": "corral",
        "LiveRestoreEnabled": True,
        "Isolation": "",
        "InitBinary": "",
        "SecurityOptions": ["name=no-new-privileges"],
        "Warnings": [],
    }
