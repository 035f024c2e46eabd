"""Signal names as Docker accepts them: `SIGTERM`, `TERM`, `term`, `15`."""

from __future__ import annotations

import signal

from supervisor.errors import InvalidArgument


def parse_signal(text: str | int) -> signal.Signals:
    if isinstance(text, int) or str(text).strip().isdigit():
        try:
            return signal.Signals(int(text))
        except ValueError:
            raise InvalidArgument(f"Invalid signal: {text}") from None
    name = str(text).strip().upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return signal.Signals[name]
    except KeyError:
        raise InvalidArgument(f"Invalid signal: {text}") from None
