"""A config's container as the engine wants it: ContainerConfig -> ContainerSpec (pure).

Containers made from configs carry two labels: the file they come from
and the fingerprint of what was asked for. The fingerprint tells the
reconciler "unchanged, leave it" from "changed, recreate"; the file label
tells config-managed containers from ones made through the API, which
configs never touch.
"""

from __future__ import annotations

from supervisor.reactor.config import ContainerConfig, MountConfig
from supervisor.reactor.model import ContainerSpec, HealthCheck, LogOptions, RestartPolicy
from supervisor.reactor.mountspec import MountSpec

SOURCE_LABEL = "io.corral.config"
FINGERPRINT_LABEL = "io.corral.config.fingerprint"


def _health(config: ContainerConfig) -> HealthCheck | None:
    health = config.health
    if health is None:
        return None
    kind = "exec" if health.kind in ("command", "cmd_shell") else health.kind
    return HealthCheck(
        kind=kind,  # type: ignore[arg-type]
        argv=health.argv,
        target=health.target,
        interval=health.interval,
        timeout=health.timeout,
        retries=health.retries,
        start_period=health.start_period,
        on_unhealthy=health.on_unhealthy,
    )


def _mount(mount: MountConfig) -> MountSpec:
    """Volumes are named (they outlive the container's recreation); a bind source must exist, as with --mount."""
    return MountSpec(
        type=mount.type,
        target=mount.target,
        source=mount.source,
        readonly=mount.readonly,
        origin="config",
        mode="z" if mount.type == "volume" else "",
        tmpfs_size=mount.size if mount.type == "tmpfs" else None,
    )


def spec_from_config(config: ContainerConfig) -> ContainerSpec:
    restart = config.restart
    labels = dict(config.labels)
    labels[SOURCE_LABEL] = str(config.source.path)
    labels[FINGERPRINT_LABEL] = config.fingerprint()
    return ContainerSpec(
        image=config.image,
        image_id="",
        cmd=config.command,
        entrypoint=config.entrypoint,
        env=config.env,
        working_dir=config.workdir,
        user=config.user,
        hostname=config.hostname,
        labels=labels,
        stop_signal=config.stop_signal,
        stop_timeout=max(0, round(config.stop_timeout)),
        resources=config.resources,
        restart_policy=RestartPolicy(
            name=restart.policy,
            max_retries=restart.max_retries,
            initial=restart.initial,
            max_delay=restart.max_delay,
            reset_after=restart.reset_after,
        ),
        log=LogOptions(max_size=config.logs.max_size, max_files=config.logs.max_files if config.logs.max_size else 1),
        health=_health(config),
        mounts=tuple(_mount(m) for m in config.mounts),
    )


def is_managed(spec: ContainerSpec) -> bool:
    return SOURCE_LABEL in spec.labels


def fingerprint_of(spec: ContainerSpec) -> str | None:
    return spec.labels.get(FINGERPRINT_LABEL)
