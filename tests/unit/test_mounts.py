"""Mount requests, pure: Docker's Binds/Mounts/Tmpfs rules, the CLI flags, the launch spec, TOML mounts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from supervisor.api.mounts import parse_bind, parse_mount, parse_mounts, parse_tmpfs
from supervisor.cli.mountflags import mount_flag, tmpfs_flags, volume_flags
from supervisor.errors import InvalidArgument
from supervisor.isolation.cgroups.resources import Resources
from supervisor.isolation.rootfs import tmpfs_mount_args
from supervisor.isolation.spec import BindMount, LaunchSpec, Membership, TmpfsMount
from supervisor.isolation.syscalls import MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY
from supervisor.reactor.config.diagnostics import Source
from supervisor.reactor.config.model import ContainerConfig, MountConfig
from supervisor.reactor.desired import spec_from_config
from supervisor.reactor.launchspec import build_launch_spec
from supervisor.reactor.model import ContainerSpec
from supervisor.reactor.mountspec import MountSpec


def test_binds_as_docker_reads_them() -> None:
    volume = parse_bind("data:/srv/data")
    assert (volume.type, volume.source, volume.target, volume.readonly, volume.mode) == (
        "volume",
        "data",
        "/srv/data",
        False,
        "z",
    )
    bind = parse_bind("/host//dir/:/ctr/:ro")
    assert (bind.type, bind.source, bind.target, bind.readonly, bind.mode, bind.create_source) == (
        "bind",
        "/host/dir",
        "/ctr",
        True,
        "ro",
        True,
    )
    anonymous = parse_bind("/only/target")
    assert anonymous.type == "volume" and anonymous.anonymous and anonymous.source == ""
    assert parse_bind("v1:/d:ro,nocopy").no_copy
    assert parse_bind("/h:/c:rprivate,z").raw == "/h:/c:rprivate,z"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("/foo:rw", "invalid volume specification: '/foo:rw'"),
        (":/x", "invalid volume specification"),
        ("a:b:c:d", "invalid volume specification"),
        ("v1:/d:bogus", "invalid mode: bogus"),
        ("v1:/d:ro,rw", "invalid mode: ro,rw"),
        ("v1:relative", "mount path must be absolute"),
        ("v1:/", "destination can't be '/'"),
        ("v1:/d:shared", "field BindOptions must not be specified"),
        ("/h:/d:nocopy", "field VolumeOptions must not be specified"),
        ("/h:/d:rshared", "not supported by corral"),
    ],
)
def test_bad_binds(raw: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_bind(raw)


def test_mounts_objects() -> None:
    bind = parse_mount({"Type": "bind", "Source": "/h", "Target": "/c", "ReadOnly": True}, "m")
    assert bind.type == "bind" and bind.readonly and not bind.create_source and bind.mode == ""
    created = parse_mount(
        {"Type": "bind", "Source": "/h", "Target": "/c", "BindOptions": {"CreateMountpoint": True}}, "m"
    )
    assert created.create_source
    volume = parse_mount(
        {"Type": "volume", "Source": "v", "Target": "/d", "VolumeOptions": {"NoCopy": True, "Labels": {"a": "b"}}}, "m"
    )
    assert volume.no_copy and volume.labels == {"a": "b"} and not volume.anonymous
    assert parse_mount({"Type": "volume", "Target": "/d"}, "m").anonymous
    tmpfs = parse_mount({"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 1 << 20, "Mode": 0o1777}}, "m")
    assert (tmpfs.tmpfs_size, tmpfs.tmpfs_mode) == (1 << 20, 0o1777)


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({"Type": "bind", "Target": "/c"}, 'type "bind": field Source must not be empty'),
        ({"Type": "bind", "Source": "rel", "Target": "/c"}, "mount path must be absolute"),
        ({"Type": "volume", "Source": "v"}, "field Target must not be empty"),
        ({"Type": "tmpfs", "Source": "x", "Target": "/t"}, "field Source must not be specified"),
        ({"Type": "tmpfs", "Target": "/t", "VolumeOptions": {}}, "field VolumeOptions must not be specified"),
        ({"Type": "foo", "Target": "/t"}, "mount type unknown"),
        ({"Type": "image", "Source": "busybox", "Target": "/t"}, "not supported by corral"),
        ({"Type": "volume", "Source": "v", "Target": "/d", "VolumeOptions": {"Subpath": "x"}}, "Subpath"),
        (
            {"Type": "volume", "Target": "/d", "VolumeOptions": {"DriverConfig": {"Name": "nfs"}}},
            "volume driver 'nfs' is not supported",
        ),
        (
            {"Type": "volume", "Target": "/d", "VolumeOptions": {"DriverConfig": {"Options": {"type": "tmpfs"}}}},
            "driver options are not supported",
        ),
        ({"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"Options": [["uid", "1"]]}}, "invalid option: uid"),
        ({"Type": "bind", "Source": "/h", "Target": "/c", "BindOptions": {"Propagation": "rslave"}}, "rslave"),
        ({"Type": "bind", "Source": "/h", "Target": "/c", "BindOptions": {"Propagation": "sideways"}}, "invalid"),
        ({"Type": "bind", "Source": "/h", "Target": "/c", "ReadOnly": "yes"}, "expected a boolean"),
    ],
)
def test_bad_mounts(obj: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse_mount(obj, "HostConfig.Mounts[0]")


def test_tmpfs_entries_and_options() -> None:
    mount = parse_tmpfs("/run/", "rw,size=64k,mode=1777,exec")
    assert mount.target == "/run" and mount.tmpfs_options == ("rw", "size=64k", "mode=1777", "exec")
    with pytest.raises(InvalidArgument, match="invalid tmpfs option 'bogus'"):
        parse_tmpfs("/t", "size=1m,bogus")
    with pytest.raises(InvalidArgument, match="invalid tmpfs destination"):
        parse_tmpfs("relative", "")
    flags, data = tmpfs_mount_args(("size=1m", "mode=700", "exec", "ro", "size=2m"))
    assert flags == MS_NOSUID | MS_NODEV | MS_RDONLY and data == "size=2m,mode=700"
    assert tmpfs_mount_args(())[0] == MS_NOSUID | MS_NODEV | MS_NOEXEC
    with pytest.raises(ValueError):
        tmpfs_mount_args(("shared",))


def test_a_body_with_every_kind() -> None:
    body = {
        "Volumes": {"/anon": {}, "/data": {}},
        "HostConfig": {
            "Binds": ["data:/data", "/h:/h:ro"],
            "Mounts": [{"Type": "tmpfs", "Target": "/scratch"}],
            "Tmpfs": {"/run": "size=1m"},
        },
    }
    mounts = parse_mounts(body, body["HostConfig"])  # type: ignore[arg-type]
    assert [(m.type, m.target, m.origin) for m in mounts] == [
        ("volume", "/data", "binds"),
        ("bind", "/h", "binds"),
        ("tmpfs", "/scratch", "mounts"),
        ("tmpfs", "/run", "tmpfs"),
        # /data is already mounted: Config.Volumes only adds the anonymous one.
        ("volume", "/anon", "volumes"),
    ]
    with pytest.raises(InvalidArgument, match="Duplicate mount point: /x"):
        parse_mounts({}, {"Binds": ["a1:/x"], "Tmpfs": {"/x": ""}})
    with pytest.raises(InvalidArgument, match="volume driver 'nfs'"):
        parse_mounts({}, {"VolumeDriver": "nfs"})


def test_cli_flags_as_the_docker_cli_sends_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    binds, volumes = volume_flags(["v1:/d", "/data", "./rel:/r:ro", "/h:/c"])
    assert binds == ["v1:/d", f"{tmp_path}/rel:/r:ro", "/h:/c"] and volumes == {"/data": {}}
    with pytest.raises(InvalidArgument, match="too many colons"):
        volume_flags(["a:/b:ro:x"])
    with pytest.raises(InvalidArgument, match="empty section between colons"):
        volume_flags(["a::/b"])
    assert mount_flag("type=bind,src=/h,dst=/c,readonly,bind-propagation=rprivate") == {
        "Type": "bind",
        "Source": "/h",
        "Target": "/c",
        "ReadOnly": True,
        "BindOptions": {"Propagation": "rprivate"},
    }
    assert mount_flag("target=/d,volume-nocopy,volume-label=a=b")["VolumeOptions"] == {
        "NoCopy": True,
        "Labels": {"a": "b"},
    }
    assert mount_flag("type=tmpfs,target=/t,tmpfs-size=64m,tmpfs-mode=1770")["TmpfsOptions"] == {
        "SizeBytes": 64 << 20,
        "Mode": 0o1770,
    }
    for bad, message in [
        ("type=volume,target=/d,foo=bar", "unexpected key 'foo' in 'foo=bar'"),
        ("type=volume,source=v", "target is required"),
        ("type=tmpfs,target=/t,volume-nocopy", "cannot mix 'volume-\\*' options with mount type 'tmpfs'"),
        ("type=bind,target", "must be a key=value pair"),
        ("type=tmpfs,target=/t,tmpfs-mode=9", "invalid value for tmpfs-mode"),
        ("type=bind,ro=maybe", "invalid boolean value"),
    ]:
        with pytest.raises(InvalidArgument, match=message):
            mount_flag(bad)
    assert tmpfs_flags(["/run:size=1m,exec", "/tmp"]) == {"/run": "size=1m,exec", "/tmp": ""}


def _launch(spec: ContainerSpec, tmp_path: Path) -> LaunchSpec:
    return build_launch_spec(
        container_id="c" * 64,
        spec=spec,
        state_root=tmp_path,
        container_dir=tmp_path / "containers" / "c",
        layers=[tmp_path / "layers" / "l"],
        cgroup=Membership(None, ()),
        log_path=tmp_path / "log",
        host_resolv_conf="",
    )


def test_launch_spec_mounts(tmp_path: Path) -> None:
    spec = ContainerSpec(
        image="busybox",
        image_id="x",
        cmd=("true",),
        mounts=(
            MountSpec(type="volume", target="/data", source="v1", readonly=True),
            MountSpec(type="bind", target="/etc/hosts", source="/srv/hosts"),
            MountSpec(type="tmpfs", target="/t", readonly=True, tmpfs_size=1024, tmpfs_mode=0o700),
        ),
    )
    launch = _launch(spec, tmp_path)
    assert launch.binds == (
        BindMount(str(tmp_path / "volumes" / "v1" / "_data"), "/data", True),
        BindMount("/srv/hosts", "/etc/hosts", False),
    )
    assert launch.tmpfs == (TmpfsMount("/t", ("ro", "mode=700", "size=1024")),)
    # The user's /etc/hosts replaces the generated one.
    assert [path for path, _ in launch.etc_files] == ["/etc/hostname", "/etc/resolv.conf"]
    assert LaunchSpec.from_json(launch.to_json()) == launch
    assert ContainerSpec.from_json(spec.to_json()) == spec


def test_toml_mounts_become_the_spec(tmp_path: Path) -> None:
    config = ContainerConfig(
        name="web",
        image="busybox",
        source=Source(tmp_path / "web.toml", 1),
        resources=Resources(),
        mounts=(
            MountConfig(type="volume", target="/data", source="webdata"),
            MountConfig(type="bind", target="/site", source="/srv/site", readonly=True),
            MountConfig(type="tmpfs", target="/tmp", size=1 << 20),
        ),
    )
    mounts = spec_from_config(config).mounts
    assert [(m.type, m.source, m.target, m.readonly, m.anonymous, m.create_source) for m in mounts] == [
        ("volume", "webdata", "/data", False, False, False),
        ("bind", "/srv/site", "/site", True, False, False),
        ("tmpfs", "", "/tmp", False, False, False),
    ]
    assert mounts[2].tmpfs_size == 1 << 20
