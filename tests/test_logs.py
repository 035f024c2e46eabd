"""Log rotation per container (json-file's max-size/max-file) and reading, tailing, following across it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from harness import CORRAL, DOCKER, REPO, Daemon

ROTATE = ("--log-opt", "max-size=1k", "--log-opt", "max-file=3")
# One JSON record per line is about 75 bytes: 1k holds a dozen or so.
RECORD_MAX = 120


def _numbers(text: str) -> list[int]:
    return [int(line) for line in text.split()]


def _log_files(daemon: Daemon, ref: str) -> dict[str, bytes]:
    log_path = Path(daemon.inspect(ref)["LogPath"])
    return {p.name: p.read_bytes() for p in log_path.parent.iterdir() if p.name.startswith("json.log")}


def test_rotation_keeps_the_newest_lines_within_the_limits(clean: Daemon) -> None:
    run = clean.corral("run", "--name", "seq", *ROTATE, "busybox", "seq", "1", "5000")
    assert run.returncode == 0, run.stderr
    files = _log_files(clean, "seq")
    assert set(files) == {"json.log", "json.log.1", "json.log.2"}
    for name, data in files.items():
        assert len(data) <= 1000 + RECORD_MAX, name
        assert data.endswith(b"\n") and all(json.loads(line)["stream"] == "stdout" for line in data.splitlines())
    # The rotated files are as full as whole records allow.
    assert all(len(files[name]) > 1000 - RECORD_MAX for name in ("json.log.1", "json.log.2"))
    numbers = _numbers(clean.corral("logs", "seq").stdout)
    assert numbers == list(range(numbers[0], 5001)) and len(numbers) > 20
    config = clean.inspect("seq")["HostConfig"]["LogConfig"]
    assert config == {"Type": "json-file", "Config": {"max-size": "1k", "max-file": "3"}}


def test_tail_since_until_and_timestamps_across_files(clean: Daemon) -> None:
    script = "for i in $(seq 1 60); do echo $i; usleep 2000; done"
    opts = ("--log-opt", "max-size=1k", "--log-opt", "max-file=20")
    run = clean.corral("run", "--name", "ticks", *opts, "busybox", "sh", "-c", script)
    assert run.returncode == 0, run.stderr
    files = _log_files(clean, "ticks")
    assert len(files) > 3
    current = len(files["json.log"].splitlines())
    stamped = [line.split(" ", 1) for line in clean.corral("logs", "-t", "ticks").stdout.splitlines()]
    assert [int(text) for _, text in stamped] == list(range(1, 61))
    stamps = [stamp for stamp, _ in stamped]
    assert stamps == sorted(stamps)

    # --tail reaching back over the current file into the rotated ones.
    for tail in (current + 2, 5, 25):
        assert _numbers(clean.corral("logs", "--tail", str(tail), "ticks").stdout) == list(range(61 - tail, 61))
    tailed = clean.corral("logs", "-t", "--tail", "3", "ticks").stdout.splitlines()
    assert tailed == [f"{stamp} {text}" for stamp, text in stamped[-3:]]

    # --since/--until by the records' own times (each line was written at its own moment).
    since, until = stamps[9], stamps[39]
    assert _numbers(clean.corral("logs", "--since", since, "ticks").stdout) == list(range(10, 61))
    assert _numbers(clean.corral("logs", "--until", until, "ticks").stdout) == list(range(1, 41))
    window = clean.corral("logs", "--since", since, "--until", until, "--tail", "4", "ticks").stdout
    assert _numbers(window) == [37, 38, 39, 40]


def _popen(daemon: Daemon, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CORRAL, *args], env=daemon.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO
    )


def _first_line(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    return process.stdout.readline()


def test_follow_and_attach_see_every_line_once_across_many_rotations(clean: Daemon) -> None:
    """A follower keeps up across rotations; the writer is paced so it stays within max-file - 1 of them."""
    count = 1000
    script = (
        "echo ready; while [ ! -e /go ]; do usleep 10000; done; "
        f"i=1; while [ $i -le {count} ]; do echo $i; i=$((i+1)); usleep 1000; done"
    )
    # `run` in the foreground attaches before the start; `logs -f` follows from the first line.
    # About 50 records a file and 20 rotations: paced so a follower on a loaded 2-core CI machine stays
    # within max-file - 1 rotations of the writer (a faster writer can outrun any file-based follower).
    opts = ("--log-opt", "max-size=4k", "--log-opt", "max-file=4")
    attached = _popen(clean, "run", "--name", "fol", *opts, "busybox", "sh", "-c", script)
    try:
        assert _first_line(attached) == "ready\n"
        follower = _popen(clean, "logs", "-f", "fol")
        try:
            assert _first_line(follower) == "ready\n"
            pid = clean.inspect("fol")["State"]["Pid"]
            Path(f"/proc/{pid}/root/go").touch()
            followed, _ = follower.communicate(timeout=60)
        finally:
            follower.kill()
        out, err = attached.communicate(timeout=60)
    finally:
        attached.kill()
    assert attached.returncode == 0, err
    assert _numbers(out) == list(range(1, count + 1))
    assert _numbers(followed) == list(range(1, count + 1))
    # It did rotate, many times: what is kept is a small tail.
    kept = _numbers(clean.corral("logs", "fol").stdout)
    assert kept == list(range(kept[0], count + 1)) and kept[0] > count - 250
    assert len(_log_files(clean, "fol")) == 4


def test_rotation_with_one_file_and_a_restart(clean: Daemon) -> None:
    # max-file 1 (the default): a full file is replaced by an empty one. A restart appends and keeps counting.
    assert (
        clean.corral("create", "--name", "one", "--log-opt", "max-size=2k", "busybox", "seq", "1", "200").returncode
        == 0
    )
    for _ in range(2):
        clean.corral("start", "one")
        assert clean.corral("wait", "one").stdout.strip() == "0"
        kept = _numbers(clean.corral("logs", "one").stdout)
        assert kept == list(range(kept[0], 201)) and 10 < len(kept) < 40
        files = _log_files(clean, "one")
        assert set(files) == {"json.log"} and len(files["json.log"]) <= 2000 + RECORD_MAX


@pytest.mark.skipif(DOCKER is None, reason="the docker CLI is not installed")
def test_docker_cli_log_opts_and_tail(clean: Daemon) -> None:
    opts = ("--log-opt", "max-size=1k", "--log-opt", "max-file=2")
    started = clean.docker("run", "-d", *opts, "busybox", "seq", "1", "500")
    assert started.returncode == 0, started.stderr
    container = started.stdout.strip()
    assert clean.docker("wait", container).stdout.strip() == "0"
    assert clean.docker("logs", "--tail", "3", container).stdout == "498\n499\n500\n"
    assert set(_log_files(clean, container)) == {"json.log", "json.log.1"}
    info: Any = json.loads(clean.docker("inspect", container).stdout)[0]
    assert info["HostConfig"]["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "1k", "max-file": "2"}}
    refused = clean.docker("run", "--rm", "--log-driver", "journald", "busybox", "true")
    assert refused.returncode == 125 and "log driver 'journald' is not supported by corral" in refused.stderr


@pytest.mark.parametrize(
    ("log_config", "message"),
    [
        ({"Type": "none"}, "log driver 'none' is not supported by corral (only json-file)"),
        ({"Type": "syslog", "Config": {}}, "log driver 'syslog' is not supported by corral (only json-file)"),
        ({"Config": {"max-sise": "1m"}}, "unknown log opt 'max-sise' for json-file log driver"),
        ({"Config": {"tag": "x"}}, "log opt 'tag' is not supported by corral yet"),
        ({"Config": {"max-file": "3"}}, "max-file cannot be set without max-size"),
        ({"Config": {"max-size": "ten"}}, "invalid log opt max-size 'ten'"),
        ({"Config": {"max-size": "0"}}, "max-size must be a positive number"),
        ({"Config": {"max-size": "1m", "max-file": "0"}}, "max-file cannot be less than 1"),
        ({"Config": {"max-size": "1m", "max-file": "x"}}, "invalid log opt max-file 'x': expected an integer"),
        ({"Config": {"max-size": 1000}}, "invalid HostConfig.LogConfig.Config: expected an object of strings"),
    ],
)
def test_bad_log_config_is_refused(clean: Daemon, log_config: dict[str, Any], message: str) -> None:
    body = {"Image": "busybox", "Cmd": ["true"], "HostConfig": {"LogConfig": log_config}}
    response = clean.api("POST", "/containers/create", json=body)
    assert response.status == 400
    assert message in response.message
    assert clean.api("GET", "/containers/json", query={"all": True}).json() == []


def test_bad_log_flags_through_the_cli(clean: Daemon) -> None:
    result = clean.corral("run", "--rm", "--log-opt", "max-file=2", "busybox", "true")
    assert result.returncode == 125 and "max-file cannot be set without max-size" in result.stderr
    result = clean.corral("run", "--rm", "--log-driver", "none", "busybox", "true")
    assert result.returncode == 125 and "log driver 'none' is not supported" in result.stderr
