"""The small sub-tables of a container: `[resources]`, `[restart]`, `[logs]`."""

from __future__ import annotations

from supervisor.errors import InvalidArgument
from supervisor.isolation.cgroups.cpulist import parse_cpu_list
from supervisor.isolation.cgroups.resources import (
    MAX_CPU_SHARES,
    MIN_CPU_SHARES,
    MIN_MEMORY,
    MIN_NANO_CPUS,
    UNLIMITED,
    Resources,
)
from supervisor.reactor.config.diagnostics import describe
from supervisor.reactor.config.model import POLICIES, LogConfig, Policy, RestartConfig
from supervisor.reactor.config.reader import Section
from supervisor.units import parse_cpus

RESOURCE_KEYS = ("memory", "memory_swap", "pids", "cpus", "cpu_shares", "cpuset")
RESTART_KEYS = ("policy", "max_retries", "initial", "max", "reset_after")
LOG_KEYS = ("max_size", "max_files")


def read_resources(section: Section | None) -> Resources:
    """Limits checked as far as they can be without the host: the CPU count is checked at create."""
    if section is None:
        return Resources()
    memory = section.size("memory", None)
    if memory is not None and memory < MIN_MEMORY:
        section.expected("memory", "at least 6MiB (Docker's minimum)")
    swap = _memory_swap(section)
    if swap is not None and swap != UNLIMITED:
        if memory is None:
            section.error("memory_swap", "needs memory: memory_swap is the limit of memory plus swap")
        elif swap < memory:
            section.error("memory_swap", "must be at least memory: memory_swap is the limit of memory plus swap")
    pids = section.integer("pids", 0, minimum=1) if section.has("pids") else None
    shares = None
    if section.has("cpu_shares"):
        shares = section.integer("cpu_shares", 1024, minimum=MIN_CPU_SHARES)
        if shares > MAX_CPU_SHARES:
            section.error("cpu_shares", f"must be at most {MAX_CPU_SHARES}, got {shares}")
    return Resources(
        memory=memory,
        memory_swap=swap,
        pids_limit=pids,
        nano_cpus=_cpus(section),
        cpu_shares=shares,
        cpuset_cpus=_cpuset(section),
    )


def _memory_swap(section: Section) -> int | None:
    value = section.data.get("memory_swap")
    # -1 is Docker's "unlimited swap"; any other negative is a mistake.
    if value == UNLIMITED and type(value) is int:
        return UNLIMITED
    return section.size("memory_swap", None, hint='a size like "128MiB", or -1 for unlimited swap')


def _cpus(section: Section) -> int | None:
    if not section.has("cpus"):
        return None
    value = section.data["cpus"]
    nano = None
    if isinstance(value, int | float | str) and not isinstance(value, bool):
        try:
            nano = parse_cpus(value)
        except InvalidArgument:
            nano = None
    if nano is None or nano < MIN_NANO_CPUS:
        section.error("cpus", f"expected a number of CPUs of at least 0.01, like 0.5 or 2, got {describe(value)}")
        return None
    return nano


def _cpuset(section: Section) -> str | None:
    if not section.has("cpuset"):
        return None
    value = section.data["cpuset"]
    if isinstance(value, str):
        try:
            parse_cpu_list(value)
            return value or None
        except ValueError:
            pass
    section.expected("cpuset", 'a list of CPUs like "0-2,4"')
    return None


def read_restart(parent: Section) -> RestartConfig:
    """`restart = "always"` is short for `[restart] policy = "always"`."""
    value = parent.data.get("restart")
    if isinstance(value, str):
        return RestartConfig(policy=parent.choice("restart", POLICIES, "no"))
    section = parent.table("restart", RESTART_KEYS)
    if section is None:
        return RestartConfig()
    defaults = RestartConfig()
    policy: Policy = section.choice("policy", POLICIES, defaults.policy)
    if section.has("max_retries") and policy != "on-failure":
        section.error("max_retries", f'only applies to policy = "on-failure" (policy is "{policy}")')
    config = RestartConfig(
        policy=policy,
        max_retries=section.integer("max_retries", defaults.max_retries),
        initial=section.duration("initial", defaults.initial),
        max_delay=section.duration("max", defaults.max_delay),
        reset_after=section.duration("reset_after", defaults.reset_after),
    )
    if config.initial > config.max_delay:
        section.error("initial", f"must not be longer than max ({config.max_delay:g}s), got {config.initial:g}s")
    return config


def read_logs(section: Section | None) -> LogConfig:
    defaults = LogConfig()
    if section is None:
        return defaults
    max_size = section.size("max_size", defaults.max_size) or None
    # A log that never rotates is a single file, whatever the default count.
    max_files = section.integer("max_files", defaults.max_files if max_size else 1, minimum=1)
    if max_size is None and max_files > 1:
        section.error("max_files", "only 1 file when max_size = 0 (never rotate)")
    return LogConfig(max_size=max_size, max_files=max_files)
