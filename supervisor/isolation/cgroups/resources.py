"""The resource limits of one container, with Docker's meaning and checks."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from supervisor.errors import InvalidArgument
from supervisor.isolation.cgroups.cpulist import HostCpus, parse_cpu_list

MIN_MEMORY = 6 * 1024 * 1024  # Docker's linuxMinMemory
MIN_CPU_SHARES = 2
MAX_CPU_SHARES = 262144
CFS_PERIOD_US = 100_000
NANO_PER_CPU = 1_000_000_000
MIN_NANO_CPUS = NANO_PER_CPU // 100  # a 1 ms quota per 100 ms period: the kernel's minimum
UNLIMITED = -1


@dataclass(frozen=True)
class Resources:
    """Limits as Docker's HostConfig holds them; None (or 0) means not set.

    memory:       bytes.
    memory_swap:  memory plus swap in bytes; -1 unlimited; None means
                  twice `memory` when memory is set (Docker's default).
    pids_limit:   None or <= 0 means unlimited.
    nano_cpus:    1e9 is one CPU (a CFS quota per 100 ms period).
    cpu_shares:   relative weight (1024 is the kernel default).
    cpuset_cpus:  CPUs the container may run on, "0-1,3".
    """

    memory: int | None = None
    memory_swap: int | None = None
    pids_limit: int | None = None
    nano_cpus: int | None = None
    cpu_shares: int | None = None
    cpuset_cpus: str | None = None

    def validate(self, host: HostCpus | None = None, *, update: bool = False) -> None:
        """Raise InvalidArgument with Docker's message for a bad limit.

        `update` relaxes the memory-swap-without-memory rule, as Docker does
        for `docker update` (the container's memory limit stays).
        """
        memory = self.memory or 0
        swap = self.memory_swap or 0
        if memory != 0 and memory < MIN_MEMORY:
            raise InvalidArgument("Minimum memory limit allowed is 6MB")
        if swap < UNLIMITED:
            raise InvalidArgument(
                f"Invalid memoryswap value {swap}: use -1 for unlimited swap or a size larger than the memory limit"
            )
        if memory > 0 and swap > 0 and swap < memory:
            raise InvalidArgument("Minimum memoryswap limit should be larger than memory limit, see usage")
        if memory == 0 and swap > 0 and not update:
            raise InvalidArgument("You should always set the Memory limit when using Memoryswap limit, see usage")
        if self.nano_cpus or self.cpuset_cpus:
            self._validate_cpus(host or HostCpus.probe())

    def _validate_cpus(self, host: HostCpus) -> None:
        nano = self.nano_cpus or 0
        if nano < 0 or nano > host.count * NANO_PER_CPU or 0 < nano < MIN_NANO_CPUS:
            raise InvalidArgument(
                f"Range of CPUs is from 0.01 to {host.count}.00, as there are only {host.count} CPUs available"
            )
        if self.cpuset_cpus:
            try:
                wanted = parse_cpu_list(self.cpuset_cpus)
            except ValueError as err:
                raise InvalidArgument(f"Invalid value {self.cpuset_cpus} for cpuset cpus: {err}") from None
            if not wanted <= host.online:
                raise InvalidArgument(
                    f"Requested CPUs are not available - requested {self.cpuset_cpus}, available: {host.online_text}"
                )

    def effective_memory_swap(self) -> int | None:
        """Memory plus swap to apply: None (leave as is), -1 (unlimited) or bytes."""
        if self.memory_swap == UNLIMITED:
            return UNLIMITED
        if self.memory_swap:
            return self.memory_swap
        if self.memory and self.memory > 0:
            return 2 * self.memory
        return None

    def cfs_quota_us(self) -> int | None:
        """The CFS quota per CFS_PERIOD_US for `nano_cpus`, None when not set."""
        if not self.nano_cpus or self.nano_cpus <= 0:
            return None
        return self.nano_cpus * CFS_PERIOD_US // NANO_PER_CPU

    def clamped_cpu_shares(self) -> int | None:
        """cpu_shares within the kernel's range as Docker clamps it, None when not set."""
        if not self.cpu_shares:
            return None
        return min(max(self.cpu_shares, MIN_CPU_SHARES), MAX_CPU_SHARES)

    def is_empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in fields(self))


def merge_update(current: Resources, change: Resources) -> Resources:
    """The limits after `docker update`: fields set in `change` replace `current`'s.

    Raises Docker's error when the memory limit rises above a memory+swap
    limit that the update leaves in place.
    """
    if change.memory and not change.memory_swap:
        current_swap = current.effective_memory_swap()
        if current_swap is not None and current_swap > 0 and change.memory > current_swap:
            raise InvalidArgument(
                "Memory limit should be smaller than already set memoryswap limit, "
                "update the memoryswap at the same time"
            )
        if current.memory_swap is None and current.memory:
            # Docker stored twice the old memory at create time; keep that.
            change = replace(change, memory_swap=current_swap)
    updates = {f.name: getattr(change, f.name) for f in fields(change) if getattr(change, f.name) is not None}
    return replace(current, **updates)
