"""A container as the engine knows it: what was asked for, and what is.

`ContainerSpec` is the desired configuration, fixed at create time with
the image's defaults merged in (as Docker stores `Config`). `ContainerState`
is what happened since, persisted on each transition. Both round-trip
through JSON for the state files; the API renders Docker's shapes from
them elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

from supervisor.errors import InvalidArgument
from supervisor.isolation.cgroups.resources import Resources
from supervisor.plain import as_dict
from supervisor.reactor.mountspec import MountSpec

Status = Literal["created", "running", "paused", "restarting", "removing", "exited", "dead"]


@dataclass(frozen=True)
class RestartPolicy:
    name: Literal["no", "on-failure", "always", "unless-stopped"] = "no"
    max_retries: int = 0
    # Backoff in seconds (see reactor/restart.py); Docker's restart manager uses these defaults.
    initial: float = 0.1
    max_delay: float = 60.0
    reset_after: float = 10.0


@dataclass(frozen=True)
class LogOptions:
    """json-file rotation, per container (Docker's `--log-opt max-size/max-file`).

    `max_size` in bytes, None: never rotate (Docker's default); `max_files`
    counts `json.log` itself, so 1 replaces a full file by an empty one.
    """

    max_size: int | None = None
    max_files: int = 1

    def __post_init__(self) -> None:
        if self.max_size is not None and (type(self.max_size) is not int or self.max_size <= 0):
            raise InvalidArgument(f"invalid log max_size {self.max_size!r}: must be a positive number of bytes")
        if type(self.max_files) is not int or self.max_files < 1:
            raise InvalidArgument(f"invalid log max_files {self.max_files!r}: must be at least 1")
        if self.max_files > 1 and self.max_size is None:
            raise InvalidArgument("log max_files cannot be set without max_size (the log would never rotate)")


@dataclass(frozen=True)
class HealthCheck:
    """A health probe: Docker's HEALTHCHECK (an exec) or corral's tcp/http probes.

    `argv` for exec probes (CMD-SHELL becomes /bin/sh -c), `target` for tcp
    ("host:port") and http (URL), both reached inside the container's
    network namespace. `on_unhealthy` is corral's: Docker only reports
    (`none`, the default for containers created through the Docker API).
    """

    # "none": explicitly disabled (Docker's `--no-healthcheck`, `HEALTHCHECK NONE`), which also
    # turns off the image's check.
    kind: Literal["exec", "tcp", "http", "none"]
    argv: tuple[str, ...] = ()
    target: str = ""
    interval: float = 30.0
    timeout: float = 30.0
    retries: int = 3
    start_period: float = 0.0
    on_unhealthy: Literal["restart", "stop", "kill", "none"] = "none"

    @classmethod
    def from_docker(cls, data: dict[str, Any]) -> HealthCheck | None:
        """Docker's Healthcheck object (create bodies and image configs); None when it sets no test.

        Durations are nanoseconds, 0 meaning Docker's default.
        """
        test = list(data.get("Test") or [])
        if not test:
            return None
        if test[0] == "NONE":
            return cls(kind="none")
        if test[0] == "CMD-SHELL" and len(test) == 2:
            argv: tuple[str, ...] = ("/bin/sh", "-c", test[1])
        elif test[0] == "CMD" and len(test) > 1:
            argv = tuple(test[1:])
        else:
            raise InvalidArgument(
                f"invalid Healthcheck.Test {test!r}: expected [CMD, ...], [CMD-SHELL, command] or [NONE]"
            )

        def seconds(key: str, default: float) -> float:
            value = data.get(key) or 0
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise InvalidArgument(f"invalid Healthcheck.{key}: expected a non-negative number of nanoseconds")
            return value / 1e9 if value else default

        retries = data.get("Retries") or 0
        if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
            raise InvalidArgument("invalid Healthcheck.Retries: expected a non-negative integer")
        return cls(
            kind="exec",
            argv=argv,
            interval=seconds("Interval", 30.0),
            timeout=seconds("Timeout", 30.0),
            retries=retries or 3,
            start_period=seconds("StartPeriod", 0.0),
        )


@dataclass(frozen=True)
class ContainerSpec:
    image: str
    image_id: str
    # None: not given, take the image's; () given as empty (`--entrypoint ""`).
    cmd: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    env: tuple[str, ...] = ()
    working_dir: str = ""
    user: str = ""
    hostname: str = ""
    domainname: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    tty: bool = False
    # (rows, columns) of the pty at birth, with `tty`; None: 24x80 until a resize.
    console_size: tuple[int, int] | None = None
    open_stdin: bool = False
    stdin_once: bool = False
    stop_signal: str | None = None
    stop_timeout: int | None = None
    resources: Resources = field(default_factory=Resources)
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    no_new_privileges: bool = False
    auto_remove: bool = False
    restart_policy: RestartPolicy = field(default_factory=RestartPolicy)
    log: LogOptions = field(default_factory=LogOptions)
    health: HealthCheck | None = None
    # Binds, volumes and tmpfs mounts (reactor/mountspec.py); anonymous volumes named at create.
    mounts: tuple[MountSpec, ...] = ()

    @property
    def args(self) -> tuple[str, ...]:
        return (self.entrypoint or ()) + (self.cmd or ())

    def to_json(self) -> dict[str, Any]:
        return as_dict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ContainerSpec:
        fields_ = dict(data)
        for name in ("env", "cap_add", "cap_drop"):
            fields_[name] = tuple(fields_.get(name) or ())
        for name in ("cmd", "entrypoint", "console_size"):
            if fields_.get(name) is not None:
                fields_[name] = tuple(fields_[name])
        fields_["resources"] = Resources(**fields_.get("resources", {}))
        fields_["restart_policy"] = RestartPolicy(**fields_.get("restart_policy", {}))
        fields_["log"] = LogOptions(**(fields_.get("log") or {}))
        fields_["mounts"] = tuple(MountSpec.from_json(m) for m in fields_.get("mounts") or ())
        if fields_.get("health"):
            health = dict(fields_["health"])
            health["argv"] = tuple(health.get("argv") or ())
            fields_["health"] = HealthCheck(**health)
        return cls(**fields_)


@dataclass(frozen=True)
class ProbeResult:
    start: str
    end: str
    exit_code: int
    output: str


@dataclass(frozen=True)
class HealthState:
    """Docker's State.Health: status, the failing streak and the last five probes."""

    status: Literal["starting", "healthy", "unhealthy"] = "starting"
    failing_streak: int = 0
    log: tuple[ProbeResult, ...] = ()


@dataclass(frozen=True)
class ContainerState:
    status: Status = "created"
    pid: int = 0
    exit_code: int = 0
    oom_killed: bool = False
    error: str = ""
    started_at: str = "0001-01-01T00:00:00Z"
    finished_at: str = "0001-01-01T00:00:00Z"
    restart_count: int = 0
    health: HealthState | None = None
    # A stop or kill through the API: restarts stay off until a manual start (or daemon restart).
    manually_stopped: bool = False

    @property
    def running(self) -> bool:
        return self.status in ("running", "paused", "restarting")

    def evolve(self, **changes: Any) -> ContainerState:
        return replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        return as_dict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ContainerState:
        fields_ = dict(data)
        if fields_.get("health"):
            health = dict(fields_["health"])
            health["log"] = tuple(ProbeResult(**r) for r in health.get("log", ()))
            fields_["health"] = HealthState(**health)
        return cls(**fields_)


def merge_image_config(spec: ContainerSpec, image_config: dict[str, Any]) -> ContainerSpec:
    """Fill what the user left unset from the image's config, by Docker's rules.

    An entrypoint given by the user drops the image's Cmd unless a cmd is
    given too; env merges by key with the user's value winning; labels
    likewise.
    """
    config = image_config.get("config") or {}
    if spec.entrypoint is None:
        entrypoint = tuple(config.get("Entrypoint") or ())
        cmd = spec.cmd if spec.cmd is not None else tuple(config.get("Cmd") or ())
    else:
        entrypoint = spec.entrypoint
        cmd = spec.cmd or ()
    env: dict[str, str] = {}
    for item in [*(config.get("Env") or ()), *spec.env]:
        key, sep, value = item.partition("=")
        env[key] = value if sep else ""
    labels = {**(config.get("Labels") or {}), **spec.labels}
    health = spec.health if spec.health is not None else HealthCheck.from_docker(config.get("Healthcheck") or {})
    if health is not None and health.kind == "none":
        health = None
    return replace(
        spec,
        entrypoint=entrypoint,
        cmd=cmd,
        env=tuple(f"{k}={v}" for k, v in env.items()),
        working_dir=spec.working_dir or config.get("WorkingDir") or "",
        user=spec.user or config.get("User") or "",
        labels=labels,
        stop_signal=spec.stop_signal or config.get("StopSignal") or "SIGTERM",
        health=health,
    )
