"""From a container's spec, its image layers and cgroup to the launcher's LaunchSpec (pure)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from supervisor.isolation.capabilities import resolve_capabilities
from supervisor.isolation.spec import LaunchSpec, Membership, Rootfs
from supervisor.reactor import etcfiles
from supervisor.reactor.model import ContainerSpec


def build_launch_spec(
    *,
    container_id: str,
    spec: ContainerSpec,
    state_root: Path,
    container_dir: Path,
    layers: Sequence[Path],
    cgroup: Membership,
    log_path: Path,
    host_resolv_conf: str,
) -> LaunchSpec:
    """`layers` bottom-most first, as the image store gives them; overlay wants the top first."""

    def rel(path: Path) -> str:
        return os.path.relpath(path, state_root)

    hostname = spec.hostname or container_id[:12]
    rootfs = Rootfs(
        base=str(state_root),
        lowers=tuple(rel(layer) for layer in reversed(layers)),
        upper=rel(container_dir / "upper"),
        work=rel(container_dir / "work"),
        merged=str(container_dir / "merged"),
        scratch=rel(container_dir / "scratch"),
    )
    return LaunchSpec(
        id=container_id,
        args=spec.args,
        env=spec.env,
        cwd=spec.working_dir or "/",
        user=spec.user,
        hostname=hostname,
        rootfs=rootfs,
        log_path=str(log_path),
        log_max_size=spec.log.max_size,
        log_max_files=spec.log.max_files,
        capabilities=tuple(sorted(resolve_capabilities(spec.cap_add, spec.cap_drop))),
        cgroup=cgroup,
        etc_files=(
            ("/etc/hostname", etcfiles.hostname_file(hostname)),
            ("/etc/hosts", etcfiles.hosts_file(hostname)),
            ("/etc/resolv.conf", etcfiles.resolv_conf(host_resolv_conf)),
        ),
        no_new_privileges=spec.no_new_privileges,
        tty=spec.tty,
        open_stdin=spec.open_stdin,
    )
