"""The generated /etc/hostname, /etc/hosts and /etc/resolv.conf of a container (pure)."""

from __future__ import annotations

import re

_LOCALHOST_NAMESERVER = re.compile(r"^\s*nameserver\s+(127\.\d+\.\d+\.\d+|::1)\s*$")


def hostname_file(hostname: str) -> str:
    return f"{hostname}\n"


def hosts_file(hostname: str) -> str:
    # No network beyond loopback yet, so the container's own name resolves there.
    return (
        "127.0.0.1\tlocalhost\n"
        "::1\tlocalhost ip6-localhost ip6-loopback\n"
        "fe00::0\tip6-localnet\n"
        "ff00::0\tip6-mcastprefix\n"
        "ff02::1\tip6-allnodes\n"
        "ff02::2\tip6-allrouters\n"
        f"127.0.0.1\t{hostname}\n"
    )


def resolv_conf(host_resolv_conf: str) -> str:
    """The host's resolv.conf without loopback nameservers, which mean nothing in another netns."""
    lines = [line for line in host_resolv_conf.splitlines() if not _LOCALHOST_NAMESERVER.match(line)]
    return "\n".join(lines) + ("\n" if lines else "")
