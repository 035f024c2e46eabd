"""Suite-wide fixtures: the leak check and real daemons."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from harness import Daemon, bootstrap, state_dir, teardown
from leaks import snapshot


@pytest.fixture(scope="session", autouse=True)
def no_leaks() -> Iterator[None]:
    """Fail the run if the suite leaves a mount, cgroup, process or network namespace behind."""
    before = snapshot()
    yield
    deadline = time.monotonic() + 10
    while True:
        leaks = snapshot().new_since(before)
        if not leaks or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    if leaks:
        pytest.fail(f"the test suite leaked kernel objects: {leaks}", pytrace=False)


@contextmanager
def _running_daemon() -> Iterator[Daemon]:
    with state_dir() as base:
        d = Daemon(base)
        bootstrap(d.root)
        d.start()
        try:
            yield d
        finally:
            teardown(d)


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    """A daemon shared by a module's tests, with busybox:latest; tests remove their containers."""
    with _running_daemon() as d:
        yield d


@pytest.fixture
def fresh_daemon() -> Iterator[Daemon]:
    """A daemon of the test's own, for tests that kill or restart it."""
    with _running_daemon() as d:
        yield d


@pytest.fixture
def clean(daemon: Daemon) -> Iterator[Daemon]:
    """The module's daemon, with every container removed after the test."""
    yield daemon
    daemon.remove_all()
