"""The launcher's json-file writer with rotation, and reading and following across rotated files."""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import trio

from supervisor.api.container_json import _log_config
from supervisor.api.create_body import log_options, parse_create_body
from supervisor.cli.runflags import add_create_flags, create_body
from supervisor.errors import InvalidArgument
from supervisor.isolation.launcher import logfile
from supervisor.isolation.launcher.logfile import LogFile
from supervisor.reactor.inotify import InotifyHub
from supervisor.reactor.logs import LogQuery, LogRecord, history, open_files, read_log
from supervisor.reactor.model import ContainerSpec, LogOptions


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The writer's clock: one second later per write, from 1_700_000_000 s."""
    now = [1_700_000_000 * 10**9]

    def time_ns() -> int:
        now[0] += 10**9
        return now[0]

    monkeypatch.setattr(logfile, "time", SimpleNamespace(time_ns=time_ns))
    yield now


def write_numbers(log: LogFile, start: int, stop: int, stream: str = "stdout") -> None:
    for i in range(start, stop):
        log.write(stream, f"{i}\n".encode())


def files_on_disk(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def read_all(path: Path, query: LogQuery | None = None) -> list[LogRecord]:
    readers = open_files(path)
    try:
        return list(history(readers, query or LogQuery()))
    finally:
        for reader in readers:
            reader.close()


def numbers(records: list[LogRecord]) -> list[int]:
    return [int(r.text) for r in records]


def test_rotates_at_max_size_keeping_max_files(tmp_path: Path) -> None:
    path = tmp_path / "json.log"
    log = LogFile(str(path), max_size=1000, max_files=3)
    write_numbers(log, 0, 500)
    log.close()
    assert files_on_disk(tmp_path) == ["json.log", "json.log.1", "json.log.2"]
    for name in files_on_disk(tmp_path):
        data = (tmp_path / name).read_bytes()
        assert 0 < len(data) <= 1000
        # Whole records only: every line is one JSON object.
        assert data.endswith(b"\n") and all(json.loads(line)["log"] for line in data.splitlines())
    got = numbers(read_all(path))
    # The newest records, each once, in order, oldest file first.
    assert got == list(range(got[0], 500))
    assert len(got) > 30
    # A full file took the next record into a fresh one: .2 and .1 are as full as a record allows.
    record = len(logfile.encode_records("stdout", b"499\n", 0))
    assert all(1000 - record < (tmp_path / n).stat().st_size for n in ("json.log.1", "json.log.2"))


def test_one_chunk_of_many_lines_rotates_between_records(tmp_path: Path) -> None:
    path = tmp_path / "json.log"
    log = LogFile(str(path), max_size=300, max_files=50)
    log.write("stdout", b"".join(f"{i}\n".encode() for i in range(200)))
    log.close()
    assert numbers(read_all(path)) == list(range(200))
    assert all((tmp_path / n).stat().st_size <= 300 for n in files_on_disk(tmp_path))


def test_a_record_larger_than_max_size_stands_alone(tmp_path: Path) -> None:
    path = tmp_path / "json.log"
    log = LogFile(str(path), max_size=100, max_files=3)
    log.write("stdout", b"a\n")
    log.write("stdout", b"x" * 500 + b"\n")
    log.write("stdout", b"b\n")
    log.close()
    texts = [r.text for r in read_all(path)]
    assert texts == ["a\n", "x" * 500 + "\n", "b\n"]
    assert len((tmp_path / "json.log.1").read_bytes().splitlines()) == 1


def test_max_files_1_replaces_the_full_file(tmp_path: Path) -> None:
    path = tmp_path / "json.log"
    log = LogFile(str(path), max_size=500, max_files=1)
    write_numbers(log, 0, 100)
    log.close()
    assert files_on_disk(tmp_path) == ["json.log"]
    assert path.stat().st_size <= 500
    got = numbers(read_all(path))
    assert got == list(range(got[0], 100))


def test_no_max_size_never_rotates(tmp_path: Path) -> None:
    path = tmp_path / "json.log"
    log = LogFile(str(path))
    write_numbers(log, 0, 2000)
    log.close()
    assert files_on_disk(tmp_path) == ["json.log"]
    assert numbers(read_all(path)) == list(range(2000))


def test_reopening_appends_and_counts_the_existing_size(tmp_path: Path) -> None:
    path = tmp_path / "json.log"
    for start in range(0, 100, 10):  # a container restarted ten times
        log = LogFile(str(path), max_size=400, max_files=100)
        write_numbers(log, start, start + 10)
        log.close()
    assert numbers(read_all(path)) == list(range(100))
    assert all((tmp_path / n).stat().st_size <= 400 for n in files_on_disk(tmp_path))


def test_a_crash_mid_rotation_is_finished_by_the_next_writer(tmp_path: Path) -> None:
    path = tmp_path / "json.log"
    log = LogFile(str(path), max_size=10_000, max_files=3)
    write_numbers(log, 0, 5)
    log.close()
    # The launcher died after linking json.log as json.log.1, before the new json.log replaced it.
    os.link(path, tmp_path / "json.log.1")
    (tmp_path / "json.log.new").write_bytes(b"")
    assert numbers(read_all(path)) == list(range(5))  # one file, not read twice
    log = LogFile(str(path), max_size=10_000, max_files=3)
    write_numbers(log, 5, 8)
    log.close()
    assert files_on_disk(tmp_path) == ["json.log", "json.log.1"]
    assert numbers(read_all(path)) == list(range(8))


def test_tail_since_until_across_files(tmp_path: Path, clock: list[int]) -> None:
    path = tmp_path / "json.log"
    log = LogFile(str(path), max_size=400, max_files=100)
    write_numbers(log, 0, 100)  # record i written at second base + i + 1
    log.close()
    assert len(files_on_disk(tmp_path)) > 10
    base = 1_700_000_000 * 10**9
    second = 10**9
    assert numbers(read_all(path, LogQuery(tail=12))) == list(range(88, 100))
    assert numbers(read_all(path, LogQuery(tail=0))) == []
    assert numbers(read_all(path, LogQuery(tail=1000))) == list(range(100))
    assert numbers(read_all(path, LogQuery(since_ns=base + 41 * second))) == list(range(40, 100))
    assert numbers(read_all(path, LogQuery(until_ns=base + 20 * second))) == list(range(0, 20))
    window = LogQuery(since_ns=base + 31 * second, until_ns=base + 60 * second, tail=5)
    assert numbers(read_all(path, window)) == list(range(55, 60))
    assert numbers(read_all(path, LogQuery(stderr=False, tail=3))) == [97, 98, 99]
    assert read_all(path, LogQuery(stdout=False)) == []


def test_tail_over_a_partial_last_line(tmp_path: Path) -> None:
    path = tmp_path / "json.log"
    log = LogFile(str(path), max_size=200, max_files=5)
    write_numbers(log, 0, 20)
    log.close()
    with open(path, "ab") as f:
        f.write(b'{"log":"unfinished')  # a write in progress
    assert numbers(read_all(path, LogQuery(tail=3))) == [17, 18, 19]
    assert numbers(read_all(path))[-1] == 19


def test_long_lines_are_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "json.log"
    log = LogFile(str(path))
    big = "y" * 200_000 + "\n"
    log.write("stdout", big.encode())
    log.write("stdout", b"after\n")
    log.close()
    assert [r.text for r in read_all(path)] == [big, "after\n"]
    assert [r.text for r in read_all(path, LogQuery(tail=2))] == [big, "after\n"]


# -- following across rotations ------------------------------------------------


async def _follow(path: Path, hub: InotifyHub, got: list[int], stop: trio.Event, query: LogQuery) -> None:
    async for record in read_log(path, query, follow=True, inotify=hub, done=stop.is_set, wait_done=stop.wait):
        got.append(int(record.text))


async def test_follow_sees_every_record_once_across_rotations(tmp_path: Path) -> None:
    path = tmp_path / "json.log"
    path.touch()
    hub = InotifyHub()
    got: list[int] = []
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(hub.run)
        log = LogFile(str(path), max_size=300, max_files=3)
        write_numbers(log, 0, 3)  # before the follower: read as history
        async with trio.open_nursery() as followers:
            followers.start_soon(_follow, path, hub, got, stop, LogQuery())
            await trio.sleep(0.05)
            for i in range(3, 2000):
                write_numbers(log, i, i + 1)
                if i % 5 == 0:
                    # Four records a file: one or two rotations between the follower's turns (it may be
                    # max_files - 1 behind), now and then none.
                    await trio.sleep(0.002)
            log.close()
            stop.set()
        nursery.cancel_scope.cancel()
    assert got == list(range(2000))


async def test_follow_with_tail_and_a_writer_in_another_thread(tmp_path: Path) -> None:
    path = tmp_path / "json.log"
    log = LogFile(str(path), max_size=1000, max_files=10)
    write_numbers(log, 0, 100)
    hub = InotifyHub()
    got: list[int] = []
    stop = trio.Event()

    def writer() -> None:
        for i in range(100, 1500):
            write_numbers(log, i, i + 1)
            if i % 10 == 0:
                time.sleep(0.001)
        log.close()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(hub.run)
        async with trio.open_nursery() as followers:
            followers.start_soon(_follow, path, hub, got, stop, LogQuery(tail=5))
            await trio.sleep(0.05)
            thread = threading.Thread(target=writer)
            thread.start()
            await trio.to_thread.run_sync(thread.join)
            stop.set()
        nursery.cancel_scope.cancel()
    assert got == list(range(95, 1500))


async def _follow_from_end(path: Path, hub: InotifyHub, got: list[int], stop: trio.Event) -> None:
    records = read_log(path, LogQuery(), follow=True, inotify=hub, from_end=True, done=stop.is_set, wait_done=stop.wait)
    async for record in records:
        got.append(int(record.text))


@pytest.mark.parametrize("max_files", [8, 3])
async def test_follow_from_end_through_files_it_never_saw(tmp_path: Path, max_files: int) -> None:
    """Rotations while the follower sleeps: it reads the files made meanwhile, or what is left of them."""
    path = tmp_path / "json.log"
    log = LogFile(str(path), max_size=200, max_files=max_files)  # two records a file
    write_numbers(log, 0, 10)
    hub = InotifyHub()
    got: list[int] = []
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(hub.run)
        async with trio.open_nursery() as followers:
            followers.start_soon(_follow_from_end, path, hub, got, stop)
            await trio.sleep(0.05)
            write_numbers(log, 10, 20)  # five rotations in one go: the follower wakes after them
            await trio.sleep(0.05)
            write_numbers(log, 20, 25)
            log.close()
            stop.set()
        nursery.cancel_scope.cancel()
    if max_files > 5:
        assert got == list(range(10, 25))
    else:
        # Too far behind: what was deleted is gone (as with Docker), the rest comes once and in order.
        assert got == list(range(got[0], 25)) and got[0] > 10


# -- options -------------------------------------------------------------------


def test_log_options_as_docker_reads_them() -> None:
    assert log_options({}) == LogOptions()
    assert log_options({"max-size": "1k", "max-file": "3"}) == LogOptions(max_size=1000, max_files=3)
    assert log_options({"max-size": "10m"}) == LogOptions(max_size=10_000_000)
    assert log_options({"max-size": "1.5KiB"}).max_size == 1500  # FromHumanSize: decimal, `ib` ignored
    assert log_options({"max-size": "2048"}).max_size == 2048
    assert log_options({"max-size": "1 g", "max-file": "1"}) == LogOptions(max_size=10**9)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"max-size": "lots"}, "invalid log opt max-size 'lots'"),
        ({"max-size": "0"}, "max-size must be a positive number"),
        ({"max-size": "1x"}, "invalid log opt max-size"),
        ({"max-size": "1m", "max-file": "three"}, "invalid log opt max-file 'three'"),
        ({"max-size": "1m", "max-file": "0"}, "max-file cannot be less than 1"),
        ({"max-file": "3"}, "max-file cannot be set without max-size"),
        ({"compress": "true"}, "log opt 'compress' is not supported"),
        ({"max-sise": "1m"}, "unknown log opt 'max-sise' for json-file log driver"),
    ],
)
def test_bad_log_options(config: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        log_options(config)


def test_log_config_in_create_bodies_and_specs() -> None:
    def spec(log_config: object) -> ContainerSpec:
        return parse_create_body({"Image": "busybox", "HostConfig": {"LogConfig": log_config}})

    assert spec({"Type": "json-file", "Config": {"max-size": "1m", "max-file": "3"}}).log == LogOptions(10**6, 3)
    assert spec({"Type": "", "Config": {}}).log == LogOptions()
    assert spec(None).log == LogOptions()
    for driver in ("none", "journald", "local"):
        with pytest.raises(InvalidArgument, match=f"log driver '{driver}' is not supported"):
            spec({"Type": driver})
    with pytest.raises(InvalidArgument, match="HostConfig.LogConfig.Config"):
        spec({"Type": "json-file", "Config": {"max-file": 3}})
    rotated = spec({"Config": {"max-size": "64k", "max-file": "2"}})
    assert ContainerSpec.from_json(json.loads(json.dumps(rotated.to_json()))) == rotated
    # A config.json written before the field existed.
    old = rotated.to_json()
    del old["log"]
    assert ContainerSpec.from_json(old).log == LogOptions()
    assert _log_config(rotated.log) == {"max-size": "64k", "max-file": "2"}
    assert _log_config(LogOptions(max_size=67_108_864)) == {"max-size": "67108864", "max-file": "1"}
    assert _log_config(LogOptions()) == {}


def test_log_options_validate_themselves() -> None:
    with pytest.raises(InvalidArgument, match="max_files cannot be set without max_size"):
        LogOptions(max_files=2)
    with pytest.raises(InvalidArgument, match="max_size"):
        LogOptions(max_size=0)
    with pytest.raises(InvalidArgument, match="max_files"):
        LogOptions(max_size=10, max_files=0)


def test_cli_log_flags() -> None:
    parser = argparse.ArgumentParser(add_help=False)
    add_create_flags(parser)
    args = parser.parse_args(["--log-opt", "max-size=1k", "--log-opt", "max-file=3", "busybox"])
    body = create_body(args, environ={})
    assert body["HostConfig"]["LogConfig"] == {"Type": "", "Config": {"max-size": "1k", "max-file": "3"}}
    assert parse_create_body(body).log == LogOptions(max_size=1000, max_files=3)
    args = parser.parse_args(["--log-driver", "syslog", "busybox"])
    with pytest.raises(InvalidArgument, match="log driver 'syslog' is not supported"):
        parse_create_body(create_body(args, environ={}))
