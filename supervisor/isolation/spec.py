"""What the launcher needs to start one container: a plain, JSON-safe spec.

The reactor builds a `LaunchSpec` from a container's config, its image's
layers, its snapshot and its cgroup; the launcher receives it over its
socket and never looks anything up itself.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from supervisor.plain import as_dict

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Docker's defaults (moby oci/defaults.go): hidden kernel interfaces and
# writable-but-harmless-looking proc files.
MASKED_PATHS: tuple[str, ...] = (
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)
READONLY_PATHS: tuple[str, ...] = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)


def known_fields(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """`data` without keys `cls` lacks: a launcher that outlived an upgrade of the daemon (live
    restore) may get specs with fields newer than its code; it runs them without those."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {key: value for key, value in data.items() if key in names}


def _console_size(value: Any) -> tuple[int, int] | None:
    return None if value is None else (int(value[0]), int(value[1]))


@dataclass(frozen=True)
class Membership:
    """How a new process joins its cgroup without the slow path.

    Writing a pid to `cgroup.procs` takes the kernel's threadgroup lock,
    which waits out an RCU grace period (10-20 ms here) on every lone
    start. So: the v2 directory is joined at birth with
    clone3(CLONE_INTO_CGROUP); each v1 hierarchy through its `tasks`
    file, which moves one thread and skips that lock (the process is
    single-threaded then, so it is the same move).
    """

    v2_dir: str | None
    v1_tasks: tuple[str, ...]

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Membership | None:
        if data is None:
            return None
        return cls(v2_dir=data["v2_dir"], v1_tasks=tuple(data["v1_tasks"]))


@dataclass(frozen=True)
class BindMount:
    source: str
    target: str
    readonly: bool = False


@dataclass(frozen=True)
class TmpfsMount:
    """A tmpfs at `target`: nosuid, nodev and noexec unless `options` say otherwise (Docker's default)."""

    target: str
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class Rootfs:
    """An overlay: image layers under a writable upper dir.

    Layer, upper and work paths are relative to `base`: the mount is made
    from there, so the container's mountinfo shows no host paths and long
    layer lists stay under the kernel's one-page limit for mount options.
    """

    base: str
    lowers: tuple[str, ...]
    upper: str
    work: str
    merged: str
    # An empty directory for the private tmpfs holding the generated /etc files.
    scratch: str

    def overlay_options(self) -> str:
        return f"lowerdir={':'.join(self.lowers)},upperdir={self.upper},workdir={self.work}"


@dataclass(frozen=True)
class LaunchSpec:
    id: str
    args: tuple[str, ...]
    env: tuple[str, ...]
    cwd: str
    user: str
    hostname: str
    rootfs: Rootfs
    log_path: str
    capabilities: tuple[str, ...]
    # Joined at birth (clone3 into the v2 dir) and by the first process (v1 `tasks` files).
    cgroup: Membership | None = None
    # The user's mounts, made shallowest target first after the pivot (binds and volumes, tmpfs).
    binds: tuple[BindMount, ...] = ()
    tmpfs: tuple[TmpfsMount, ...] = ()
    # Small generated files (/etc/hostname, /etc/hosts, /etc/resolv.conf): path -> content.
    etc_files: tuple[tuple[str, str], ...] = ()
    no_new_privileges: bool = False
    tty: bool = False
    # (rows, columns) of the pty at birth; None: 24x80 until the first resize.
    console_size: tuple[int, int] | None = None
    open_stdin: bool = False
    # json-file rotation (launcher/logfile.py): None never rotates; max_files counts json.log itself.
    log_max_size: int | None = None
    log_max_files: int = 1
    masked_paths: tuple[str, ...] = MASKED_PATHS
    readonly_paths: tuple[str, ...] = READONLY_PATHS

    def to_json(self) -> dict[str, Any]:
        return as_dict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LaunchSpec:
        fields = known_fields(cls, data)
        fields["binds"] = tuple(BindMount(**b) for b in fields.get("binds", ()))
        fields["tmpfs"] = tuple(TmpfsMount(t["target"], tuple(t["options"])) for t in fields.get("tmpfs", ()))
        fields["etc_files"] = tuple((path, content) for path, content in fields.get("etc_files", ()))
        rootfs = dict(fields["rootfs"])
        rootfs["lowers"] = tuple(rootfs["lowers"])
        fields["rootfs"] = Rootfs(**rootfs)
        fields["cgroup"] = Membership.from_json(fields.get("cgroup"))
        fields["console_size"] = _console_size(fields.get("console_size"))
        for name in ("args", "env", "capabilities", "masked_paths", "readonly_paths"):
            if name in fields:
                fields[name] = tuple(fields[name])
        return cls(**fields)


@dataclass(frozen=True)
class ExecSpec:
    """One more process in a running container (`docker exec`, health probes).

    The launcher finds the container by id and enters it through the pidfd
    it already holds for the container's first process, so no raw pid
    crosses the socket. `env` is final (the reactor merges the container's
    with the exec's, as Docker does); only HOME is added from the user's
    passwd entry when missing. With `detach`, stdin, stdout and stderr are
    /dev/null and only the pidfd comes back.
    """

    container_id: str
    exec_id: str
    args: tuple[str, ...]
    env: tuple[str, ...]
    cwd: str
    user: str
    capabilities: tuple[str, ...]
    # The container's cgroup: joined at birth (v2) and through the v1 `tasks` files.
    cgroup: Membership | None = None
    no_new_privileges: bool = False
    tty: bool = False
    open_stdin: bool = False
    detach: bool = False
    # The pty's first window size (rows, columns); a later resize goes to the pty master.
    console_size: tuple[int, int] | None = None

    def to_json(self) -> dict[str, Any]:
        return as_dict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ExecSpec:
        fields = known_fields(cls, data)
        fields["cgroup"] = Membership.from_json(fields.get("cgroup"))
        fields["console_size"] = _console_size(fields.get("console_size"))
        for name in ("args", "env", "capabilities"):
            fields[name] = tuple(fields[name])
        return cls(**fields)
