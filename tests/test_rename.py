"""rename: Docker's rules through the docker CLI and corral; the new name survives a daemon crash."""

from __future__ import annotations

import json
import time

import pytest
from harness import DOCKER, Daemon

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
