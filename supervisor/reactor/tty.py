"""A container's terminal: window size changes (`docker run -t` sends them on every resize)."""

from __future__ import annotations

import fcntl
import struct
import termios

from supervisor.errors import Conflict, InvalidArgument
from supervisor.reactor.container import Container


def resize_tty(container: Container, height: int, width: int) -> None:
    if not (0 <= height <= 0xFFFF and 0 <= width <= 0xFFFF):
        raise InvalidArgument(f"invalid terminal size {height}x{width}")
    process = container.process
    if process is None or process.pty_fd is None:
        raise Conflict(f"Container {container.id} is not running with a TTY")
    fcntl.ioctl(process.pty_fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))
