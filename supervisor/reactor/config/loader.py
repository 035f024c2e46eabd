"""One config file to its containers, or to the reasons it has none.

A file with any error yields no containers at all: applying the half of
a file that happens to be valid would leave the host in a state nobody
wrote down. The engine keeps whatever it runs from a bad file as it is.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from supervisor.reactor.config.container import read_container
from supervisor.reactor.config.diagnostics import ConfigError, Key, describe
from supervisor.reactor.config.locate import KeyLocator
from supervisor.reactor.config.model import ContainerConfig
from supervisor.reactor.config.reader import Problems, suggest

_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")
_TOML_AT_END = re.compile(r"\s*\(at end of document\)$")
# `[containers.NAME` at the start of a line, NAME bare, "basic" or 'literal'.
_HEADER = re.compile(r"""^\s*\[\s*containers\s*\.\s*([A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*')""", re.MULTILINE)


@dataclass(frozen=True)
class FileResult:
    path: Path
    containers: tuple[ContainerConfig, ...]  # empty whenever errors is not
    errors: tuple[ConfigError, ...]
    # Container names the file declares, even when it has errors (from its
    # table headers when it is not even TOML): what the engine must leave
    # alone while the file is broken.
    declared: tuple[str, ...] = ()
    # Kept to place errors found later, across files, on their lines.
    locator: KeyLocator | None = field(default=None, compare=False, repr=False)

    @property
    def ok(self) -> bool:
        return not self.errors

    def line_of(self, key: Key) -> int:
        return self.locator.line(key) if self.locator is not None else 1


def load_file(path: Path) -> FileResult:
    """Read, parse and check one file; never raises for anything the file's author did."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        return _failed(path, ConfigError(path, None, (), f"cannot read: {err.strerror or err}"))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        return _failed(path, ConfigError(path, line, (), f"not UTF-8 text ({err.reason} at byte {err.start})"))
    return load_text(path, text)


def load_text(path: Path, text: str) -> FileResult:
    """`load_file` for text already read; `path` names it in messages and anchors relative paths."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        return FileResult(path, (), (_syntax_error(path, text, str(err)),), _declared_by_headers(text))
    locator = KeyLocator(text)
    problems = Problems(path, locator.line)
    containers = _read_document(problems, document, path.parent)
    declared = tuple(c.name for c in containers)
    if problems.errors:
        # By line, for reading top to bottom; errors on one line keep the order they were found in.
        errors = tuple(sorted(problems.errors, key=lambda e: e.line or 0))
        return FileResult(path, (), errors, declared, locator)
    return FileResult(path, containers, (), declared, locator)


def _read_document(problems: Problems, document: dict[str, Any], base_dir: Path) -> tuple[ContainerConfig, ...]:
    for name in document:
        if name != "containers":
            problems.add((name,), suggest(name, ["containers"]))
    tables = document.get("containers", {})
    if not isinstance(tables, dict):
        problems.add(("containers",), f"expected tables [containers.NAME], got {describe(tables)}")
        return ()
    containers: list[ContainerConfig] = []
    for name, data in tables.items():
        if not isinstance(data, dict):
            problems.add(("containers", name), f"expected a table [containers.{name}], got {describe(data)}")
            continue
        containers.append(read_container(problems, name, data, base_dir))
    return tuple(containers)


def _syntax_error(path: Path, text: str, message: str) -> ConfigError:
    position = _TOML_POSITION.search(message)
    if position:
        line, column = int(position.group(1)), int(position.group(2))
        return ConfigError(path, line, (), f"invalid TOML: {message[: position.start()]} (column {column})")
    at_end = _TOML_AT_END.search(message)
    if at_end:
        message = message[: at_end.start()] + " at the end of the file"
    return ConfigError(path, max(1, len(text.splitlines())), (), f"invalid TOML: {message}")


def _declared_by_headers(text: str) -> tuple[str, ...]:
    """Best effort for a file that is not TOML: the names in its `[containers.NAME]` headers."""
    names: dict[str, None] = {}
    for match in _HEADER.finditer(text):
        raw = match.group(1)
        if raw.startswith('"'):
            try:
                raw = next(iter(tomllib.loads(f"{raw} = 0")))
            except tomllib.TOMLDecodeError:
                continue
        names[raw.strip("'")] = None
    return tuple(names)


def _failed(path: Path, error: ConfigError) -> FileResult:
    return FileResult(path, (), (error,))
