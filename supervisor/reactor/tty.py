"""A container's terminal: window size changes (`docker run -t` sends them on every resize)."""

from __future__ import annotations

from supervisor.errors import Conflict
from supervisor.isolation.terminal import check_window, set_window
from supervisor.reactor.container import Container


def resize_tty(container: Container, height: int, width: int) -> None:
    check_window(height, width)
    process = container.process
    if process is None or process.pty_fd is None:
        raise Conflict(f"Container {container.id} is not running with a TTY")
    set_window(process.pty_fd, height, width)
