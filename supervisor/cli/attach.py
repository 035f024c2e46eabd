"""The client side of an attached container: output to the terminal, stdin to the container."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import termios
import threading
import tty
from collections.abc import Callable, Iterator
from typing import BinaryIO

from supervisor.cli.client import HijackedConnection, iter_frames


def copy_output(conn: HijackedConnection, *, tty_mode: bool, stdout: BinaryIO, stderr: BinaryIO) -> None:
    """Until the daemon closes the stream: raw bytes with a TTY, else demultiplexed frames."""
    if tty_mode:
        while chunk := conn.recv(65536):
            stdout.write(chunk)
            stdout.flush()
        return
    for stream, payload in iter_frames(conn.recv):
        target = stderr if stream == 2 else stdout
        target.write(payload)
        target.flush()


def pump_stdin(conn: HijackedConnection, source: BinaryIO) -> threading.Thread:
    """Copy our stdin to the container in the background; half-close at EOF as the docker CLI does."""

    def run() -> None:
        fd = source.fileno()
        try:
            while chunk := os.read(fd, 65536):
                conn.sendall(chunk)
            conn.close_write()
        except OSError:
            pass

    thread = threading.Thread(target=run, name="stdin", daemon=True)
    thread.start()
    return thread


def follow_terminal_size(resize: Callable[[int, int], object]) -> None:
    """Send our terminal's size now and whenever it changes (SIGWINCH), as the docker CLI does."""
    if not sys.stdout.isatty():
        return

    def send(*_args: object) -> None:
        size = os.get_terminal_size(sys.stdout.fileno())
        resize(size.lines, size.columns)

    send()
    signal.signal(signal.SIGWINCH, send)


@contextlib.contextmanager
def raw_terminal(enabled: bool) -> Iterator[None]:
    """Put our terminal in raw mode for `-it`, restoring it whatever happens."""
    if not enabled or not sys.stdin.isatty():
        yield
        return
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    tty.setraw(fd)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
