"""The supervisor: TOML configs converged on, edits applied to just what changed, restarts and health acted on."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import REPO, Daemon, wait_for

# A long-running command that stops at once on SIGTERM (a bare `sleep` as pid 1 would not).
SLEEPER = '["sh", "-c", "trap \'exit 0\' TERM; sleep 300 & wait"]'


def _status(d: Daemon) -> dict[str, dict[str, object]]:
    response = d.api("GET", "/corral/configs")
    assert response.ok, response.message
    return {c["Name"]: c for c in response.json()["Containers"]}


def _pid(d: Daemon, name: str) -> int:
    return int(d.inspect(name)["State"]["Pid"])


def _events(d: Daemon, since: float, name: str) -> list[dict[str, object]]:
    response = d.api(
        "GET",
        "/events",
        query={"since": f"{since:.9f}", "until": f"{time.time():.9f}", "filters": json.dumps({"container": [name]})},
    )
    return [json.loads(line) for line in response.body.splitlines() if line.strip()]


@pytest.fixture
def configs(clean: Daemon, tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "configs"
    directory.mkdir()
    yield directory
    # Empty the directory and let the daemon converge on nothing, so nothing is left running.
    for path in directory.iterdir():
        path.unlink()
    if clean.api("GET", "/corral/configs").ok:
        clean.api("POST", "/corral/configs/reload")


def _use(d: Daemon, directory: Path) -> None:
    response = d.api("PUT", "/corral/configs", json={"Directory": str(directory)})
    assert response.ok, response.message


def test_example_configs_converge(clean: Daemon, configs: Path) -> None:
    for path in (REPO / "configs").iterdir():
        shutil.copy(path, configs / path.name)
    _use(clean, configs)
    # migrate runs to completion, then web starts and turns healthy, then worker starts.
    wait_for(lambda: _status(clean)["worker"]["State"] == "running", timeout=30)
    status = _status(clean)
    assert status["migrate"]["State"] == "exited" and status["migrate"]["ExitCode"] == 0
    assert status["web"]["Health"] == "healthy"
    result = clean.corral("status")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "web" in result.stdout and "(healthy)" in result.stdout


def test_edit_recreates_only_what_changed(clean: Daemon, configs: Path) -> None:
    (configs / "a.toml").write_text(f'[containers.alpha]\nimage = "busybox"\ncommand = {SLEEPER}\n')
    (configs / "b.toml").write_text(f'[containers.beta]\nimage = "busybox"\ncommand = {SLEEPER}\n')
    _use(clean, configs)
    wait_for(lambda: all(c["State"] == "running" for c in _status(clean).values()))
    alpha, beta = _pid(clean, "alpha"), _pid(clean, "beta")

    # An editor's save: write a temp file, rename it into place.
    (configs / ".b.toml.tmp").write_text(
        f'[containers.beta]\nimage = "busybox"\ncommand = {SLEEPER}\nenv = {{ EDITED = "1" }}\n'
    )
    (configs / ".b.toml.tmp").rename(configs / "b.toml")
    wait_for(
        lambda: (lambda r: r.ok and "EDITED=1" in r.json()["Config"]["Env"])(clean.api("GET", "/containers/beta/json"))
    )
    wait_for(lambda: _status(clean)["beta"]["State"] == "running")
    assert _pid(clean, "alpha") == alpha and _pid(clean, "beta") != beta

    # A typo: reported with file and line, nothing else changes.
    (configs / "a.toml").write_text('[containers.alpha]\nimage = "busybox"\ncomand = ["sleep", "1"]\n')
    clean.api("POST", "/corral/configs/reload")
    errors = clean.api("GET", "/corral/configs").json()["Errors"]
    assert errors == [f'{configs / "a.toml"}:3: containers.alpha.comand: unknown key (did you mean "command"?)']
    assert _pid(clean, "alpha") == alpha
    assert "comand" in clean.corral("status").stdout

    # A deleted file: its container is stopped and removed.
    (configs / "b.toml").unlink()
    wait_for(lambda: clean.api("GET", "/containers/beta/json").status == 404)
    assert _pid(clean, "alpha") == alpha


def test_a_declared_container_is_renamed_in_its_file_only(clean: Daemon, configs: Path) -> None:
    (configs / "n.toml").write_text(f'[containers.declared]\nimage = "busybox"\ncommand = {SLEEPER}\n')
    _use(clean, configs)
    wait_for(lambda: _status(clean).get("declared", {}).get("State") == "running")
    refused = clean.api("POST", "/containers/declared/rename", query={"name": "other"})
    assert refused.status == 409 and "n.toml" in refused.message and "rename it there" in refused.message
    assert clean.inspect("declared")["Name"] == "/declared"


def test_api_containers_are_left_alone(clean: Daemon, configs: Path) -> None:
    clean.docker("run", "-d", "--name", "handmade", "busybox", "sleep", "300")
    (configs / "h.toml").write_text('[containers.handmade]\nimage = "busybox"\ncommand = ["sleep", "1"]\n')
    _use(clean, configs)
    assert "not made from configs" in _status(clean)["handmade"]["Error"]
    assert clean.inspect("handmade")["Args"] == ["300"]
    (configs / "h.toml").unlink()
    clean.api("POST", "/corral/configs/reload")
    assert clean.inspect("handmade")["State"]["Running"] is True


def test_restart_latency_and_backoff_from_events(clean: Daemon, configs: Path) -> None:
    (configs / "crash.toml").write_text(
        f'[containers.crasher]\nimage = "busybox"\ncommand = {SLEEPER}\n'
        '[containers.crasher.restart]\npolicy = "always"\ninitial = "0s"\nmax = "1s"\nreset_after = "1500ms"\n'
    )
    _use(clean, configs)
    wait_for(lambda: _status(clean)["crasher"]["State"] == "running")
    since = time.time()

    def running_pid() -> int:
        # Pid 0 while it restarts; never hand that to kill(), which would signal our own process group.
        return int(wait_for(lambda: _status(clean)["crasher"]["State"] == "running" and _pid(clean, "crasher")))

    def crash_and_wait() -> None:
        pid = running_pid()
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: _status(clean)["crasher"]["State"] == "running" and _pid(clean, "crasher") not in (0, pid), timeout=10)

    for _ in range(4):
        crash_and_wait()
    time.sleep(1.7)  # a run longer than reset_after: the delay starts again from `initial`
    crash_and_wait()
    events = [e for e in _events(clean, since, "crasher") if e["Action"] in ("die", "start")]
    delays = []
    for died, started in zip(events[::2], events[1::2], strict=True):
        assert (died["Action"], started["Action"]) == ("die", "start")
        delays.append((int(started["timeNano"]) - int(died["timeNano"])) / 1e9)
    # initial 0: back within 50 ms; then 0.1, 0.2, 0.4 (doubling); after a long run, 0 again.
    assert delays[0] < 0.05, delays
    assert 0.1 <= delays[1] < 0.2 and 0.2 <= delays[2] < 0.35 and 0.4 <= delays[3] < 0.6, delays
    assert delays[4] < 0.05, delays


@pytest.mark.parametrize(("action", "expected"), [("restart", "running"), ("stop", "exited")])
def test_unhealthy_container_is_acted_on(clean: Daemon, configs: Path, action: str, expected: str) -> None:
    (configs / "sick.toml").write_text(
        '[containers.sick]\nimage = "busybox"\n'
        'command = ["sh", "-c", "trap \'exit 0\' TERM; touch /tmp/ok; (sleep 1; rm /tmp/ok) & while :; do sleep 0.05; done"]\n'
        '[containers.sick.restart]\npolicy = "no"\n'
        f'[containers.sick.health]\ncmd_shell = "test -f /tmp/ok"\ninterval = "200ms"\ntimeout = "1s"\nretries = 2\non_unhealthy = "{action}"\n'
    )
    _use(clean, configs)
    wait_for(lambda: _status(clean)["sick"]["Health"] == "healthy")
    first = _pid(clean, "sick")
    wait_for(
        lambda: clean.inspect("sick")["State"]["Health"]["Status"] == "unhealthy" or _pid(clean, "sick") != first,
        timeout=10,
    )
    if expected == "running":
        # Restarted whatever the policy says ("no"), counted as a restart.
        wait_for(lambda: _pid(clean, "sick") not in (0, first), timeout=10)
        assert clean.inspect("sick")["RestartCount"] == 1
    else:
        wait_for(lambda: clean.inspect("sick")["State"]["Status"] == "exited", timeout=10)
        health = clean.inspect("sick")["State"]["Health"]
        assert health["Status"] == "unhealthy" and health["FailingStreak"] >= 2
        assert all(set(r) == {"Start", "End", "ExitCode", "Output"} for r in health["Log"])


def test_tcp_and_http_probes_run_in_the_container_network(clean: Daemon, configs: Path) -> None:
    (configs / "probes.toml").write_text(
        '[containers.served]\nimage = "busybox"\n'
        'command = ["sh", "-c", "mkdir -p /www; echo hi > /www/index.html; httpd -f -p 8080 -h /www"]\n'
        '[containers.served.health]\nhttp = "http://127.0.0.1:8080/"\ninterval = "200ms"\ntimeout = "1s"\n'
        '[containers.listener]\nimage = "busybox"\ncommand = ["httpd", "-f", "-p", "9000"]\n'
        '[containers.listener.health]\ntcp = "127.0.0.1:9000"\ninterval = "200ms"\ntimeout = "1s"\n'
        f'[containers.closed]\nimage = "busybox"\ncommand = {SLEEPER}\n'
        '[containers.closed.health]\ntcp = "127.0.0.1:9000"\ninterval = "200ms"\ntimeout = "1s"\nretries = 1\non_unhealthy = "none"\n'
    )
    _use(clean, configs)
    wait_for(lambda: _status(clean)["served"]["Health"] == "healthy")
    wait_for(lambda: _status(clean)["listener"]["Health"] == "healthy")
    wait_for(lambda: _status(clean)["closed"]["Health"] == "unhealthy")
    assert " 200 OK" in clean.inspect("served")["State"]["Health"]["Log"][-1]["Output"]
