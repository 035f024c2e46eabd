"""Sockets inside a container's network namespace, for probes run from the daemon.

A socket belongs to the network namespace it was created in, whatever
thread later uses it. So a short-lived thread of its own joins the
container's namespace, creates the socket and ends; the daemon then uses
the socket from its event loop. A fresh thread each time, never a pooled
one: a thread that has joined a container's namespace must not run
anything else.
"""

from __future__ import annotations

import socket
import threading

from supervisor.isolation import syscalls


def socket_in_netns(pidfd: int, family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM) -> socket.socket:
    """A non-blocking socket created in the network namespace of the process behind `pidfd`."""
    created: list[socket.socket] = []
    failed: list[BaseException] = []

    def work() -> None:
        try:
            syscalls.setns(pidfd, syscalls.CLONE_NEWNET)
            created.append(socket.socket(family, kind | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC))
        except BaseException as err:  # noqa: BLE001 - handed to the caller below
            failed.append(err)

    thread = threading.Thread(target=work, name="netns-socket", daemon=True)
    thread.start()
    thread.join()
    if failed:
        raise failed[0]
    return created[0]
