"""Method + path pattern -> handler, with Docker's optional `/vX.Y` prefix."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import unquote

from supervisor.api.request import Request
from supervisor.api.responses import Response

Handler = Callable[[Request], Awaitable[Response]]

_VERSION_PREFIX = re.compile(r"/v(\d+\.\d+)(?=/)")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(:path)?\}")


@dataclass(frozen=True, slots=True)
class Route:
    handler: Handler
    # Opt-in for big uploads (image load, build context, archive PUT): the
    # handler reads the body with `request.iter_body()` instead of `request.body`.
    stream_body: bool = False


@dataclass(frozen=True, slots=True)
class Match:
    route: Route | None
    params: dict[str, str]
    # True when some route has this path but none has this method (-> 405).
    path_known: bool


@dataclass(slots=True)
class _Pattern:
    regex: re.Pattern[str]
    methods: dict[str, Route] = field(default_factory=dict)


def split_version(raw_path: str) -> tuple[str, str | None]:
    """`/v1.41/containers/json` -> (`/containers/json`, "1.41")."""
    m = _VERSION_PREFIX.match(raw_path)
    if m is None:
        return raw_path, None
    return raw_path[m.end() :], m.group(1)


def _compile(pattern: str) -> re.Pattern[str]:
    parts: list[str] = []
    pos = 0
    for m in _PLACEHOLDER.finditer(pattern):
        parts.append(re.escape(pattern[pos : m.start()]))
        # Match on the still-encoded path so %2F stays inside one segment.
        parts.append(f"(?P<{m.group(1)}>{'.+' if m.group(2) else '[^/]+'})")
        pos = m.end()
    parts.append(re.escape(pattern[pos:]))
    return re.compile("".join(parts) + r"\Z")


class Router:
    """Routes are tried static-first, then in registration order.

    `{name}` matches one path segment, `{name:path}` one or more (image names
    contain slashes). HEAD falls back to the GET route; the server drops the body.
    """

    def __init__(self) -> None:
        self._static: dict[str, dict[str, Route]] = {}
        self._dynamic: dict[str, _Pattern] = {}

    def route(self, method: str, pattern: str, handler: Handler, *, stream_body: bool = False) -> None:
        if not pattern.startswith("/"):
            raise ValueError(f"route pattern must start with '/': {pattern!r}")
        method = method.upper()
        if _PLACEHOLDER.search(pattern):
            entry = self._dynamic.setdefault(pattern, _Pattern(_compile(pattern)))
            methods = entry.methods
        else:
            methods = self._static.setdefault(pattern, {})
        if method in methods:
            raise ValueError(f"duplicate route {method} {pattern}")
        methods[method] = Route(handler, stream_body)

    def match(self, method: str, path: str) -> Match:
        """Look up an undecoded, version-stripped path."""
        path_known = False
        methods = self._static.get(unquote(path))
        if methods is not None:
            route = _pick(methods, method)
            if route is not None:
                return Match(route, {}, True)
            path_known = True
        for entry in self._dynamic.values():
            m = entry.regex.match(path)
            if m is None:
                continue
            route = _pick(entry.methods, method)
            if route is not None:
                params = {k: unquote(v) for k, v in m.groupdict().items()}
                return Match(route, params, True)
            path_known = True
        return Match(None, {}, path_known)


def _pick(methods: dict[str, Route], method: str) -> Route | None:
    route = methods.get(method)
    if route is None and method == "HEAD":
        route = methods.get("GET")
    return route
