"""Declarative container configs: TOML files in a directory, parsed and checked, nothing run.

    load_dir(dir)    -> ConfigSet: every *.toml, each file on its own, then
                        duplicates and the dependency graph across them
    load_file(path)  -> FileResult: one file's containers, or its errors
    ConfigSet.start_order() -> dependency-respecting order with what each waits for

The format is documented in docs/configuration.md.
"""

from supervisor.reactor.config.configset import ConfigSet, combine, config_paths, is_config_name, load_dir
from supervisor.reactor.config.diagnostics import ConfigError, Key, Source, render_key
from supervisor.reactor.config.graph import GraphProblem, StartStep, check_graph, start_order
from supervisor.reactor.config.loader import FileResult, load_file, load_text
from supervisor.reactor.config.model import (
    Condition,
    ContainerConfig,
    Dependency,
    HealthConfig,
    HealthKind,
    LogConfig,
    MountConfig,
    MountType,
    Policy,
    RestartConfig,
    UnhealthyAction,
)

__all__ = [
    "Condition",
    "ConfigError",
    "ConfigSet",
    "ContainerConfig",
    "Dependency",
    "FileResult",
    "GraphProblem",
    "HealthConfig",
    "HealthKind",
    "Key",
    "LogConfig",
    "MountConfig",
    "MountType",
    "Policy",
    "RestartConfig",
    "Source",
    "StartStep",
    "UnhealthyAction",
    "check_graph",
    "combine",
    "config_paths",
    "is_config_name",
    "load_dir",
    "load_file",
    "load_text",
    "render_key",
    "start_order",
]
