"""A container as the engine knows it: what was asked for, and what is.

`ContainerSpec` is the desired configuration, fixed at create time with
the image's defaults merged in (as Docker stores `Config`). `ContainerState`
is what happened since, persisted on each transition. Both round-trip
through JSON for the state files; the API renders Docker's shapes from
them elsewhere.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from supervisor.isolation.cgroups.resources import Resources

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

    @property
    def args(self) -> tuple[str, ...]:
        return (self.entrypoint or ()) + (self.cmd or ())

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ContainerSpec:
        fields_ = dict(data)
        for name in ("env", "cap_add", "cap_drop"):
            fields_[name] = tuple(fields_.get(name) or ())
        for name in ("cmd", "entrypoint"):
            if fields_.get(name) is not None:
                fields_[name] = tuple(fields_[name])
        fields_["resources"] = Resources(**fields_.get("resources", {}))
        fields_["restart_policy"] = RestartPolicy(**fields_.get("restart_policy", {}))
        return cls(**fields_)


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
    # A stop or kill through the API: restarts stay off until a manual start (or daemon restart).
    manually_stopped: bool = False

    @property
    def running(self) -> bool:
        return self.status in ("running", "paused", "restarting")

    def evolve(self, **changes: Any) -> ContainerState:
        return replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ContainerState:
        return cls(**data)


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
    return replace(
        spec,
        entrypoint=entrypoint,
        cmd=cmd,
        env=tuple(f"{k}={v}" for k, v in env.items()),
        working_dir=spec.working_dir or config.get("WorkingDir") or "",
        user=spec.user or config.get("User") or "",
        labels=labels,
        stop_signal=spec.stop_signal or config.get("StopSignal") or "SIGTERM",
    )
