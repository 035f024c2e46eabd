"""Dockerfile instructions applied to an image config: `commit --change` and `import --change`.

`apply_changes(config, changes)` takes the `config` object of an image
config (Docker's shape: Cmd, Entrypoint, Env, ...) and a list of
instructions such as `CMD ["sh"]`, `ENV A=1 B="two words"`, `EXPOSE
80/tcp`, and returns the updated copy. The instructions and their syntax
are Dockerfile's: JSON (exec) and shell forms for CMD, ENTRYPOINT and
VOLUME, `name=value` pairs (or the legacy `ENV name value`) for ENV and
LABEL, `$VAR`/`${VAR}`/`${VAR:-default}`/`${VAR:+alt}` expanded from the
config's Env in ENV, LABEL, EXPOSE, VOLUME, WORKDIR, USER and STOPSIGNAL,
quotes and backslash escapes as the Dockerfile lexer reads them. The set
allowed is Docker's for commit (CMD, ENTRYPOINT, ENV, EXPOSE, HEALTHCHECK,
LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR). Anything invalid is an
InvalidArgument naming the instruction; nothing is applied then.
"""

from __future__ import annotations

import copy
import json
import posixpath
import re
import signal
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from supervisor.errors import InvalidArgument

DEFAULT_SHELL = ("/bin/sh", "-c")
_PROTOCOLS = ("tcp", "udp", "sctp")
_NAME = re.compile(r"[A-Za-z0-9_]+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
_ONBUILD_FORBIDDEN = frozenset({"onbuild", "from", "maintainer"})

Config = dict[str, Any]


def apply_changes(config: Mapping[str, Any], changes: Sequence[str]) -> Config:
    """`config` (an image config's `config` object) with every instruction in `changes` applied, in order."""
    state = _State(copy.deepcopy(dict(config)))
    for change in changes:
        for line in _logical_lines(change):
            keyword, _, rest = line.strip().partition(" ")
            if not keyword:
                continue
            name = keyword.lower()
            handler = _HANDLERS.get(name)
            if handler is None:
                raise InvalidArgument(f"{name} is not a valid change command")
            handler(state, rest.strip())
    return state.config


def _logical_lines(change: str) -> list[str]:
    """One change may hold several instructions, one per line; `\\` at a line's end continues it."""
    joined = re.sub(r"\\[ \t]*\r?\n", "", change)
    return [line for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


class _State:
    def __init__(self, config: Config) -> None:
        self.config = config
        # As in a Dockerfile: ENTRYPOINT drops the Cmd unless a CMD came before it.
        self.cmd_set = False

    @property
    def env(self) -> dict[str, str]:
        pairs = (item.partition("=") for item in self.config.get("Env") or [])
        return {key: value for key, _, value in pairs}

    def expand(self, text: str) -> str:
        return _process(text, self.env, split=False)[0] if text else ""

    def words(self, text: str) -> list[str]:
        return _process(text, self.env, split=True)


# -- the lexer ------------------------------------------------------------


def _process(text: str, env: Mapping[str, str] | None, *, split: bool) -> list[str]:
    """Remove quotes and escapes and expand variables; with `split`, break at unquoted whitespace."""
    words: list[str] = []
    current: list[str] = []
    in_word = False
    i = 0
    while i < len(text):
        char = text[i]
        if split and char in " \t":
            if in_word:
                words.append("".join(current))
                current, in_word = [], False
            i += 1
            continue
        in_word = True
        if char == "'":
            end = text.find("'", i + 1)
            if end < 0:
                raise InvalidArgument(
                    f"unexpected end of statement while looking for matching single-quote in {text!r}"
                )
            current.append(text[i + 1 : end])
            i = end + 1
        elif char == '"':
            i = _double_quoted(text, i + 1, env, current)
        elif char == "\\":
            if i + 1 < len(text):
                current.append(text[i + 1])
            i += 2
        elif char == "$" and env is not None:
            value, i = _variable(text, i + 1, env)
            current.append(value)
        else:
            current.append(char)
            i += 1
    if in_word or not split:
        words.append("".join(current))
    return words


def _double_quoted(text: str, i: int, env: Mapping[str, str] | None, out: list[str]) -> int:
    while i < len(text):
        char = text[i]
        if char == '"':
            return i + 1
        if char == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            out.append(nxt if nxt in '"\\$' else char + nxt)
            i += 2
        elif char == "$" and env is not None:
            value, i = _variable(text, i + 1, env)
            out.append(value)
        else:
            out.append(char)
            i += 1
    raise InvalidArgument(f"unexpected end of statement while looking for matching double-quote in {text!r}")


def _variable(text: str, i: int, env: Mapping[str, str]) -> tuple[str, int]:
    """The value of the variable starting at `text[i]` (just after `$`), and where the text goes on."""
    if i < len(text) and text[i] == "{":
        end = text.find("}", i)
        if end < 0:
            raise InvalidArgument(f"missing '}}' in {text!r}")
        body = text[i + 1 : end]
        match = re.fullmatch(r"([A-Za-z0-9_]+)(?::([-+])(.*))?", body, re.DOTALL)
        if match is None:
            raise InvalidArgument(f"bad substitution ${{{body}}} in {text!r}")
        name, operator, word = match.groups()
        value = env.get(name, "")
        if operator == "-":
            return (value or _process(word, env, split=False)[0]), end + 1
        if operator == "+":
            return (_process(word, env, split=False)[0] if value else ""), end + 1
        return value, end + 1
    match = _NAME.match(text, i)
    if match is None:
        return "$", i
    return env.get(match.group(0), ""), match.end()


def _json_array(rest: str) -> list[str] | None:
    """The exec form `["a", "b"]`, or None if `rest` is not a JSON array of strings (shell form then)."""
    if not rest.startswith("["):
        return None
    try:
        value = json.loads(rest)
    except ValueError:
        return None
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    return None


# -- the instructions -----------------------------------------------------


def _command(state: _State, rest: str, what: str) -> list[str]:
    exec_form = _json_array(rest)
    if exec_form is not None:
        return exec_form
    if not rest:
        raise InvalidArgument(f"{what} requires at least one argument")
    return [*(state.config.get("Shell") or DEFAULT_SHELL), rest]


def _cmd(state: _State, rest: str) -> None:
    state.config["Cmd"] = _command(state, rest, "CMD")
    state.cmd_set = True


def _entrypoint(state: _State, rest: str) -> None:
    state.config["Entrypoint"] = _command(state, rest, "ENTRYPOINT")
    if not state.cmd_set:
        state.config["Cmd"] = None


def _pairs(state: _State, rest: str, what: str) -> list[tuple[str, str]]:
    """`name=value ...`, or the legacy `name value with spaces` (one pair)."""
    if not rest:
        raise InvalidArgument(f"{what} requires at least one argument")
    raw_words = _process(rest, None, split=True)
    if "=" not in raw_words[0]:
        name_and_value = rest.split(None, 1)
        if len(name_and_value) < 2:
            raise InvalidArgument(f"{what} must have two arguments")
        return [(state.expand(name_and_value[0]), state.expand(name_and_value[1].strip()))]
    pairs = []
    for word in state.words(rest):
        name, sep, value = word.partition("=")
        if not sep:
            raise InvalidArgument(f"Syntax error - can't find = in {word!r}. Must be of the form: name=value")
        if not name:
            raise InvalidArgument(f"{what} names can not be blank")
        pairs.append((name, value))
    return pairs


def _env(state: _State, rest: str) -> None:
    env = list(state.config.get("Env") or [])
    for name, value in _pairs(state, rest, "ENV"):
        entry = f"{name}={value}"
        for index, existing in enumerate(env):
            if existing.partition("=")[0] == name:
                env[index] = entry
                break
        else:
            env.append(entry)
    state.config["Env"] = env


def _label(state: _State, rest: str) -> None:
    labels = dict(state.config.get("Labels") or {})
    labels.update(_pairs(state, rest, "LABEL"))
    state.config["Labels"] = labels


def _expose(state: _State, rest: str) -> None:
    ports = dict(state.config.get("ExposedPorts") or {})
    words = state.words(rest)
    if not words:
        raise InvalidArgument("EXPOSE requires at least one argument")
    for word in words:
        for port in expand_port_spec(word):
            ports[port] = {}
    state.config["ExposedPorts"] = ports


def expand_port_spec(spec: str) -> list[str]:
    """`80`, `80/udp`, `8000-8002/tcp` -> ["80/tcp"], ...; InvalidArgument as Docker words it."""
    port_text, _, proto = spec.partition("/")
    proto = (proto or "tcp").lower()
    if proto not in _PROTOCOLS:
        raise InvalidArgument(f"Invalid proto: {proto}")
    low_text, dash, high_text = port_text.partition("-")
    try:
        low = int(low_text)
        high = int(high_text) if dash else low
    except ValueError:
        raise InvalidArgument(f"Invalid containerPort: {port_text}") from None
    if not (0 < low <= 65535 and 0 < high <= 65535) or high < low:
        raise InvalidArgument(f"Invalid containerPort: {port_text}")
    return [f"{port}/{proto}" for port in range(low, high + 1)]


def _volume(state: _State, rest: str) -> None:
    paths = _json_array(rest)
    paths = [state.expand(path) for path in paths] if paths is not None else state.words(rest)
    if not paths:
        raise InvalidArgument("VOLUME requires at least one argument")
    volumes = dict(state.config.get("Volumes") or {})
    for path in paths:
        if not path.strip():
            raise InvalidArgument("VOLUME specified can not be an empty string")
        volumes[path.strip()] = {}
    state.config["Volumes"] = volumes


def _workdir(state: _State, rest: str) -> None:
    path = state.expand(rest)
    if not path:
        raise InvalidArgument("WORKDIR requires exactly one argument")
    if not path.startswith("/"):
        path = posixpath.join("/", state.config.get("WorkingDir") or "/", path)
    state.config["WorkingDir"] = posixpath.normpath(path).replace("//", "/")


def _user(state: _State, rest: str) -> None:
    user = state.expand(rest)
    if not user or len(user.split()) != 1:
        raise InvalidArgument("USER requires exactly one argument")
    state.config["User"] = user


def _stopsignal(state: _State, rest: str) -> None:
    words = state.words(rest)
    if len(words) != 1:
        raise InvalidArgument("STOPSIGNAL requires exactly one argument")
    check_signal(words[0])
    state.config["StopSignal"] = words[0]


def check_signal(text: str) -> None:
    """A signal name (SIGTERM, TERM) or number, as Docker's signal.ParseSignal accepts them."""
    if text.isdigit():
        if 0 < int(text) <= signal.SIGRTMAX:
            return
    else:
        name = text.upper()
        name = name if name.startswith("SIG") else f"SIG{name}"
        if name in signal.Signals.__members__ or re.fullmatch(r"SIGRTM(IN|AX)([+-]\d+)?", name):
            return
    raise InvalidArgument(f"Invalid signal: {text}")


def _healthcheck(state: _State, rest: str) -> None:
    words = rest.split(None, 1)
    if not words:
        raise InvalidArgument("HEALTHCHECK requires at least one argument")
    if words[0].upper() == "NONE":
        if len(words) > 1:
            raise InvalidArgument("HEALTHCHECK NONE takes no arguments")
        state.config["Healthcheck"] = {"Test": ["NONE"]}
        return
    check: dict[str, Any] = {}
    while rest.startswith("--"):
        flag, _, rest = rest.partition(" ")
        rest = rest.strip()
        key, sep, value = flag[2:].partition("=")
        if not sep:
            raise InvalidArgument(f"HEALTHCHECK flag --{key} needs a value (--{key}=...)")
        if key == "retries":
            if not value.isdigit():
                raise InvalidArgument(f"invalid HEALTHCHECK --retries value {value!r}")
            check["Retries"] = int(value)
        elif key in ("interval", "timeout", "start-period"):
            check[{"interval": "Interval", "timeout": "Timeout", "start-period": "StartPeriod"}[key]] = parse_duration(
                value
            )
        else:
            raise InvalidArgument(f"Unknown flag: {key}")
    kind, _, command = rest.partition(" ")
    if kind.upper() != "CMD":
        raise InvalidArgument(f"Unknown type {kind!r} in HEALTHCHECK (try CMD)")
    exec_form = _json_array(command.strip())
    if exec_form is not None:
        check["Test"] = ["CMD", *exec_form]
    elif command.strip():
        check["Test"] = ["CMD-SHELL", command.strip()]
    else:
        raise InvalidArgument("Missing command after HEALTHCHECK CMD")
    state.config["Healthcheck"] = check


def parse_duration(text: str) -> int:
    """Go's time.ParseDuration (`1m30s`, `500ms`) in nanoseconds."""
    if text == "0":
        return 0
    total = 0.0
    pos = 0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_NS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise InvalidArgument(f"time: invalid duration {text!r}")
    return int(total)


def _onbuild(state: _State, rest: str) -> None:
    keyword, _, expression = rest.partition(" ")
    if not keyword:
        raise InvalidArgument("ONBUILD requires at least one argument")
    if keyword.lower() in _ONBUILD_FORBIDDEN:
        raise InvalidArgument(f"{keyword.upper()} isn't allowed as an ONBUILD trigger")
    state.config["OnBuild"] = [*(state.config.get("OnBuild") or []), f"{keyword.upper()} {expression.strip()}".strip()]


_HANDLERS: dict[str, Callable[[_State, str], None]] = {
    "cmd": _cmd,
    "entrypoint": _entrypoint,
    "env": _env,
    "expose": _expose,
    "healthcheck": _healthcheck,
    "label": _label,
    "onbuild": _onbuild,
    "stopsignal": _stopsignal,
    "user": _user,
    "volume": _volume,
    "workdir": _workdir,
}
