"""What one `[containers.NAME]` table asks for, as plain frozen values.

Everything is already converted: durations to float seconds, sizes to
bytes, CPUs to nano-CPUs, env_file contents folded into `env`, relative
paths resolved. The engine never looks at TOML.

`fingerprint()` is how the engine tells "changed, recreate" from
"unchanged, leave alone": a digest of the canonical JSON of every field
except where the config came from. Fields still at their default are left
out of that JSON, so adding a field with a default to this model later
does not change every existing fingerprint (and recreate every container
on upgrade).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

from supervisor.isolation.cgroups.resources import Resources
from supervisor.reactor.config.diagnostics import Source

Policy = Literal["no", "on-failure", "always", "unless-stopped"]
Condition = Literal["started", "healthy", "completed_successfully"]
HealthKind = Literal["command", "cmd_shell", "tcp", "http"]
UnhealthyAction = Literal["restart", "stop", "kill", "none"]
MountType = Literal["bind", "volume", "tmpfs"]

POLICIES: tuple[Policy, ...] = ("no", "on-failure", "always", "unless-stopped")
CONDITIONS: tuple[Condition, ...] = ("started", "healthy", "completed_successfully")
HEALTH_KINDS: tuple[HealthKind, ...] = ("command", "cmd_shell", "tcp", "http")
UNHEALTHY_ACTIONS: tuple[UnhealthyAction, ...] = ("restart", "stop", "kill", "none")
MOUNT_TYPES: tuple[MountType, ...] = ("bind", "volume", "tmpfs")

SHELL = ("/bin/sh", "-c")
DEFAULT_STOP_TIMEOUT = 10.0  # seconds, Docker's


class Dependency(NamedTuple):
    """`depends_on = { NAME = CONDITION }`: start after NAME reaches CONDITION."""

    name: str
    condition: Condition


@dataclass(frozen=True)
class MountConfig:
    """A bind (host path), named volume or tmpfs; `source` is "" for tmpfs."""

    type: MountType
    target: str
    source: str = ""
    readonly: bool = False
    size: int | None = None  # tmpfs only; None: the kernel's default (half of RAM)


@dataclass(frozen=True)
class RestartConfig:
    """Docker's restart policy, plus the backoff between restarts (seconds).

    Field names follow `reactor.model.RestartPolicy`; the TOML key for
    `max_delay` is `max`.
    """

    policy: Policy = "no"
    max_retries: int = 0  # on-failure only; 0 is unlimited, as Docker's
    initial: float = 0.1
    max_delay: float = 60.0
    reset_after: float = 10.0


@dataclass(frozen=True)
class HealthConfig:
    """One probe: `argv` for command and cmd_shell, `target` for tcp ("host:port") and http (URL)."""

    kind: HealthKind
    argv: tuple[str, ...] = ()
    target: str = ""
    interval: float = 30.0
    timeout: float = 30.0
    retries: int = 3
    start_period: float = 0.0
    on_unhealthy: UnhealthyAction = "restart"

    @property
    def tcp_address(self) -> tuple[str, int]:
        """(host, port) of a tcp probe; the host of "[::1]:80" comes back without brackets."""
        host, _, port = self.target.rpartition(":")
        return host.strip("[]"), int(port)


@dataclass(frozen=True)
class LogConfig:
    """Rotation of json.log, as `reactor.model.LogOptions` takes it.

    Unlike Docker (never rotate), a supervised container rotates by
    default: it runs unattended for months.
    """

    max_size: int | None = 10 * 1024 * 1024  # bytes per file; None never rotates (`max_size = 0`)
    max_files: int = 3  # including the one being written


@dataclass(frozen=True, kw_only=True)
class ContainerConfig:
    name: str
    image: str
    # None: not given, the image's applies; (): given as empty.
    command: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    env: tuple[str, ...] = ()  # "KEY=VALUE", env_file entries first, each key once
    workdir: str = ""
    user: str = ""
    hostname: str = ""
    labels: tuple[tuple[str, str], ...] = ()  # sorted by key
    mounts: tuple[MountConfig, ...] = ()
    resources: Resources = field(default_factory=Resources)
    restart: RestartConfig = field(default_factory=RestartConfig)
    health: HealthConfig | None = None  # None: the image's HEALTHCHECK, if any
    logs: LogConfig = field(default_factory=LogConfig)
    depends_on: tuple[Dependency, ...] = ()  # sorted by name
    stop_signal: str | None = None  # "SIGTERM"; None: the image's STOPSIGNAL, else SIGTERM
    stop_timeout: float = DEFAULT_STOP_TIMEOUT
    # Where it came from; not part of what is asked for, so not compared
    # and not fingerprinted.
    source: Source = field(compare=False)
    env_files: tuple[Path, ...] = field(default=(), compare=False)

    @property
    def args(self) -> tuple[str, ...]:
        return (self.entrypoint or ()) + (self.command or ())

    def fingerprint(self) -> str:
        """sha256 hex of the canonical JSON of what is asked for."""
        # env keys are unique, so their order carries no meaning.
        canonical = _canonical(dataclasses.replace(self, env=tuple(sorted(self.env))))
        text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(text.encode()).hexdigest()


_NOT_ASKED_FOR = frozenset({"source", "env_files"})


def _canonical(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(value):
            item = getattr(value, f.name)
            if f.name in _NOT_ASKED_FOR or _is_default(f, item):
                continue
            out[f.name] = _canonical(item)
        return out
    if isinstance(value, tuple | list):
        return [_canonical(item) for item in value]
    return value


def _is_default(f: dataclasses.Field[Any], value: Any) -> bool:
    if f.default is not dataclasses.MISSING:
        return bool(value == f.default)
    if f.default_factory is not dataclasses.MISSING:
        return bool(value == f.default_factory())
    return False
