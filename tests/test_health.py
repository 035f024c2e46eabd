"""Health checks as Docker reports them: State.Health, ps, events; exec, tcp and http probes."""

from __future__ import annotations

import json
import time

import pytest
from harness import DOCKER, Daemon, wait_for

pytestmark = pytest.mark.skipif(DOCKER is None, reason="the docker CLI is not installed")


def _health(d: Daemon, name: str) -> dict[str, object]:
    return d.inspect(name)["State"].get("Health") or {}


def test_docker_health_cmd_goes_healthy_then_unhealthy(clean: Daemon) -> None:
    since = time.time()
    started = clean.docker(
        "run", "-d", "--name", "hc", "--health-cmd", "test -f /tmp/ok && echo fine",
        "--health-interval", "200ms", "--health-retries", "2", "--health-timeout", "1s",
        "busybox", "sh", "-c", "touch /tmp/ok; sleep 1.5; rm /tmp/ok; sleep 300",
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    assert _health(clean, "hc").get("Status") == "starting"
    wait_for(lambda: _health(clean, "hc").get("Status") == "healthy")
    assert "(healthy)" in clean.docker("ps", "--format", "{{.Status}}", "--filter", "name=hc").stdout
    health = _health(clean, "hc")
    assert health["FailingStreak"] == 0
    last = health["Log"][-1]  # type: ignore[index]
    assert set(last) == {"Start", "End", "ExitCode", "Output"} and last["ExitCode"] == 0 and last["Output"] == "fine\n"
    wait_for(lambda: _health(clean, "hc").get("Status") == "unhealthy", timeout=10)
    health = _health(clean, "hc")
    assert health["FailingStreak"] >= 2 and len(health["Log"]) <= 5  # type: ignore[arg-type,operator]
    # A container created through the Docker API keeps running when unhealthy, as under Docker.
    assert clean.inspect("hc")["State"]["Status"] == "running"
    events = clean.docker(
        "events", "--since", str(since), "--until", str(time.time()), "--filter", "container=hc",
        "--filter", "event=health_status", "--format", "{{.Action}}",
    ).stdout.split("\n")  # fmt: skip
    assert [e for e in events if e] == ["health_status: healthy", "health_status: unhealthy"]


def test_no_healthcheck_and_inspect_config(clean: Daemon) -> None:
    clean.docker(
        "run", "-d", "--name", "hc2", "--health-cmd", "true", "--health-interval", "5s", "busybox", "sleep", "30"
    )
    config = clean.inspect("hc2")["Config"]["Healthcheck"]
    assert config["Test"] == ["CMD", "/bin/sh", "-c", "true"] and config["Interval"] == 5_000_000_000
    clean.docker("run", "-d", "--name", "hc3", "--no-healthcheck", "busybox", "sleep", "30")
    assert "Health" not in clean.inspect("hc3")["State"]


def test_bad_healthcheck_bodies(clean: Daemon) -> None:
    bad = clean.api("POST", "/containers/create", json={"Image": "busybox", "Healthcheck": {"Test": ["SOMETIMES"]}})
    assert bad.status == 400 and "Healthcheck.Test" in bad.message
    bad = clean.api(
        "POST",
        "/containers/create",
        json={"Image": "busybox", "Healthcheck": {"Test": ["CMD", "true"], "Interval": -1}},
    )
    assert bad.status == 400 and "Healthcheck.Interval" in bad.message
    assert json.loads(json.dumps(clean.api("GET", "/containers/json", query={"all": True}).json())) == []
