"""From a container's spec, its image layers and cgroup to the launcher's LaunchSpec (pure)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from supervisor.isolation.capabilities import resolve_capabilities
from supervisor.isolation.spec import BindMount, LaunchSpec, Membership, Rootfs, TmpfsMount
from supervisor.reactor import etcfiles
from supervisor.reactor.model import ContainerSpec
from supervisor.reactor.mountspec import host_source, tmpfs_options
from supervisor.storage.snapshots import relative_lowers


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
        lowers=relative_lowers(layers, state_root),
        upper=rel(container_dir / "upper"),
        work=rel(container_dir / "work"),
        merged=str(container_dir / "merged"),
        scratch=rel(container_dir / "scratch"),
    )
    # Volumes are binds of their data dirs; the runtime orders all of them by target depth.
    binds = tuple(BindMount(host_source(m, state_root), m.target, m.readonly) for m in spec.mounts if m.type != "tmpfs")
    tmpfs = tuple(TmpfsMount(m.target, tmpfs_options(m)) for m in spec.mounts if m.type == "tmpfs")
    # A mount of the user's at /etc/hosts (or hostname, resolv.conf) replaces the generated file.
    targets = {m.target for m in spec.mounts}
    etc_files = tuple(
        (path, content)
        for path, content in (
            ("/etc/hostname", etcfiles.hostname_file(hostname)),
            ("/etc/hosts", etcfiles.hosts_file(hostname)),
            ("/etc/resolv.conf", etcfiles.resolv_conf(host_resolv_conf)),
        )
        if path not in targets
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
        binds=binds,
        tmpfs=tmpfs,
        etc_files=etc_files,
        no_new_privileges=spec.no_new_privileges,
        tty=spec.tty,
        console_size=spec.console_size if spec.tty else None,
        open_stdin=spec.open_stdin,
    )
