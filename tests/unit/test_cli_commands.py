"""The corral CLI builds a parser with the command's own module only (cli/main.py)."""

from __future__ import annotations

import argparse
import importlib

import pytest

from supervisor.cli.main import COMMAND_MODULES, MODULE_OF_COMMAND, build_parser, command_of, parser_for


def _registered(module: str) -> set[str]:
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers()
    importlib.import_module(f"supervisor.cli.{module}").register(commands)
    return set(commands.choices)


def test_the_table_names_every_command_with_its_module() -> None:
    found = {command: module for module in COMMAND_MODULES for command in _registered(module)}
    assert found == MODULE_OF_COMMAND


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["run", "--rm", "busybox"], "run"),
        (["-H", "unix:///x.sock", "ps", "-a"], "ps"),
        (["--host", "unix:///x.sock", "logs", "web"], "logs"),
        (["--host=unix:///x.sock", "images"], "images"),
        (["--help"], None),
        ([], None),
    ],
)
def test_command_of(argv: list[str], command: str | None) -> None:
    assert command_of(argv) == command


def test_a_command_parses_as_with_every_command() -> None:
    for argv in (["run", "-d", "--name", "web", "-e", "A=1", "busybox", "sh"], ["volume", "create", "data"]):
        assert vars(parser_for(argv).parse_args(argv)) == vars(build_parser().parse_args(argv))
    with pytest.raises(SystemExit):
        parser_for(["nosuchcommand"]).parse_args(["nosuchcommand"])
