"""Linux capabilities: names, Docker's default set, and the bounding-set drop.

`resolve_capabilities` is pure (cap-add / cap-drop arithmetic as Docker
does it); `restrict_bounding_set` runs in the container's process just
before the user switch and exec. Root in the container then gets exactly
the resolved set at exec; any other uid gets none, as under Docker.
"""

from __future__ import annotations

from collections.abc import Iterable

from supervisor.errors import InvalidArgument
from supervisor.isolation import syscalls

CAPABILITIES: dict[str, int] = {
    name: number
    for number, name in enumerate(
        [
            "CHOWN",
            "DAC_OVERRIDE",
            "DAC_READ_SEARCH",
            "FOWNER",
            "FSETID",
            "KILL",
            "SETGID",
            "SETUID",
            "SETPCAP",
            "LINUX_IMMUTABLE",
            "NET_BIND_SERVICE",
            "NET_BROADCAST",
            "NET_ADMIN",
            "NET_RAW",
            "IPC_LOCK",
            "IPC_OWNER",
            "SYS_MODULE",
            "SYS_RAWIO",
            "SYS_CHROOT",
            "SYS_PTRACE",
            "SYS_PACCT",
            "SYS_ADMIN",
            "SYS_BOOT",
            "SYS_NICE",
            "SYS_RESOURCE",
            "SYS_TIME",
            "SYS_TTY_CONFIG",
            "MKNOD",
            "LEASE",
            "AUDIT_WRITE",
            "AUDIT_CONTROL",
            "SETFCAP",
            "MAC_OVERRIDE",
            "MAC_ADMIN",
            "SYSLOG",
            "WAKE_ALARM",
            "BLOCK_SUSPEND",
            "AUDIT_READ",
            "PERFMON",
            "BPF",
            "CHECKPOINT_RESTORE",
        ]
    )
}

DOCKER_DEFAULT: frozenset[str] = frozenset(
    {
        "CHOWN",
        "DAC_OVERRIDE",
        "FSETID",
        "FOWNER",
        "MKNOD",
        "NET_RAW",
        "SETGID",
        "SETUID",
        "SETFCAP",
        "SETPCAP",
        "NET_BIND_SERVICE",
        "SYS_CHROOT",
        "KILL",
        "AUDIT_WRITE",
    }
)


def normalize(name: str) -> str:
    """`cap_net_admin`, `NET_ADMIN` and `CAP_NET_ADMIN` all name NET_ADMIN."""
    upper = name.strip().upper()
    bare = upper[4:] if upper.startswith("CAP_") else upper
    if bare != "ALL" and bare not in CAPABILITIES:
        raise InvalidArgument(f"unknown capability: {name!r}")
    return bare


def resolve_capabilities(
    add: Iterable[str] = (), drop: Iterable[str] = (), base: frozenset[str] = DOCKER_DEFAULT
) -> frozenset[str]:
    """Docker's rule: start from the default set; ALL in drop empties it first, ALL in add fills it."""
    added = {normalize(n) for n in add}
    dropped = {normalize(n) for n in drop}
    if "ALL" in dropped:
        result: set[str] = set()
    else:
        result = set(base) - dropped
    if "ALL" in added:
        result = set(CAPABILITIES) - (dropped - {"ALL"})
    else:
        result |= added
    return frozenset(result)


def host_bounding_set() -> frozenset[str]:
    """Capabilities this process may still grant (the host may have dropped some)."""
    available = set()
    for name, number in CAPABILITIES.items():
        try:
            if syscalls.prctl(syscalls.PR_CAPBSET_READ, number) == 1:
                available.add(name)
        except OSError:
            # EINVAL: the running kernel predates this capability.
            pass
    return frozenset(available)


def restrict_bounding_set(keep: frozenset[str]) -> None:
    """Drop every capability not in `keep` from the bounding set (needs CAP_SETPCAP, so do it before the uid switch)."""
    for name, number in CAPABILITIES.items():
        if name in keep:
            continue
        try:
            syscalls.prctl(syscalls.PR_CAPBSET_DROP, number)
        except OSError as err:
            if err.errno != 22:  # EINVAL: capability unknown to this kernel
                raise
