"""Parsing the fields of tar headers: numbers, names, checksums, pax records, sparse maps.

Pure functions over bytes, for `tar_stream`. Every failure is an
InvalidLayer naming the header's offset in the tar stream.
"""

from __future__ import annotations

import re
import zlib

from supervisor.storage.errors import InvalidLayer

Sparse = tuple[tuple[int, int], ...]

_SPACES = b" " * 8
_ADLER_MOD = 65521
_PAX_TIME = re.compile(r"(-?)(\d{1,30})(?:\.(\d*))?\Z")
_PAX_SPARSE_00 = re.compile(rb"\d+ GNU\.sparse\.(offset|numbytes)=(\d+)\n")


def text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def string_field(block: bytes, start: int, end: int) -> str:
    """A NUL-terminated (or field-filling) text field."""
    nul = block.find(b"\0", start, end)
    return block[start : nul if nul >= 0 else end].decode("utf-8", "surrogateescape")


def octal(field: bytes, what: str, offset: int) -> int:
    """A numeric header field; the common octal form parsed in one step, anything else by `_number`."""
    try:
        return int(field.rstrip(b"\0 ") or b"0", 8)
    except ValueError:
        return number(field, what, offset)


def number(field: bytes, what: str, offset: int) -> int:
    """A numeric header field: octal text (NUL or space padded) or GNU base-256."""
    if field[0] & 0x80:
        value = int.from_bytes(field[1:], "big")
        if field[0] == 0xFF:
            value -= 1 << (8 * (len(field) - 1))
        return value
    text = field.split(b"\0", 1)[0].strip(b" ")
    if not text:
        return 0
    if not text.isdigit():
        raise InvalidLayer(f"tar header at offset {offset}: invalid {what} field {bytes(field)!r}")
    try:
        return int(text, 8)
    except ValueError:
        raise InvalidLayer(f"tar header at offset {offset}: invalid {what} field {bytes(field)!r}") from None


def verify_checksum(block: bytes, offset: int) -> None:
    stored = octal(block[148:156], "checksum", offset)
    # The sum of the header's bytes, the checksum field counted as eight spaces. Fast path: adler32's
    # low half is 1 + that sum modulo 65521, and the sum of 512 bytes is below 2 * 65521, so this
    # accepts the right value and, besides it, only one off by exactly 65521.
    low = zlib.adler32(block[156:], zlib.adler32(_SPACES, zlib.adler32(block[:148]))) & 0xFFFF
    if (stored - low + 1) % _ADLER_MOD == 0 and 0 <= stored < 2 * _ADLER_MOD:
        return
    unsigned = sum(block) - sum(block[148:156]) + 8 * 32
    if stored == unsigned:
        return
    signed = unsigned - 256 * sum(1 for byte in block if byte > 127)
    if stored != signed:
        raise InvalidLayer(f"not a valid tar: bad header checksum at offset {offset}")


def pax_records(data: bytes, offset: int) -> tuple[dict[str, str], list[tuple[str, int]] | None]:
    """`length key=value\\n` records; repeated GNU.sparse.offset/numbytes (sparse 0.0) come back in order."""
    records: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos, pos + 24)
        length_text = data[pos:space] if space > 0 else b""
        if not length_text.isdigit():
            if not data[pos:].strip(b"\0"):
                break  # trailing NUL padding some writers leave
            raise InvalidLayer(f"tar pax header at offset {offset}: malformed record")
        end = pos + int(length_text)
        if end > len(data) or end <= space or data[end - 1 : end] != b"\n":
            raise InvalidLayer(f"tar pax header at offset {offset}: malformed record")
        key, sep, value = data[space + 1 : end - 1].partition(b"=")
        if not sep:
            raise InvalidLayer(f"tar pax header at offset {offset}: record without '='")
        # UTF-8 (or, under hdrcharset=BINARY, raw bytes): surrogate escapes keep both exact.
        records[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos = end
    sparse_00 = None
    if b"GNU.sparse.offset=" in data:
        found = _PAX_SPARSE_00.findall(data)
        sparse_00 = [(key.decode(), int(value)) for key, value in found]
    return records, sparse_00


def pax_int(headers: dict[str, str], key: str, default: int, offset: int) -> int:
    value = headers.get(key)
    if value is None:
        return default
    if not value.isdigit():
        raise InvalidLayer(f"tar pax header at offset {offset}: invalid {key} {value!r}")
    return int(value)


def pax_time_ns(value: str, offset: int) -> int:
    """A pax time (`seconds[.fraction]`, perhaps negative) in nanoseconds, exactly."""
    match = _PAX_TIME.match(value)
    if match is None:
        raise InvalidLayer(f"tar pax header at offset {offset}: invalid mtime {value!r}")
    sign, seconds, fraction = match.groups()
    ns = int(seconds) * 1_000_000_000 + int((fraction or "")[:9].ljust(9, "0"))
    return -ns if sign else ns


def sparse_entries(raw: bytes, count: int, offset: int) -> list[tuple[int, int]]:
    entries = []
    for index in range(count):
        field = raw[index * 24 : index * 24 + 24]
        if not field.strip(b"\0"):
            break
        entries.append((number(field[:12], "sparse offset", offset), number(field[12:], "sparse length", offset)))
    return entries


def pax_sparse_map(pax: dict[str, str], sparse_00: list[tuple[str, int]] | None, offset: int) -> Sparse:
    if "GNU.sparse.major" in pax:
        return ()  # 1.0: the map is in the data; _read_sparse_10 fills it in
    if "GNU.sparse.map" in pax:
        items = pax["GNU.sparse.map"].split(",") if pax["GNU.sparse.map"] else []
        if len(items) % 2 or not all(item.isdigit() for item in items):
            raise InvalidLayer(f"tar pax header at offset {offset}: malformed GNU.sparse.map")
        numbers = [int(item) for item in items]
        return tuple(zip(numbers[0::2], numbers[1::2], strict=True))
    assert sparse_00 is not None
    starts = [value for key, value in sparse_00 if key == "offset"]
    lengths = [value for key, value in sparse_00 if key == "numbytes"]
    if len(starts) != len(lengths):
        raise InvalidLayer(f"tar pax header at offset {offset}: unpaired GNU.sparse.offset/numbytes")
    return tuple(zip(starts, lengths, strict=True))


def check_sparse(sparse: Sparse, stored: int, realsize: int, offset: int) -> None:
    """Segments in order, not overlapping, inside the file, and adding up to the stored data."""
    end = 0
    total = 0
    for start, length in sparse:
        if start < end or length < 0 or start + length > realsize:
            raise InvalidLayer(f"tar member at offset {offset}: invalid sparse map")
        end = start + length
        total += length
    if total != stored:
        raise InvalidLayer(f"tar member at offset {offset}: sparse map covers {total} bytes but {stored} are stored")
