"""`top`: the host's `ps` output, narrowed to the container's processes (moby's way).

The container's processes are those in its cgroup, as host pids; `ps`
runs on the host with the caller's arguments (default `-ef`), and a row
is kept when its PID column names one of them (and a thread row, PID
`-`, when the process row above it was kept: `ps -eLf`, `ps m`).
"""

from __future__ import annotations

from dataclasses import dataclass

import trio

from supervisor.errors import Conflict, CorralError, InvalidArgument
from supervisor.reactor.container import Container

DEFAULT_PS_ARGS = "-ef"
_PS_TIMEOUT = 10


class TopFailed(CorralError):
    """`ps` could not run, or printed something `top` cannot read."""


@dataclass(frozen=True)
class ProcessList:
    titles: list[str]
    processes: list[list[str]]


async def container_top(container: Container, ps_args: str = "") -> ProcessList:
    if not container.state.running or container.cgroup is None:
        raise Conflict(f"Container {container.id} is not running")
    args = (ps_args or DEFAULT_PS_ARGS).split()
    if any(not arg.isprintable() for arg in args):
        raise InvalidArgument("ps arguments must be printable")
    pids = set(container.cgroup.pids())
    try:
        with trio.fail_after(_PS_TIMEOUT):
            done = await trio.run_process(["ps", *args], capture_stdout=True, capture_stderr=True, check=False)
    except (OSError, trio.TooSlowError) as err:
        raise TopFailed(f"Error running ps: {err}") from None
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip()
        raise TopFailed(f"ps: {message or f'exit status {done.returncode}'}")
    return parse_ps_output(done.stdout.decode(errors="replace"), pids)


def parse_ps_output(output: str, pids: set[int]) -> ProcessList:
    """The rows of `ps` output whose PID is in `pids`; each row has as many fields as there are
    titles, the last one (the command) keeping its spaces."""
    lines = output.split("\n")
    titles = lines[0].split()
    if "PID" not in titles:
        raise TopFailed("Couldn't find PID field in ps output")
    pid_at = titles.index("PID")
    processes: list[list[str]] = []
    keep_threads = False
    for line in lines[1:]:
        fields = line.split()
        if len(fields) <= pid_at:
            continue
        if fields[pid_at] == "-":
            if keep_threads:
                processes.append(_row(fields, len(titles)))
            continue
        try:
            pid = int(fields[pid_at])
        except ValueError:
            raise TopFailed(f"Unexpected pid '{fields[pid_at]}' in ps output") from None
        keep_threads = pid in pids
        if keep_threads:
            processes.append(_row(fields, len(titles)))
    return ProcessList(titles, processes)


def _row(fields: list[str], columns: int) -> list[str]:
    return [*fields[: columns - 1], " ".join(fields[columns - 1 :])]
