"""rename: Docker's rules through the docker CLI and corral; the new name survives a daemon crash."""

from __future__ import annotations

import json
import time

import pytest
import trio
from harness import DOCKER, Daemon, engine_in_process, state_dir

from supervisor.errors import Conflict
from supervisor.reactor.model import ContainerSpec

needs_docker = pytest.mark.skipif(DOCKER is None, reason="the docker CLI is not installed")


@needs_docker
def test_docker_rename(clean: Daemon) -> None:
    since = time.time()
    assert clean.docker("run", "-d", "--name", "before", "busybox", "sleep", "600").returncode == 0
    container_id = clean.inspect("before")["Id"]
    hostname = clean.inspect("before")["Config"]["Hostname"]
    assert clean.docker("run", "-d", "--name", "taken", "busybox", "sleep", "600").returncode == 0

    renamed = clean.docker("rename", "before", "after")
    assert renamed.returncode == 0, renamed.stderr
    after = clean.inspect("after")
    assert (after["Id"], after["Name"], after["Config"]["Hostname"]) == (container_id, "/after", hostname)
    assert after["State"]["Running"] is True
    assert clean.api("GET", "/containers/before/json").status == 404
    assert clean.docker("ps", "--format", "{{.Names}}").stdout.split() == ["taken", "after"]
    # The old name is free at once.
    assert clean.docker("run", "-d", "--name", "before", "busybox", "sleep", "600").returncode == 0

    events = clean.api(
        "GET",
        "/events",
        query={"since": f"{since:.9f}", "until": f"{time.time():.9f}", "filters": json.dumps({"event": ["rename"]})},
    )
    (event,) = [json.loads(line) for line in events.body.splitlines() if line.strip()]
    assert event["Actor"]["ID"] == container_id
    assert event["Actor"]["Attributes"]["oldName"] == "/before" and event["Actor"]["Attributes"]["name"] == "after"

    # Bad input: each refused, nothing renamed.
    in_use = clean.docker("rename", "after", "taken")
    assert in_use.returncode == 1 and 'The container name "/taken" is already in use' in in_use.stderr
    assert clean.api("POST", "/containers/after/rename", query={"name": "taken"}).status == 409
    same = clean.api("POST", "/containers/after/rename", query={"name": "after"})
    assert same.status == 400 and "same name" in same.message
    invalid = clean.docker("rename", "after", "-bad name")
    assert invalid.returncode != 0
    assert clean.api("POST", "/containers/after/rename", query={"name": "bad name"}).status == 400
    assert clean.api("POST", "/containers/after/rename").status == 400
    missing = clean.docker("rename", "nosuch", "other")
    assert missing.returncode == 1 and "No such container: nosuch" in missing.stderr
    assert clean.inspect("after")["Name"] == "/after"
    for name in ("after", "taken", "before"):
        assert clean.docker("rm", "-f", name).returncode == 0


def test_a_rename_survives_a_daemon_crash(fresh_daemon: Daemon) -> None:
    d = fresh_daemon
    created = d.corral("create", "--name", "first", "busybox", "true")
    assert created.returncode == 0, created.stderr
    renamed = d.corral("rename", "first", "second")
    assert renamed.returncode == 0 and renamed.stdout == "", renamed.stderr
    d.kill9()
    d.start()
    assert d.inspect("second")["Id"] == created.stdout.strip()
    assert d.api("GET", "/containers/first/json").status == 404
    assert d.corral("create", "--name", "first", "busybox", "true").returncode == 0
    assert d.corral("rm", "first", "second").returncode == 0


async def test_a_rename_racing_a_removal_leaves_no_name_held(monkeypatch: pytest.MonkeyPatch) -> None:
    # The removal does not take the container's lock and may run while the rename writes the
    # config (made slow here so it always does): the rename is refused, and no name stays held.
    with state_dir() as base:
        async with engine_in_process(base) as engine:
            rewrite = engine.store.rewrite_config

            def slow_rewrite(*args: object) -> None:
                time.sleep(0.3)
                rewrite(*args)  # type: ignore[arg-type]

            monkeypatch.setattr(engine.store, "rewrite_config", slow_rewrite)
            container = await engine.create(ContainerSpec(image="busybox", image_id="", cmd=("true",)), "racer")
            if container.config_synced is not None:
                await container.config_synced.wait()
            refused: list[str] = []

            async def rename() -> None:
                with pytest.raises(Conflict, match="being removed") as caught:
                    await engine.rename(container.id, "renamed")
                refused.append(str(caught.value))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(rename)
                await trio.testing.wait_all_tasks_blocked()  # the rename is in its (slow) write
                assert container.lock.locked()
                await engine.remove(container.id, force=True)
            assert refused
            assert container.removed
            assert "renamed" not in engine.registry.names() and "racer" not in engine.registry.names()
            again = await engine.create(ContainerSpec(image="busybox", image_id="", cmd=("true",)), "renamed")
            await engine.remove(again.id, force=True)
