"""A container's standard streams as the launcher sets them up: pipes, or a pty for `-t`."""

from __future__ import annotations

import os
from dataclasses import dataclass

from supervisor.isolation.process import Stdio
from supervisor.isolation.terminal import DEFAULT_WINDOW, set_window


@dataclass
class ContainerStdio:
    """`child` goes to the container; the rest stays with the launcher (or goes to the daemon)."""

    child: Stdio
    outputs: dict[int, str]  # read end -> "stdout" / "stderr"
    pty_master: int | None = None
    stdin_write: int | None = None

    def close_child_ends(self) -> None:
        for fd in {self.child.stdin, self.child.stdout, self.child.stderr}:
            os.close(fd)

    def close_all(self) -> None:
        self.close_child_ends()
        for fd in self.outputs:
            os.close(fd)
        if self.stdin_write is not None:
            os.close(self.stdin_write)


def open_stdio(*, tty: bool, open_stdin: bool, console_size: tuple[int, int] | None = None) -> ContainerStdio:
    if tty:
        master, slave = os.openpty()
        set_window(master, *(console_size or DEFAULT_WINDOW))
        os.set_inheritable(master, False)
        os.set_inheritable(slave, False)
        return ContainerStdio(
            child=Stdio(slave, slave, slave, tty=slave), outputs={master: "stdout"}, pty_master=master
        )
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    stdin_write = None
    if open_stdin:
        stdin_read, stdin_write = os.pipe2(os.O_CLOEXEC)
    else:
        stdin_read = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
    return ContainerStdio(
        child=Stdio(stdin_read, out_w, err_w),
        outputs={out_r: "stdout", err_r: "stderr"},
        stdin_write=stdin_write,
    )
