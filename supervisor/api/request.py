"""The request a route handler sees: parsed once, with Docker-style query helpers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from supervisor.errors import InvalidArgument

# Docker's httputils.BoolValue: any other non-empty value counts as true.
_FALSE_WORDS = frozenset({"", "0", "no", "false", "none"})


@dataclass(slots=True)
class Request:
    method: str
    # Decoded path with any `/vX.Y` prefix removed; `api_version` keeps "X.Y".
    path: str
    api_version: str | None = None
    query: Mapping[str, list[str]] = field(default_factory=dict)
    # Lower-cased names; repeated headers are joined with ", " (RFC 9110 5.3).
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    params: dict[str, str] = field(default_factory=dict)
    # Set by the server only for routes registered with stream_body=True;
    # such requests arrive with `body == b""` and the handler pulls the body.
    _receive_body: Callable[[], Awaitable[bytes]] | None = field(default=None, repr=False)

    @property
    def wants_upgrade(self) -> bool:
        """The client asked to hijack the connection (`Upgrade` + `Connection: Upgrade`)."""
        if not self.headers.get("upgrade"):
            return False
        tokens = self.headers.get("connection", "").lower().split(",")
        return any(t.strip() == "upgrade" for t in tokens)

    def q(self, name: str, default: str | None = None) -> str | None:
        # The first value wins, as with Go's url.Values.Get.
        values = self.query.get(name)
        return values[0] if values else default

    def q_list(self, name: str) -> list[str]:
        return list(self.query.get(name, ()))

    def q_bool(self, name: str, default: bool = False) -> bool:
        value = self.q(name)
        if value is None:
            return default
        return value.strip().lower() not in _FALSE_WORDS

    def q_int(self, name: str, default: int) -> int:
        value = self.q(name)
        if value is None or value == "":
            return default
        try:
            return int(value)
        except ValueError:
            raise InvalidArgument(f"invalid value for {name!r}: {value!r} is not an integer") from None

    def q_json(self, name: str) -> Any:
        """A JSON-valued parameter such as `filters=`; absent or empty -> None."""
        value = self.q(name)
        if not value:
            return None
        try:
            return json.loads(value)
        except ValueError as err:
            raise InvalidArgument(f"invalid JSON in {name!r}: {err}") from None

    def json(self) -> Any:
        """The parsed body; an empty body is None."""
        if not self.body.strip():
            return None
        try:
            return json.loads(self.body)
        except ValueError as err:  # JSONDecodeError and UnicodeDecodeError alike
            raise InvalidArgument(f"invalid JSON: {err}") from None

    async def iter_body(self) -> AsyncIterator[bytes]:
        """The body in chunks as they arrive (for stream_body routes), else in one piece."""
        if self._receive_body is None:
            if self.body:
                yield self.body
            return
        while chunk := await self._receive_body():
            yield chunk
