"""`--change` instructions (Dockerfile syntax) and commit's config merge."""

from __future__ import annotations

from typing import Any

import pytest

from supervisor.errors import InvalidArgument
from supervisor.storage.commit import commit_config, merge_container_config
from supervisor.storage.instructions import apply_changes, parse_duration

BASE: dict[str, Any] = {"Env": ["PATH=/usr/bin:/bin", "HOME=/root"], "Cmd": ["sh"]}


def test_exec_and_shell_forms() -> None:
    assert apply_changes(BASE, ['CMD ["echo", "hi there"]'])["Cmd"] == ["echo", "hi there"]
    assert apply_changes(BASE, ["CMD echo $HOME 'x'"])["Cmd"] == ["/bin/sh", "-c", "echo $HOME 'x'"]
    assert apply_changes({**BASE, "Shell": ["/bin/bash", "-xc"]}, ["cmd ls"])["Cmd"] == ["/bin/bash", "-xc", "ls"]
    # Not a JSON array of strings: the shell form, as in a Dockerfile.
    assert apply_changes(BASE, ["CMD [1, 2]"])["Cmd"] == ["/bin/sh", "-c", "[1, 2]"]


def test_entrypoint_clears_cmd_unless_cmd_came_first() -> None:
    assert apply_changes(BASE, ['ENTRYPOINT ["top"]'])["Cmd"] is None
    both = apply_changes(BASE, ['CMD ["-b"]', 'ENTRYPOINT ["top"]'])
    assert (both["Entrypoint"], both["Cmd"]) == (["top"], ["-b"])


def test_env_forms_quotes_and_expansion() -> None:
    env = apply_changes(BASE, ["ENV A=1 B=\"two words\" C=$HOME/x D='$HOME' E=${NOPE:-dflt} F=${HOME:+set}"])["Env"]
    assert env == [
        "PATH=/usr/bin:/bin",
        "HOME=/root",
        "A=1",
        "B=two words",
        "C=/root/x",
        "D=$HOME",
        "E=dflt",
        "F=set",
    ]
    # The legacy form: one name, the rest of the line its value; an existing name is replaced in place.
    assert apply_changes(BASE, ["ENV HOME /home/me  too"])["Env"] == ["PATH=/usr/bin:/bin", "HOME=/home/me  too"]
    assert apply_changes(BASE, ["ENV PATH=$PATH:/opt/bin"])["Env"][0] == "PATH=/usr/bin:/bin:/opt/bin"


def test_the_other_instructions() -> None:
    config = apply_changes(
        BASE,
        [
            "LABEL a=b c='d e'",
            "EXPOSE 80 53/udp 8000-8001",
            'VOLUME ["/data", "/logs"]',
            "VOLUME /more /again",
            "WORKDIR /app",
            "WORKDIR sub/../src",
            "USER nobody:nogroup",
            "STOPSIGNAL SIGINT",
            "HEALTHCHECK --interval=5s --retries=2 CMD wget -q localhost",
            "ONBUILD run echo hi",
        ],
    )
    assert config["Labels"] == {"a": "b", "c": "d e"}
    assert config["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}, "8000/tcp": {}, "8001/tcp": {}}
    assert set(config["Volumes"]) == {"/data", "/logs", "/more", "/again"}
    assert config["WorkingDir"] == "/app/src"
    assert config["User"] == "nobody:nogroup"
    assert config["StopSignal"] == "SIGINT"
    assert config["Healthcheck"] == {
        "Interval": 5_000_000_000,
        "Retries": 2,
        "Test": ["CMD-SHELL", "wget -q localhost"],
    }
    assert config["OnBuild"] == ["RUN echo hi"]
    assert apply_changes(BASE, ["HEALTHCHECK NONE"])["Healthcheck"] == {"Test": ["NONE"]}
    assert apply_changes(BASE, ["CMD a\nENV X=1", "", "# a comment"])["Env"][-1] == "X=1"
    assert parse_duration("1m30.5s") == 90_500_000_000


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("FOO bar", "foo is not a valid change command"),
        ("RUN echo", "run is not a valid change command"),
        ("EXPOSE abc", "Invalid containerPort: abc"),
        ("EXPOSE 80/xyz", "Invalid proto: xyz"),
        ("ENV", "ENV requires at least one argument"),
        ("ENV ONLY", "ENV must have two arguments"),
        ("ENV =x", "ENV names can not be blank"),
        ("CMD", "CMD requires at least one argument"),
        ("STOPSIGNAL SIGNOPE", "Invalid signal: SIGNOPE"),
        ("USER", "USER requires exactly one argument"),
        ("WORKDIR", "WORKDIR requires exactly one argument"),
        ('LABEL a="open', "matching double-quote"),
        ("HEALTHCHECK --bogus=1 CMD true", "Unknown flag: bogus"),
        ("HEALTHCHECK --interval=5 CMD true", "invalid duration"),
        ("ONBUILD FROM x", "FROM isn't allowed as an ONBUILD trigger"),
    ],
)
def test_invalid_changes_are_refused(change: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        apply_changes(BASE, [change])


def test_commit_merge_follows_docker() -> None:
    container = {
        "Cmd": ["sh", "-c", "x"],
        "Entrypoint": None,
        "Env": ["PATH=/bin", "A=1"],
        "Labels": {"from": "image"},
        "ExposedPorts": {"80/tcp": {}},
        "WorkingDir": "/w",
        "User": "",
        "StopSignal": "",
    }
    merged = merge_container_config({"Env": ["A=2"], "ExposedPorts": {"443/tcp": {}}}, container)
    assert merged["Env"] == ["A=2", "PATH=/bin"]
    assert merged["ExposedPorts"] == {"80/tcp": {}, "443/tcp": {}}
    assert merged["Cmd"] == ["sh", "-c", "x"] and merged["WorkingDir"] == "/w" and merged["Labels"] == {"from": "image"}
    assert "Entrypoint" not in merged and "User" not in merged
    # An entrypoint of the request's own keeps the container's Cmd out.
    assert "Cmd" not in merge_container_config({"Entrypoint": ["top"]}, container)
    config = commit_config(
        base={"architecture": "amd64", "os": "linux", "history": [{"created": "t0"}]},
        container_config=container,
        request_config=None,
        changes=['CMD ["new"]'],
        container_id="c" * 64,
        author="me",
        comment="msg",
        created="t1",
    )
    assert config["config"]["Cmd"] == ["new"] and config["config"]["Env"] == ["PATH=/bin", "A=1"]
    assert (config["author"], config["comment"], config["container"]) == ("me", "msg", "c" * 64)
    assert config["history"] == [{"created": "t0"}]
