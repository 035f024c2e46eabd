"""A configs directory: every file loaded on its own, then checked together.

Each file stands alone, so a bad file never stops the good ones. Across
files two things are checked: a container name defined twice (the later
file in name order is rejected, whole, as any file with an error is)
and the dependency graph (a container with a missing dependency or on a
cycle is left out, with everything that waits on it).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from supervisor.reactor.config.diagnostics import ConfigError, Key
from supervisor.reactor.config.graph import StartStep, check_graph, start_order
from supervisor.reactor.config.loader import FileResult, load_file
from supervisor.reactor.config.model import ContainerConfig

SUFFIX = ".toml"


@dataclass(frozen=True)
class ConfigSet:
    directory: Path
    files: tuple[FileResult, ...]  # every config file, by name; errors here are the file's own
    containers: tuple[ContainerConfig, ...]  # what to run, by name
    errors: tuple[ConfigError, ...]  # everything: files' own, duplicates, graph; by file, then line
    # Names the configs declare that are not in `containers` because of an
    # error: the engine leaves whatever it runs under these names alone.
    held: frozenset[str] = frozenset()

    def errors_for(self, path: Path) -> tuple[ConfigError, ...]:
        return tuple(e for e in self.errors if e.path == path)

    def get(self, name: str) -> ContainerConfig | None:
        return next((c for c in self.containers if c.name == name), None)

    def start_order(self) -> tuple[StartStep, ...]:
        return start_order(self.containers)


def config_paths(directory: Path) -> list[Path]:
    """`*.toml` directly in `directory`, by name, without editors' dotfiles, lock files and backups."""
    paths = []
    for entry in os.scandir(directory):
        name = entry.name
        if not is_config_name(name):
            continue
        # A directory named x.toml is not a config; a symlink to a file is.
        if entry.is_file(follow_symlinks=True):
            paths.append(Path(directory, name))
    return sorted(paths, key=lambda p: p.name)


def is_config_name(name: str) -> bool:
    """What the directory watcher should react to: vim's .x.toml.swp, emacs's .#x.toml and #x.toml# are not."""
    return name.endswith(SUFFIX) and len(name) > len(SUFFIX) and not name.startswith((".", "#"))


def load_dir(directory: Path) -> ConfigSet:
    """Load every config file in `directory`; an unreadable directory is the caller's error (OSError)."""
    return combine(directory, [load_file(path) for path in config_paths(directory)])


def combine(directory: Path, results: Iterable[FileResult]) -> ConfigSet:
    """The cross-file checks over already loaded files (given in name order)."""
    files: list[FileResult] = []
    errors: list[ConfigError] = []
    defined: dict[str, ContainerConfig] = {}
    held: set[str] = set()
    unavailable: dict[str, str] = {}
    for result in results:
        duplicate_errors = [
            ConfigError(
                result.path,
                result.line_of(("containers", c.name)),
                ("containers", c.name),
                f'container "{c.name}" is already defined in {_where(defined[c.name])}',
            )
            for c in result.containers
            if c.name in defined
        ]
        if duplicate_errors:
            result = FileResult(result.path, (), tuple(duplicate_errors), result.declared, result.locator)
        files.append(result)
        errors.extend(result.errors)
        for container in result.containers:
            defined[container.name] = container
        if result.errors:
            for name in result.declared:
                held.add(name)
                unavailable.setdefault(name, f"which {result.path} declares but cannot load because of its errors")
    by_path = {f.path: f for f in files}
    excluded, problems = check_graph(defined.values(), unavailable)
    for problem in problems:
        config = defined[problem.container]
        key: Key = ("containers", problem.container, "depends_on", problem.dependency)
        errors.append(ConfigError(config.source.path, by_path[config.source.path].line_of(key), key, problem.message))
    containers = tuple(sorted((c for c in defined.values() if c.name not in excluded), key=lambda c: c.name))
    ordered = sorted(errors, key=lambda e: (e.path.name, e.line or 0))
    held = (held - defined.keys()) | excluded
    return ConfigSet(Path(directory), tuple(files), containers, tuple(ordered), frozenset(held))


def _where(config: ContainerConfig) -> str:
    return f"{config.source.path}:{config.source.line}"
