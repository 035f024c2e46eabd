"""`env` and `env_file`: one ordered list of "KEY=VALUE", files read at load time.

Reading env files here, not at container start, puts their contents into
the container's fingerprint: editing an env file is a change like any
other and recreates the container. Files use Docker's `--env-file`
format: `KEY=VALUE` per line, `#` comments and blank lines skipped,
values taken literally (quotes are part of the value). Docker's bare
`KEY` (copy it from the client's environment) is refused: a daemon's
environment is not the user's, and a config should not depend on it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from supervisor.reactor.config.diagnostics import describe
from supervisor.reactor.config.reader import Section


def read_environment(section: Section, base_dir: Path) -> tuple[tuple[str, ...], tuple[Path, ...]]:
    """(env, env files read); env_file entries come first and `env` overrides them."""
    merged: dict[str, str] = {}
    files = _env_file_paths(section, base_dir)
    for index, path in files:
        merged.update(_read_env_file(section, index, path))
    merged.update(_inline_env(section))
    return tuple(f"{k}={v}" for k, v in merged.items()), tuple(path for _, path in files)


def _env_file_paths(section: Section, base_dir: Path) -> list[tuple[int | None, Path]]:
    if not section.has("env_file"):
        return []
    value = section.data["env_file"]
    if isinstance(value, str):
        return [(None, base_dir / value)]
    if not isinstance(value, list):
        section.expected("env_file", "a path or an array of paths")
        return []
    names = section.strings("env_file")
    if names is None:
        return []
    return [(index, base_dir / name) for index, name in enumerate(names)]


def _read_env_file(section: Section, index: int | None, path: Path) -> dict[str, str]:
    key: tuple[str | int, ...] = ("env_file",) if index is None else ("env_file", index)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as err:
        section.error_at(key, f"cannot read {path}: {err.strerror or err}")
        return {}
    except UnicodeDecodeError as err:
        section.error_at(key, f"{path}: not UTF-8 text ({err.reason} at byte {err.start})")
        return {}
    entries: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.lstrip()
        if not stripped or stripped.startswith("#"):
            continue
        name, eq, value = stripped.partition("=")
        problem = _bad_name(name)
        if not eq:
            problem = f"expected KEY=VALUE, got {describe(stripped)}"
        elif "\0" in value:
            problem = "a value must not contain a NUL character"
        if problem:
            section.error_at(key, f"{path}:{number}: {problem}")
            continue
        entries[name] = value
    return entries


def _inline_env(section: Section) -> dict[str, str]:
    if not section.has("env"):
        return {}
    value = section.data["env"]
    entries: dict[str, str] = {}
    if isinstance(value, dict):
        for name, item in value.items():
            text = _scalar_text(item)
            if text is None:
                section.error_at(("env", name), f"expected a string or a number, got {describe(item)}")
                continue
            problem = _bad_name(name) or ("must not contain a NUL character" if "\0" in text else "")
            if problem:
                section.error_at(("env", name), problem)
            else:
                entries[name] = text
        return entries
    if isinstance(value, list):
        for index, item in enumerate(value):
            if not isinstance(item, str) or "=" not in item:
                section.error_at(("env", index), f'expected "KEY=VALUE", got {describe(item)}')
                continue
            name, _, text = item.partition("=")
            problem = _bad_name(name) or ("must not contain a NUL character" if "\0" in text else "")
            if problem:
                section.error_at(("env", index), problem)
            else:
                entries[name] = text
        return entries
    section.expected("env", 'a table (env = { KEY = "value" }) or an array of "KEY=VALUE"')
    return {}


def _bad_name(name: str) -> str:
    """Why `name` cannot be an environment variable name, or ""."""
    if not name:
        return "a variable name must not be empty"
    if any(c.isspace() for c in name) or "\0" in name or "=" in name:
        return f"invalid variable name {describe(name)}: no whitespace, NUL or '=' allowed"
    return ""


def _scalar_text(value: Any) -> str | None:
    # Numbers are written as TOML spells them (PORT = 8080); booleans are
    # refused, since true/True/1 would all be guesses.
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return repr(value)
    return None
