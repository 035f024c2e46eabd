"""Line numbers for key paths in a TOML text.

tomllib returns plain dicts without positions, but a message about
`containers.web.restart.polcy` is only useful with the line it is on. So
this scans the (already parsed, hence valid) text once more, tracking
structure only — table headers (`[a."b".c]`, `[[a]]`), dotted keys,
inline tables, arrays and strings of every quoting — and notes the line
where each key path starts. It never interprets a value.

A path not found (a bug here, or a key never written, such as a missing
required one) falls back to its nearest written parent, then to line 1:
a message must never fail because its line could not be found.
"""

from __future__ import annotations

import bisect
import tomllib

from supervisor.reactor.config.diagnostics import Key

_BARE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_SCALAR_END = frozenset(",]}\n#")


class KeyLocator:
    def __init__(self, text: str) -> None:
        self._text = text
        self._newlines = [i for i, c in enumerate(text) if c == "\n"]
        # Written: the path itself appears (its header or its `key =`).
        # Implied: only a longer path mentions it (`[a.b.c]` implies `a.b`).
        self._written: dict[Key, int] = {}
        self._implied: dict[Key, int] = {}
        self._array_tables: dict[Key, int] = {}
        self._pos = 0
        try:
            self._document()
        except IndexError:
            # Only reachable on text tomllib rejected, or a scanner bug;
            # keep what was found, lines degrade to parents.
            pass

    def line(self, key: Key) -> int:
        """The 1-based line where `key` (or its nearest written parent) starts."""
        for end in range(len(key), 0, -1):
            prefix = key[:end]
            if prefix in self._written:
                return self._written[prefix]
            if prefix in self._implied:
                return self._implied[prefix]
        return 1

    # -- the scan ------------------------------------------------------------

    def _line_at(self, pos: int) -> int:
        return bisect.bisect_left(self._newlines, pos) + 1

    def _note(self, key: Key, pos: int) -> None:
        line = self._line_at(pos)
        self._written.setdefault(key, line)
        for end in range(1, len(key)):
            self._implied.setdefault(key[:end], line)

    def _peek(self, offset: int = 0) -> str:
        at = self._pos + offset
        return self._text[at] if at < len(self._text) else ""

    def _skip_blank(self, *, newlines: bool) -> None:
        """Skip spaces and tabs, and with `newlines` also line breaks and comments."""
        text = self._text
        while self._pos < len(text):
            c = text[self._pos]
            if c in " \t\r" or (newlines and c == "\n"):
                self._pos += 1
            elif newlines and c == "#":
                end = text.find("\n", self._pos)
                self._pos = len(text) if end < 0 else end
            else:
                return

    def _skip_line(self) -> None:
        end = self._text.find("\n", self._pos)
        self._pos = len(self._text) if end < 0 else end + 1

    def _document(self) -> None:
        table: Key = ()
        while True:
            self._skip_blank(newlines=True)
            if self._pos >= len(self._text):
                return
            start = self._pos
            if self._peek() == "[":
                table = self._header(start)
            else:
                key = self._key()
                if not key:
                    self._skip_line()
                    continue
                self._note(table + key, start)
                self._skip_blank(newlines=False)
                if self._peek() == "=":
                    self._pos += 1
                    self._skip_blank(newlines=False)
                    self._value(table + key)
            self._skip_line_rest()

    def _skip_line_rest(self) -> None:
        # After a header or a value only a comment may follow on the line.
        self._skip_blank(newlines=False)
        if self._peek() in ("#", "\n"):
            self._skip_line()

    def _header(self, start: int) -> Key:
        is_array = self._peek(1) == "["
        self._pos += 2 if is_array else 1
        key = self._key()
        self._pos += 2 if is_array else 1  # the closing bracket(s)
        if not is_array:
            self._note(key, start)
            return key
        index = self._array_tables.get(key, -1) + 1
        self._array_tables[key] = index
        self._note(key, start)
        self._note(key + (index,), start)
        return key + (index,)

    def _key(self) -> Key:
        """A dotted key, each part bare, "basic" or 'literal'."""
        parts: list[str | int] = []
        while True:
            self._skip_blank(newlines=False)
            c = self._peek()
            start = self._pos
            if c in ('"', "'"):
                self._string()
                raw = self._text[start : self._pos]
                # Let tomllib decode the escapes of a quoted key.
                parts.append(next(iter(tomllib.loads(f"{raw} = 0"))))
            elif c and c in _BARE:
                while self._peek() and self._peek() in _BARE:
                    self._pos += 1
                parts.append(self._text[start : self._pos])
            else:
                return tuple(parts)
            self._skip_blank(newlines=False)
            if self._peek() != ".":
                return tuple(parts)
            self._pos += 1

    def _string(self) -> None:
        """Step over a string of any of the four kinds."""
        quote = self._peek()
        text = self._text
        if text.startswith(quote * 3, self._pos):
            end = self._pos + 3
            while True:
                found = text.find(quote * 3, end)
                if found < 0:
                    raise IndexError("unterminated string")
                if quote == '"' and _escaped(text, found):
                    end = found + 1
                    continue
                break
            end = found + 3
            # Up to two quotes right before the closing three belong to the content.
            while end < len(text) and text[end] == quote and end - found < 5:
                end += 1
            self._pos = end
            return
        self._pos += 1
        while True:
            c = text[self._pos]
            if c == "\\" and quote == '"':
                self._pos += 2
                continue
            self._pos += 1
            if c == quote:
                return

    def _value(self, key: Key) -> None:
        c = self._peek()
        if c in ('"', "'"):
            self._string()
        elif c == "[":
            self._array(key)
        elif c == "{":
            self._inline_table(key)
        else:
            while self._peek() and self._peek() not in _SCALAR_END:
                self._pos += 1

    def _array(self, key: Key) -> None:
        self._pos += 1
        index = 0
        while True:
            self._skip_blank(newlines=True)
            if self._peek() in ("]", ""):
                self._pos += 1
                return
            start = self._pos
            self._note(key + (index,), start)
            self._value(key + (index,))
            self._skip_blank(newlines=True)
            if self._peek() == ",":
                self._pos += 1
                index += 1
            _progressed(start, self._pos)

    def _inline_table(self, key: Key) -> None:
        self._pos += 1
        while True:
            # TOML 1.0 keeps inline tables on one line; newlines are
            # accepted here anyway so 1.1-style files still locate.
            self._skip_blank(newlines=True)
            if self._peek() in ("}", ""):
                self._pos += 1
                return
            start = self._pos
            inner = self._key()
            if not inner:
                raise IndexError("not a key")
            self._note(key + inner, start)
            self._skip_blank(newlines=False)
            self._pos += 1  # "="
            self._skip_blank(newlines=False)
            self._value(key + inner)
            self._skip_blank(newlines=True)
            if self._peek() == ",":
                self._pos += 1
            _progressed(start, self._pos)


def _progressed(before: int, after: int) -> None:
    # Valid TOML always moves on; anything else must not loop forever.
    if after == before:
        raise IndexError("scanner made no progress")


def _escaped(text: str, pos: int) -> bool:
    """Whether the character at `pos` follows an odd run of backslashes."""
    count = 0
    while pos - count - 1 >= 0 and text[pos - count - 1] == "\\":
        count += 1
    return count % 2 == 1
