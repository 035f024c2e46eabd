"""One `[containers.NAME]` table to a `ContainerConfig`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from supervisor.errors import InvalidArgument
from supervisor.reactor.config.diagnostics import Source, describe
from supervisor.reactor.config.environment import read_environment
from supervisor.reactor.config.health import HEALTH_KEYS, read_health
from supervisor.reactor.config.model import (
    CONDITIONS,
    DEFAULT_STOP_TIMEOUT,
    SHELL,
    Condition,
    ContainerConfig,
    Dependency,
)
from supervisor.reactor.config.mounts import read_mounts
from supervisor.reactor.config.reader import Problems, Section
from supervisor.reactor.config.sections import LOG_KEYS, RESOURCE_KEYS, read_logs, read_resources, read_restart
from supervisor.reactor.signals import parse_signal
from supervisor.storage.reference import parse_reference

CONTAINER_KEYS = (
    "image",
    "command",
    "entrypoint",
    "env",
    "env_file",
    "workdir",
    "user",
    "hostname",
    "labels",
    "mounts",
    "stop_signal",
    "stop_timeout",
    "depends_on",
    "resources",
    "restart",
    "health",
    "logs",
)
# Docker's container name rule, without the leading "/" its API tolerates.
NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
NAME_RULE = "[a-zA-Z0-9][a-zA-Z0-9_.-]+, at least 2 characters"
_USER = re.compile(r"^[^:\s]+(:[^:\s]+)?$")
_HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,61}[A-Za-z0-9])?$")


def read_container(problems: Problems, name: str, data: dict[str, Any], base_dir: Path) -> ContainerConfig:
    key = ("containers", name)
    if not NAME.match(name):
        problems.add(key, f"invalid container name: expected {NAME_RULE}, got {describe(name)}")
    section = Section(problems, key, data, CONTAINER_KEYS)
    env, env_files = read_environment(section, base_dir)
    entrypoint = _argv(section, "entrypoint")
    if isinstance(data.get("entrypoint"), str) and entrypoint and section.has("command"):
        section.error(
            "entrypoint",
            "a string entrypoint runs with /bin/sh -c and would get command as $0, $1, ...: "
            "give entrypoint as an array to pass it arguments",
        )
    return ContainerConfig(
        name=name,
        image=_image(section),
        command=_argv(section, "command"),
        entrypoint=entrypoint,
        env=env,
        workdir=_workdir(section),
        user=_user(section),
        hostname=_hostname(section),
        labels=_labels(section),
        mounts=read_mounts(section, base_dir),
        resources=read_resources(section.table("resources", RESOURCE_KEYS)),
        restart=read_restart(section),
        health=read_health(section.table("health", HEALTH_KEYS)),
        logs=read_logs(section.table("logs", LOG_KEYS)),
        depends_on=_depends_on(section, name),
        stop_signal=_stop_signal(section),
        stop_timeout=section.duration("stop_timeout", DEFAULT_STOP_TIMEOUT),
        source=Source(problems.path, problems.line_of(key)),
        env_files=env_files,
    )


def _image(section: Section) -> str:
    image = section.string("image", required=True)
    if image:
        try:
            parse_reference(image)
        except InvalidArgument as err:
            section.error("image", str(err))
    return image


def _argv(section: Section, name: str) -> tuple[str, ...] | None:
    """An array is taken as is; a string runs with /bin/sh -c; "" (like []) means explicitly empty."""
    value = section.data.get(name)
    if isinstance(value, str):
        text = section.string(name)
        return (*SHELL, text) if text.strip() else ()
    if name in section.data and not isinstance(value, list):
        section.expected(name, "an array of strings or a shell command string")
        return None
    return section.strings(name)


def _workdir(section: Section) -> str:
    workdir = section.string("workdir")
    if workdir and not workdir.startswith("/"):
        section.expected("workdir", "an absolute path")
    return workdir


def _user(section: Section) -> str:
    value = section.data.get("user")
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return str(value)
    if "user" in section.data and (not isinstance(value, str) or not _USER.match(value)):
        section.expected("user", 'a user and optional group, by name or id: "nobody", "1000:1000"')
        return ""
    return section.string("user")


def _hostname(section: Section) -> str:
    hostname = section.string("hostname")
    if hostname and not _HOSTNAME.match(hostname):
        section.expected("hostname", "a hostname of letters, digits, '-' and '.', at most 63 characters")
    return hostname


def _labels(section: Section) -> tuple[tuple[str, str], ...]:
    if not section.has("labels"):
        return ()
    value = section.data["labels"]
    if not isinstance(value, dict):
        section.expected("labels", 'a table like { tier = "front" }')
        return ()
    labels: list[tuple[str, str]] = []
    for name, item in value.items():
        if not isinstance(item, str):
            section.error_at(("labels", name), f"expected a string, got {describe(item)}")
        elif not name:
            section.error_at(("labels", name), "a label name must not be empty")
        else:
            labels.append((name, item))
    return tuple(sorted(labels))


def _depends_on(section: Section, own_name: str) -> tuple[Dependency, ...]:
    """A table { NAME = CONDITION }, or an array of names, each meaning "started"."""
    if not section.has("depends_on"):
        return ()
    value = section.data["depends_on"]
    if isinstance(value, list):
        names = section.strings("depends_on") or ()
        entries: dict[str, Any] = dict.fromkeys(names, "started")
        keys: dict[str, tuple[str | int, ...]] = {n: ("depends_on", i) for i, n in enumerate(names)}
    elif isinstance(value, dict):
        entries = value
        keys = {n: ("depends_on", n) for n in value}
    else:
        section.expected("depends_on", 'a table like { db = "healthy" } or an array of names')
        return ()
    dependencies: list[Dependency] = []
    listed = ", ".join(f'"{c}"' for c in CONDITIONS)
    for name, condition in entries.items():
        if not NAME.match(name):
            section.error_at(keys[name], f"expected a container name ({NAME_RULE}), got {describe(name)}")
        elif name == own_name:
            section.error_at(keys[name], "a container cannot depend on itself")
        elif condition not in CONDITIONS or not isinstance(condition, str):
            section.error_at(keys[name], f"expected one of {listed}, got {describe(condition)}")
        else:
            checked: Condition = condition  # type: ignore[assignment]  # one of CONDITIONS, checked above
            dependencies.append(Dependency(name, checked))
    return tuple(sorted(dependencies))


def _stop_signal(section: Section) -> str | None:
    if not section.has("stop_signal"):
        return None
    value = section.data["stop_signal"]
    if isinstance(value, str | int) and not isinstance(value, bool):
        try:
            return parse_signal(value).name
        except InvalidArgument:
            pass
    section.expected("stop_signal", 'a signal name or number, like "SIGTERM", "INT" or 15')
    return None
