"""`POST /containers/create` bodies (Docker's Config + HostConfig) -> ContainerSpec.

Every field is type-checked with a message naming it; features corral
does not have yet are refused by name when set, never silently dropped.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from supervisor.api.mounts import parse_mounts
from supervisor.errors import InvalidArgument
from supervisor.isolation.cgroups.resources import Resources
from supervisor.reactor.model import ContainerSpec, HealthCheck, LogOptions, RestartPolicy

# Set to anything but their zero value, these ask for what corral cannot do yet.
_UNSUPPORTED_HOST_CONFIG = (
    "PortBindings",
    "Devices",
    "Privileged",
    "VolumesFrom",
    "Links",
    "ReadonlyRootfs",
    "PublishAllPorts",
    "Dns",
    "DnsSearch",
    "ExtraHosts",
    "GroupAdd",
    "IpcMode",
    "PidMode",
    "UTSMode",
    "UsernsMode",
    "Sysctls",
    "Runtime",
    "Ulimits",
    "DeviceRequests",
)
_NETWORK_MODES = ("", "default", "bridge", "none")
_RESTART_POLICIES = ("", "no", "on-failure", "always", "unless-stopped")


def _field(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _get(body: dict[str, Any], key: str, where: str, kind: type | tuple[type, ...], default: Any) -> Any:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) and kind in (int, float):
        raise InvalidArgument(f"invalid {_field(where, key)}: expected a number, got a boolean")
    if not isinstance(value, kind):
        expected = {str: "a string", int: "an integer", bool: "a boolean", dict: "an object", list: "a list"}.get(
            kind if isinstance(kind, type) else kind[0], str(kind)
        )
        raise InvalidArgument(f"invalid {_field(where, key)}: expected {expected}, got {type(value).__name__}")
    return value


def _str_list(body: dict[str, Any], key: str, where: str = "", *, allow_string: bool = False) -> tuple[str, ...] | None:
    value = body.get(key)
    if value is None:
        return None
    if allow_string and isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument(f"invalid {_field(where, key)}: expected a list of strings")
    return tuple(value)


def _str_map(body: dict[str, Any], key: str, where: str = "") -> dict[str, str]:
    value = body.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise InvalidArgument(f"invalid {_field(where, key)}: expected an object of strings")
    return dict(value)


def _is_set(value: Any) -> bool:
    return value not in (None, False, 0, "", [], {})


def _resources(host: dict[str, Any]) -> Resources:
    where = "HostConfig"
    pids_limit = _get(host, "PidsLimit", where, int, None)
    return Resources(
        memory=_get(host, "Memory", where, int, 0) or None,
        memory_swap=_get(host, "MemorySwap", where, int, 0) or None,
        pids_limit=pids_limit if pids_limit and pids_limit > 0 else None,
        nano_cpus=_get(host, "NanoCpus", where, int, 0) or None,
        cpu_shares=_get(host, "CpuShares", where, int, 0) or None,
        cpuset_cpus=_get(host, "CpusetCpus", where, str, "") or None,
    )


def _restart_policy(host: dict[str, Any]) -> RestartPolicy:
    policy = _get(host, "RestartPolicy", "HostConfig", dict, {})
    name = _get(policy, "Name", "HostConfig.RestartPolicy", str, "") or "no"
    if name not in _RESTART_POLICIES:
        raise InvalidArgument(f"invalid restart policy {name!r}: expected no, on-failure, always or unless-stopped")
    retries = _get(policy, "MaximumRetryCount", "HostConfig.RestartPolicy", int, 0)
    if retries and name != "on-failure":
        raise InvalidArgument(f"maximum retry count cannot be used with restart policy '{name}'")
    if retries < 0:
        raise InvalidArgument("maximum retry count cannot be negative")
    return RestartPolicy(name=name, max_retries=retries)  # type: ignore[arg-type]


def _no_new_privileges(security_opt: tuple[str, ...]) -> bool:
    enabled = False
    for option in security_opt:
        key, sep, value = option.partition("=" if "=" in option else ":")
        if key == "no-new-privileges":
            enabled = not sep or value.lower() in ("true", "1", "")
            continue
        raise InvalidArgument(f"invalid --security-opt: {option!r} is not supported (only no-new-privileges)")
    return enabled


# Docker's json-file options (moby daemon/logger/jsonfilelog ValidateLogOpt); corral has the rotation ones.
_LOG_DRIVER = "json-file"
_LOG_OPTS = ("max-size", "max-file")
_LOG_OPTS_UNSUPPORTED = ("compress", "labels", "labels-regex", "env", "env-regex", "tag")
# go-units FromHumanSize, which json-file's max-size uses: decimal units, `b`/`ib` suffix optional.
_HUMAN_SIZE = re.compile(r"^(\d+(?:\.\d+)?) ?(?:([kmgtp])(i?b)?|(b))?$", re.IGNORECASE)
_DECIMAL = {"k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "p": 10**15}


def _human_size(text: str) -> int:
    match = _HUMAN_SIZE.match(text)
    if not match:
        raise InvalidArgument(f"invalid log opt max-size {text!r}: expected a size such as 10m, 512k or 1g")
    number, unit, _, _ = match.groups()
    return int(Decimal(number) * _DECIMAL.get((unit or "").lower(), 1))


def log_options(config: dict[str, str]) -> LogOptions:
    """json-file's `max-size`/`max-file` as Docker reads them; other options refused by name."""
    for key in config:
        if key in _LOG_OPTS_UNSUPPORTED:
            raise InvalidArgument(f"log opt '{key}' is not supported by corral yet (only max-size and max-file)")
        if key not in _LOG_OPTS:
            raise InvalidArgument(f"unknown log opt '{key}' for json-file log driver")
    max_size = None
    if "max-size" in config:
        max_size = _human_size(config["max-size"])
        if max_size <= 0:
            raise InvalidArgument("max-size must be a positive number")
    max_files = 1
    if "max-file" in config:
        text = config["max-file"]
        if not re.fullmatch(r"[+-]?\d+", text):
            raise InvalidArgument(f"invalid log opt max-file {text!r}: expected an integer")
        max_files = int(text)
        if max_files < 1:
            raise InvalidArgument("max-file cannot be less than 1")
        if max_files > 1 and max_size is None:
            raise InvalidArgument("max-file cannot be set without max-size: the log would never rotate")
    return LogOptions(max_size=max_size, max_files=max_files)


def _log_config(host: dict[str, Any]) -> LogOptions:
    where = "HostConfig.LogConfig"
    config = _get(host, "LogConfig", "HostConfig", dict, {})
    driver = _get(config, "Type", where, str, "")
    if driver not in ("", _LOG_DRIVER):
        raise InvalidArgument(f"log driver {driver!r} is not supported by corral (only json-file)")
    return log_options(_str_map(config, "Config", where))


def console_size(body: dict[str, Any]) -> tuple[int, int] | None:
    """`ConsoleSize` ([height, width]) of an exec start or a create's HostConfig; None if unknown."""
    value = body.get("ConsoleSize")
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 0xFFFF for v in value)
    ):
        raise InvalidArgument("invalid ConsoleSize: expected [height, width] as two integers")
    if value == [0, 0]:
        return None  # the CLI's "unknown"
    return value[0], value[1]


def parse_create_body(body: Any) -> ContainerSpec:
    if not isinstance(body, dict):
        raise InvalidArgument("invalid create request: the body must be a JSON object")
    image = _get(body, "Image", "", str, "")
    if not image:
        raise InvalidArgument("Config cannot be empty in order to create a container: Image is required")
    host = _get(body, "HostConfig", "", dict, {})
    for key in _UNSUPPORTED_HOST_CONFIG:
        if _is_set(host.get(key)):
            raise InvalidArgument(f"HostConfig.{key} is not supported by corral yet")
    network_mode = _get(host, "NetworkMode", "HostConfig", str, "")
    if network_mode not in _NETWORK_MODES:
        raise InvalidArgument(
            f"network mode {network_mode!r} is not supported by corral yet (containers get loopback only)"
        )
    if _is_set(body.get("ExposedPorts")):
        raise InvalidArgument("ExposedPorts is not supported by corral yet")
    stop_timeout = _get(body, "StopTimeout", "", int, None)
    entrypoint = _str_list(body, "Entrypoint", allow_string=True)
    if entrypoint == ("",):
        entrypoint = ()  # `--entrypoint ""`: reset the image's entrypoint
    return ContainerSpec(
        image=image,
        image_id="",
        cmd=_str_list(body, "Cmd", allow_string=True),
        entrypoint=entrypoint,
        env=_str_list(body, "Env") or (),
        working_dir=_get(body, "WorkingDir", "", str, ""),
        user=_get(body, "User", "", str, ""),
        hostname=_get(body, "Hostname", "", str, ""),
        domainname=_get(body, "Domainname", "", str, ""),
        labels=_str_map(body, "Labels"),
        tty=_get(body, "Tty", "", bool, False),
        # The CLI's terminal size for `-t`: the pty is born with it, before any resize can race the shell.
        console_size=console_size(host),
        open_stdin=_get(body, "OpenStdin", "", bool, False),
        stdin_once=_get(body, "StdinOnce", "", bool, False),
        stop_signal=_get(body, "StopSignal", "", str, "") or None,
        stop_timeout=stop_timeout,
        resources=_resources(host),
        cap_add=_str_list(host, "CapAdd", "HostConfig") or (),
        cap_drop=_str_list(host, "CapDrop", "HostConfig") or (),
        no_new_privileges=_no_new_privileges(_str_list(host, "SecurityOpt", "HostConfig") or ()),
        auto_remove=_get(host, "AutoRemove", "HostConfig", bool, False),
        restart_policy=_restart_policy(host),
        health=HealthCheck.from_docker(_get(body, "Healthcheck", "", dict, {})),
        log=_log_config(host),
        mounts=parse_mounts(body, host),
    )
