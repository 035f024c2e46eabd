"""Good config files into the model: every key, defaults, the forms a value may take."""

from __future__ import annotations

import textwrap
from pathlib import Path

from supervisor.isolation.cgroups.resources import Resources
from supervisor.reactor.config import (
    ContainerConfig,
    Dependency,
    HealthConfig,
    LogConfig,
    MountConfig,
    RestartConfig,
    Source,
    load_file,
    load_text,
)

FULL = """\
[containers.web]
image = "busybox"
command = ["httpd", "-f", "-p", "8080", "-h", "/var/www"]
entrypoint = ["/bin/sh", "-c"]
env = { GREETING = "hi", PORT = 8080 }
workdir = "/var/www"
user = "nobody:nogroup"
hostname = "web"
labels = { tier = "front", "com.example.team" = "web" }
mounts = [ { type = "bind", source = "/srv/www", target = "/var/www", readonly = true },
           { type = "volume", source = "webdata", target = "/data" },
           { type = "tmpfs", target = "/tmp", size = "64MiB" } ]
stop_signal = "QUIT"
stop_timeout = "1m30s"
depends_on = { migrate = "completed_successfully", db = "healthy" }

[containers.web.resources]
memory = "64MiB"
memory_swap = "128MiB"
pids = 100
cpus = 0.5
cpu_shares = 512
cpuset = "0"

[containers.web.restart]
policy = "on-failure"
max_retries = 5
initial = "250ms"
max = "30s"
reset_after = "1m"

[containers.web.health]
http = "http://127.0.0.1:8080/"
interval = "2s"
timeout = "1s"
retries = 4
start_period = 5
on_unhealthy = "kill"

[containers.web.logs]
max_size = "10MiB"
max_files = 5
"""


def load_one(text: str, name: str = "web.toml") -> ContainerConfig:
    result = load_text(Path("configs", name), textwrap.dedent(text))
    assert result.errors == (), [str(e) for e in result.errors]
    (container,) = result.containers
    return container


def test_every_key_into_the_model() -> None:
    c = load_one(FULL)
    assert c == ContainerConfig(
        name="web",
        image="busybox",
        command=("httpd", "-f", "-p", "8080", "-h", "/var/www"),
        entrypoint=("/bin/sh", "-c"),
        env=("GREETING=hi", "PORT=8080"),
        workdir="/var/www",
        user="nobody:nogroup",
        hostname="web",
        labels=(("com.example.team", "web"), ("tier", "front")),
        mounts=(
            MountConfig(type="bind", source="/srv/www", target="/var/www", readonly=True),
            MountConfig(type="volume", source="webdata", target="/data"),
            MountConfig(type="tmpfs", target="/tmp", size=64 << 20),
        ),
        resources=Resources(
            memory=64 << 20,
            memory_swap=128 << 20,
            pids_limit=100,
            nano_cpus=500_000_000,
            cpu_shares=512,
            cpuset_cpus="0",
        ),
        restart=RestartConfig(policy="on-failure", max_retries=5, initial=0.25, max_delay=30.0, reset_after=60.0),
        health=HealthConfig(
            kind="http",
            target="http://127.0.0.1:8080/",
            interval=2.0,
            timeout=1.0,
            retries=4,
            start_period=5.0,
            on_unhealthy="kill",
        ),
        logs=LogConfig(max_size=10 << 20, max_files=5),
        depends_on=(Dependency("db", "healthy"), Dependency("migrate", "completed_successfully")),
        stop_signal="SIGQUIT",
        stop_timeout=90.0,
        source=Source(Path("configs/web.toml"), 1),
    )
    assert c.source == Source(Path("configs/web.toml"), 1)


def test_defaults() -> None:
    c = load_one('[containers.app]\nimage = "busybox"\n')
    assert c.command is None and c.entrypoint is None
    assert c.env == () and c.labels == () and c.mounts == () and c.depends_on == ()
    assert (c.workdir, c.user, c.hostname) == ("", "", "")
    assert c.resources == Resources()
    assert c.restart == RestartConfig(policy="no", max_retries=0, initial=0.1, max_delay=60.0, reset_after=10.0)
    assert c.health is None
    assert c.logs == LogConfig(max_size=10 << 20, max_files=3)
    assert c.stop_signal is None and c.stop_timeout == 10.0


def test_health_defaults_and_probe_kinds() -> None:
    def health(body: str) -> HealthConfig:
        config = load_one(f'[containers.app]\nimage = "busybox"\n[containers.app.health]\n{body}\n').health
        assert config is not None
        return config

    assert health('command = ["true"]') == HealthConfig(
        kind="command", argv=("true",), interval=30.0, timeout=30.0, retries=3, start_period=0.0, on_unhealthy="restart"
    )
    assert health('cmd_shell = "wget -qO- localhost:80 | grep ok"').argv == (
        "/bin/sh",
        "-c",
        "wget -qO- localhost:80 | grep ok",
    )
    assert health("tcp = 8080").target == "127.0.0.1:8080"
    assert health('tcp = "db.local:5432"').tcp_address == ("db.local", 5432)
    assert health('tcp = "[::1]:80"').tcp_address == ("::1", 80)
    assert health('tcp = ":9000"').target == "127.0.0.1:9000"


def test_command_string_runs_with_sh_and_empty_is_given_empty() -> None:
    c = load_one('[containers.app]\nimage = "busybox"\ncommand = "echo $HOME && sleep 1"\n')
    assert c.command == ("/bin/sh", "-c", "echo $HOME && sleep 1")
    c = load_one('[containers.app]\nimage = "busybox"\ncommand = []\nentrypoint = ""\n')
    assert c.command == () and c.entrypoint == ()
    c = load_one('[containers.app]\nimage = "busybox"\nentrypoint = "exec sleep 5"\n')
    assert c.entrypoint == ("/bin/sh", "-c", "exec sleep 5") and c.command is None
    assert c.args == ("/bin/sh", "-c", "exec sleep 5")


def test_shorthands() -> None:
    c = load_one(
        '[containers.app]\nimage = "busybox"\nrestart = "unless-stopped"\n'
        'env = ["A=1", "B=x=y"]\ndepends_on = ["db", "cache"]\nuser = 1000\n'
    )
    assert c.restart == RestartConfig(policy="unless-stopped")
    assert c.env == ("A=1", "B=x=y")
    assert c.depends_on == (Dependency("cache", "started"), Dependency("db", "started"))
    assert c.user == "1000"


def test_resources_unlimited_swap() -> None:
    c = load_one('[containers.app]\nimage = "busybox"\nresources = { memory = "1g", memory_swap = -1 }\n')
    assert c.resources == Resources(memory=1 << 30, memory_swap=-1)


def test_several_containers_per_file_and_dotted_keys() -> None:
    text = """\
    [containers.one]
    image = "busybox"
    restart.policy = "always"
    health.tcp = 80

    [containers."two.b"]
    image = "busybox:latest"
    """
    result = load_text(Path("x.toml"), textwrap.dedent(text))
    assert result.errors == ()
    one, two = result.containers
    assert (one.name, one.restart.policy, one.health and one.health.target) == ("one", "always", "127.0.0.1:80")
    assert (two.name, two.image, two.source.line) == ("two.b", "busybox:latest", 6)


def test_env_file_folded_into_env(tmp_path: Path) -> None:
    (tmp_path / "app.env").write_text('# comment\n\nA=from file\n  B= spaced \nC="quoted"\n')
    (tmp_path / "more.env").write_text("A=second file\nD=4\n")
    (tmp_path / "app.toml").write_text(
        '[containers.app]\nimage = "busybox"\nenv_file = ["app.env", "more.env"]\nenv = { D = "inline", E = "5" }\n'
    )
    result = load_file(tmp_path / "app.toml")
    assert result.errors == ()
    (c,) = result.containers
    # Later files override earlier ones and env overrides files; each key keeps its first position.
    assert c.env == ("A=second file", "B= spaced ", 'C="quoted"', "D=inline", "E=5")
    assert c.env_files == (tmp_path / "app.env", tmp_path / "more.env")


def test_relative_bind_source_is_resolved_against_the_file(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text(
        '[containers.app]\nimage = "busybox"\nmounts = [{ type = "bind", source = "./www/../site", target = "/srv/" }]\n'
    )
    (c,) = load_file(tmp_path / "a.toml").containers
    assert c.mounts == (MountConfig(type="bind", source=str(tmp_path / "site"), target="/srv"),)


def test_empty_file_declares_nothing() -> None:
    result = load_text(Path("empty.toml"), "# nothing here yet\n")
    assert result.ok and result.containers == () and result.errors == ()


def test_logs_that_never_rotate_are_one_file() -> None:
    c = load_one('[containers.app]\nimage = "busybox"\nlogs = { max_size = 0 }\n')
    assert c.logs == LogConfig(max_size=None, max_files=1)
