"""Restart policies with Docker's semantics, and the backoff between restarts (pure).

`should_restart` follows moby's restartmanager: a manual stop or kill
cancels restarts until the container is started by hand again or the
daemon restarts; at daemon start `always` comes back even after a manual
stop, `unless-stopped` does not; `on-failure[:N]` restarts on a non-zero
exit while fewer than N restarts have happened.

`next_delay`: the first restart waits `initial`, each further one twice
the previous (at least `MIN_STEP`, so an initial of 0 still backs off),
capped at `max_delay`; a run that lasted `reset_after` or longer starts
the sequence again.
"""

from __future__ import annotations

from supervisor.reactor.model import RestartPolicy

MIN_STEP = 0.1


def should_restart(
    policy: RestartPolicy,
    *,
    exit_code: int,
    manually_stopped: bool,
    restart_count: int,
    at_daemon_start: bool = False,
) -> bool:
    if policy.name == "no":
        return False
    if manually_stopped and not at_daemon_start:
        return False
    if policy.name == "always":
        return True
    if policy.name == "unless-stopped":
        return not manually_stopped
    # on-failure
    if policy.max_retries and restart_count >= policy.max_retries:
        return False
    return exit_code != 0


def next_delay(policy: RestartPolicy, previous: float | None, uptime: float) -> float:
    """Seconds to wait before the next restart; `previous` is None before the first."""
    if previous is None or uptime >= policy.reset_after:
        return min(policy.initial, policy.max_delay)
    return min(max(previous * 2, MIN_STEP), policy.max_delay)
