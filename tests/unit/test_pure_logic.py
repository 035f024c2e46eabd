"""Unit tests of the pure pieces: parsing, merging, formatting."""

from __future__ import annotations

import argparse

import pytest

from supervisor.api.create_body import parse_create_body
from supervisor.cli.runflags import add_create_flags, create_body
from supervisor.errors import InvalidArgument
from supervisor.humanize import human_duration, human_size
from supervisor.isolation.capabilities import DOCKER_DEFAULT, resolve_capabilities
from supervisor.isolation.launcher.logfile import encode_records
from supervisor.isolation.users import resolve_user
from supervisor.reactor.etcfiles import resolv_conf
from supervisor.reactor.logs import LogQuery, parse_record, select_records
from supervisor.reactor.model import ContainerSpec, merge_image_config
from supervisor.reactor.signals import parse_signal
from supervisor.timestamps import parse_rfc3339_ns, rfc3339_nano
from supervisor.units import parse_cpus, parse_duration, parse_size

PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\nweb:x:33:33::/var/www:/bin/sh\n"
GROUP = "root:x:0:\nnobody:x:65534:\nwww:x:33:\nlog:x:4:web\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("32m", 32 << 20), ("1g", 1 << 30), ("64MiB", 64 << 20), ("512k", 512 << 10), ("1024", 1024), ("1.5g", 3 << 29)],
)
def test_sizes(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "lots", "12x", "-1m", "1 2"])
def test_bad_sizes(text: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_size(text)


def test_cpus_and_durations() -> None:
    assert parse_cpus("0.5") == 500_000_000
    assert parse_cpus("2") == 2_000_000_000
    with pytest.raises(InvalidArgument):
        parse_cpus("0.0000000001")
    assert parse_duration("1m30s") == 90.0
    assert parse_duration("500ms") == 0.5
    assert parse_duration("10") == 10.0
    with pytest.raises(InvalidArgument):
        parse_duration("10 minutes")


def test_users() -> None:
    assert resolve_user("", PASSWD, GROUP).uid == 0
    web = resolve_user("web", PASSWD, GROUP)
    assert (web.uid, web.gid, web.additional_gids, web.home) == (33, 33, (4,), "/var/www")
    assert resolve_user("1234", PASSWD, GROUP).uid == 1234
    assert resolve_user("web:log", PASSWD, GROUP).gid == 4
    assert resolve_user("0:99", PASSWD, GROUP).gid == 99
    with pytest.raises(InvalidArgument, match="unable to find user ghost"):
        resolve_user("ghost", PASSWD, GROUP)
    with pytest.raises(InvalidArgument, match="unable to find group ghosts"):
        resolve_user("web:ghosts", PASSWD, GROUP)


def test_capabilities() -> None:
    assert resolve_capabilities() == DOCKER_DEFAULT
    assert resolve_capabilities(add=["net_admin"]) == DOCKER_DEFAULT | {"NET_ADMIN"}
    assert resolve_capabilities(drop=["ALL"], add=["CAP_KILL"]) == {"KILL"}
    assert "SYS_ADMIN" in resolve_capabilities(add=["ALL"], drop=["CHOWN"])
    assert "CHOWN" not in resolve_capabilities(add=["ALL"], drop=["CHOWN"])
    with pytest.raises(InvalidArgument, match="unknown capability"):
        resolve_capabilities(add=["FLY"])


def test_image_config_merge() -> None:
    image = {
        "config": {
            "Cmd": ["sh"],
            "Entrypoint": None,
            "Env": ["PATH=/bin", "A=image"],
            "WorkingDir": "/w",
            "Labels": {"x": "1"},
        }
    }
    merged = merge_image_config(ContainerSpec(image="i", image_id="", env=("A=user", "B=2")), image)
    assert merged.args == ("sh",)
    assert merged.env == ("PATH=/bin", "A=user", "B=2")
    assert merged.working_dir == "/w" and merged.labels == {"x": "1"} and merged.stop_signal == "SIGTERM"
    with_entrypoint = {"config": {"Cmd": ["--help"], "Entrypoint": ["/app"]}}
    assert merge_image_config(ContainerSpec(image="i", image_id="", cmd=("run",)), with_entrypoint).args == (
        "/app",
        "run",
    )
    reset = merge_image_config(ContainerSpec(image="i", image_id="", entrypoint=(), cmd=("sh",)), with_entrypoint)
    assert reset.args == ("sh",)
    own = merge_image_config(ContainerSpec(image="i", image_id="", entrypoint=("/other",)), with_entrypoint)
    assert own.args == ("/other",)  # a user's entrypoint drops the image's Cmd


def test_create_body_round_trip_from_cli_flags() -> None:
    parser = argparse.ArgumentParser(add_help=False)
    add_create_flags(parser)
    args = parser.parse_args(
        [
            "--rm",
            "-e",
            "A=1",
            "-e",
            "FROM_ENV",
            "-m",
            "32m",
            "--cpus",
            "0.5",
            "--cap-drop",
            "all",
            "--entrypoint",
            "",
            "busybox",
            "sh",
            "-c",
            "echo -n hi",
        ]
    )
    body = create_body(args, environ={"FROM_ENV": "yes"})
    assert body["Cmd"] == ["sh", "-c", "echo -n hi"]
    assert body["Env"] == ["A=1", "FROM_ENV=yes"]
    spec = parse_create_body(body)
    assert spec.auto_remove and spec.resources.memory == 32 << 20 and spec.resources.nano_cpus == 500_000_000
    assert spec.entrypoint == () and spec.cap_drop == ("all",)


def test_create_body_accepts_docker_shapes() -> None:
    spec = parse_create_body(
        {"Image": "busybox", "Cmd": "true", "HostConfig": {"NetworkMode": "default", "PidsLimit": 0, "Binds": []}}
    )
    assert spec.cmd == ("true",) and spec.resources.pids_limit is None
    with pytest.raises(InvalidArgument, match="network mode 'host'"):
        parse_create_body({"Image": "busybox", "HostConfig": {"NetworkMode": "host"}})
    with pytest.raises(InvalidArgument, match="invalid Tty"):
        parse_create_body({"Image": "busybox", "Tty": "yes"})


def test_console_size_of_a_create_reaches_the_launch_spec() -> None:
    from supervisor.isolation.spec import LaunchSpec, Rootfs

    spec = parse_create_body({"Image": "busybox", "Tty": True, "HostConfig": {"ConsoleSize": [30, 100]}})
    assert spec.console_size == (30, 100)
    assert parse_create_body({"Image": "busybox", "HostConfig": {"ConsoleSize": [0, 0]}}).console_size is None
    with pytest.raises(InvalidArgument, match="invalid ConsoleSize"):
        parse_create_body({"Image": "busybox", "HostConfig": {"ConsoleSize": [30]}})
    launch = LaunchSpec(
        id="x", args=("sh",), env=(), cwd="/", user="", hostname="h",
        rootfs=Rootfs("/", ("l",), "u", "w", "/m", "s"), log_path="/log", capabilities=(), tty=True,
        console_size=(30, 100),
    )  # fmt: skip
    assert LaunchSpec.from_json(launch.to_json()) == launch


def test_log_records_round_trip() -> None:
    data = encode_records("stdout", b"one\ntwo\npartial", 1_700_000_000_123_456_789)
    records = [parse_record(line) for line in data.splitlines()]
    assert [r.text for r in records if r] == ["one\n", "two\n", "partial"]
    assert records[0] is not None and records[0].time == "2023-11-14T22:13:20.123456789Z"
    assert select_records([r for r in records if r], LogQuery(tail=1))[0].text == "partial"
    assert select_records([r for r in records if r], LogQuery(stdout=False)) == []
    assert parse_record(b"{broken") is None


def test_timestamps() -> None:
    stamp = rfc3339_nano(1_700_000_000_000_000_001)
    assert parse_rfc3339_ns(stamp) == 1_700_000_000_000_000_001
    assert parse_rfc3339_ns("2023-11-14T23:13:20+01:00") == 1_700_000_000 * 10**9
    assert parse_rfc3339_ns("0001-01-01T00:00:00Z") is None


def test_signals_and_humanize() -> None:
    assert parse_signal("TERM").name == "SIGTERM" and parse_signal("9").name == "SIGKILL"
    with pytest.raises(InvalidArgument):
        parse_signal("SIGNOPE")
    assert human_duration(0.5) == "Less than a second"
    assert human_duration(45) == "45 seconds"
    assert human_duration(90) == "About a minute"
    assert human_duration(3 * 86400) == "3 days"
    assert human_size(2_140_160) == "2.14MB"


def test_resolv_conf_drops_loopback_nameservers() -> None:
    assert (
        resolv_conf("nameserver 127.0.0.53\nnameserver 10.0.0.1\nsearch lan\n") == "nameserver 10.0.0.1\nsearch lan\n"
    )


def test_launch_spec_from_a_newer_daemon_is_accepted() -> None:
    from supervisor.isolation.spec import LaunchSpec, Rootfs

    spec = LaunchSpec(
        id="x", args=("true",), env=(), cwd="/", user="", hostname="h",
        rootfs=Rootfs("/", ("l",), "u", "w", "/m", "s"), log_path="/log", capabilities=(),
    )  # fmt: skip
    data = spec.to_json() | {"a_field_from_the_future": 1}
    assert LaunchSpec.from_json(data) == spec


def test_plain_is_asdict_without_copies() -> None:
    from dataclasses import asdict

    from supervisor.isolation.spec import BindMount, LaunchSpec, Membership, Rootfs
    from supervisor.plain import as_dict
    from supervisor.reactor.model import ContainerState

    spec = LaunchSpec(
        id="c" * 64, args=("true",), env=("A=1",), cwd="/", user="", hostname="h",
        rootfs=Rootfs("/r", ("l1", "l2"), "u", "w", "m", "s"), log_path="/l", capabilities=("CAP_KILL",),
        cgroup=Membership("/sys/fs/cgroup/x", ("/t",)), binds=(BindMount("/a", "/b", True),),
        etc_files=(("/etc/hostname", "h\n"),), console_size=(24, 80),
    )  # fmt: skip
    for value in (spec, ContainerSpec(image="i", image_id="d", cmd=("sh",), labels={"k": "v"}), ContainerState()):
        assert as_dict(value) == asdict(value)
    assert LaunchSpec.from_json(spec.to_json()) == spec
    with pytest.raises(TypeError):
        as_dict(("not", "a", "dataclass"))
