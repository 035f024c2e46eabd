"""A pty's window size: set when the pty is made (launcher, exec child) and on every client resize (daemon)."""

from __future__ import annotations

import fcntl
import struct
import termios

from supervisor.errors import InvalidArgument

# Until the client says otherwise (a create's ConsoleSize, then resizes).
DEFAULT_WINDOW = (24, 80)


def check_window(rows: int, columns: int) -> None:
    if not (0 <= rows <= 0xFFFF and 0 <= columns <= 0xFFFF):
        raise InvalidArgument(f"invalid terminal size {rows}x{columns}")


def set_window(fd: int, rows: int, columns: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
