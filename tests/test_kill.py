"""kill: a SIGKILL returns once the exit is recorded, as moby's does; other signals are only sent."""

from __future__ import annotations

import pytest
import trio
from harness import DOCKER, Daemon, engine_in_process, state_dir

from supervisor.errors import Conflict
from supervisor.reactor.model import ContainerSpec

needs_docker = pytest.mark.skipif(DOCKER is None, reason="the docker CLI is not installed")


@needs_docker
def test_what_follows_a_docker_kill_sees_the_container_stopped(clean: Daemon) -> None:
    # A restart policy that must not act, and a start at once after each kill.
    ran = clean.docker("run", "-d", "--name", "killme", "--restart", "always", "busybox", "sleep", "600")
    assert ran.returncode == 0, ran.stderr
    for _ in range(5):
        assert clean.docker("kill", "killme").returncode == 0
        state = clean.inspect("killme")["State"]
        assert (state["Status"], state["ExitCode"], state["Running"]) == ("exited", 137, False)
        started = clean.docker("start", "killme")
        assert started.returncode == 0, started.stderr
        assert clean.inspect("killme")["State"]["Running"] is True
    # A signal other than SIGKILL is sent and answered at once: the container goes on.
    assert clean.docker("kill", "-s", "USR1", "killme").returncode == 0
    assert clean.docker("rm", "-f", "killme").returncode == 0
    refused = clean.docker("kill", "killme")
    assert refused.returncode == 1 and "No such container" in refused.stderr


async def test_a_kill_during_a_start_waits_for_it_and_kills_what_it_started() -> None:
    with state_dir() as base:
        async with engine_in_process(base) as engine:
            container = await engine.create(ContainerSpec(image="busybox", image_id="", cmd=("sleep", "100")))
            async with trio.open_nursery() as nursery:
                nursery.start_soon(engine.start, container.id)
                await trio.testing.wait_all_tasks_blocked()
                assert container.lock.locked() and not container.state.running  # the start is under way
                await engine.kill(container.id)
            assert (container.state.status, container.state.exit_code) == ("exited", 137)
            # Started and running: the kill returns with the exit recorded, not just the signal sent.
            await engine.start(container.id)
            await engine.kill(container.id)
            assert (container.state.status, container.state.exit_code) == ("exited", 137)
            with pytest.raises(Conflict, match="is not running"):
                await engine.kill(container.id)
