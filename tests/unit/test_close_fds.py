"""syscalls.close_fds_except: what a forked container keeps of the launcher's descriptors."""

from __future__ import annotations

import os

from supervisor.isolation.syscalls import close_fds_except


def _open_after_close(keep: set[int], opened: list[int]) -> set[int]:
    """The descriptors among `opened` that are still open after close_fds_except(keep), in a child."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            close_fds_except(keep | {write_end})
            alive = []
            for fd in opened:
                try:
                    os.fstat(fd)
                    alive.append(fd)
                except OSError:
                    pass
            os.write(write_end, ",".join(map(str, alive)).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    data = os.read(read_end, 4096).decode()
    os.close(read_end)
    os.waitpid(pid, 0)
    return {int(fd) for fd in data.split(",") if fd}


def test_keeps_only_the_listed_descriptors() -> None:
    opened = [os.open("/dev/null", os.O_RDONLY) for _ in range(4)]
    try:
        assert _open_after_close({opened[1], opened[2]}, [0, *opened]) == {opened[1], opened[2]}
    finally:
        for fd in opened:
            os.close(fd)


def test_keeping_descriptor_zero_does_not_close_everything() -> None:
    # os.closerange(0, 0) would ask close_range(2) for 0..UINT_MAX and take the kept ones with it.
    opened = [os.open("/dev/null", os.O_RDONLY) for _ in range(2)]
    try:
        assert _open_after_close({0, 1, 2, opened[1]}, [0, 1, 2, *opened]) == {0, 1, 2, opened[1]}
    finally:
        for fd in opened:
            os.close(fd)
