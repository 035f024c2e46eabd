"""`[health]`: one probe and its timing.

Exactly one probe kind per container, because two would need rules for
combining their results that nobody asked for. tcp and http probes run
inside the container's network namespace, so their addresses are the
container's own (127.0.0.1 is the container's loopback).
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from supervisor.reactor.config.diagnostics import describe
from supervisor.reactor.config.model import HEALTH_KINDS, SHELL, UNHEALTHY_ACTIONS, HealthConfig, HealthKind
from supervisor.reactor.config.reader import Section

HEALTH_KEYS = (*HEALTH_KINDS, "interval", "timeout", "retries", "start_period", "on_unhealthy")

_HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$")


def read_health(section: Section | None) -> HealthConfig | None:
    if section is None:
        return None
    kinds = [kind for kind in HEALTH_KINDS if section.has(kind)]
    if not kinds:
        section.problems.add(section.key, "needs one probe: command, cmd_shell, tcp or http")
        kind: HealthKind = "command"
    else:
        kind = kinds[0]
        for extra in kinds[1:]:
            section.error(extra, f'only one probe per container, and "{kind}" is already given')
    argv, target = _probe(section, kind) if kinds else ((), "")
    defaults = HealthConfig(kind=kind)
    config = HealthConfig(
        kind=kind,
        argv=argv,
        target=target,
        interval=section.duration("interval", defaults.interval),
        timeout=section.duration("timeout", defaults.timeout),
        retries=section.integer("retries", defaults.retries, minimum=1),
        start_period=section.duration("start_period", defaults.start_period),
        on_unhealthy=section.choice("on_unhealthy", UNHEALTHY_ACTIONS, defaults.on_unhealthy),
    )
    for name in ("interval", "timeout"):
        if section.has(name) and getattr(config, name) == 0:
            section.error(name, "must be longer than 0")
    return config


def _probe(section: Section, kind: HealthKind) -> tuple[tuple[str, ...], str]:
    """(argv, target) for the probe `kind`; ((), "") after reporting a bad one."""
    value = section.data[kind]
    if kind == "command":
        if isinstance(value, str):
            section.error("command", 'expected an array of strings; for a shell command use cmd_shell = "..."')
            return (), ""
        argv = section.strings("command")
        if argv is not None and (not argv or not argv[0]):
            section.error("command", 'expected a program and its arguments, like ["wget", "-q", "-O-", URL]')
        return argv or (), ""
    if kind == "cmd_shell":
        text = section.string("cmd_shell")
        if isinstance(value, str) and not value.strip():
            section.error("cmd_shell", "expected a shell command, got an empty string")
        return ((*SHELL, text) if text.strip() else ()), ""
    if kind == "tcp":
        target = _tcp_target(value)
        if not target:
            section.expected("tcp", 'a port like 8080 or an address like "127.0.0.1:8080"')
        return (), target
    problem = _http_problem(value)
    if problem:
        section.error("http", f'expected a URL like "http://127.0.0.1:8080/health", got {describe(value)}: {problem}')
        return (), ""
    return (), str(value)


def _tcp_target(value: object) -> str:
    """The "host:port" (IPv6 in brackets) of a port or an address; "" if invalid."""
    if isinstance(value, int) and not isinstance(value, bool):
        return f"127.0.0.1:{value}" if 0 < value < 65536 else ""
    if not isinstance(value, str):
        return ""
    host, colon, port = value.rpartition(":")
    if not colon or not port.isdigit() or not 0 < int(port) < 65536:
        return ""
    host = host or "127.0.0.1"
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return ""
    elif not _HOSTNAME.match(host):
        return ""
    return f"{host}:{int(port)}"


def _http_problem(value: object) -> str:
    if not isinstance(value, str):
        return "not a string"
    try:
        url = urlsplit(value)
        port = url.port
    except ValueError as err:
        return str(err)
    if url.scheme != "http":
        return "only http:// is supported"
    if not url.hostname:
        return "no host"
    if port == 0:
        return "port 0"
    return ""
