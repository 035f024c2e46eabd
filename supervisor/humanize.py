"""Docker's human-readable durations and sizes (go-units), shared by the API and the CLI."""

from __future__ import annotations


def human_duration(seconds: float) -> str:
    """units.HumanDuration, so `ps` reads as it does under Docker."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = s // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = round(s / 3600)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{hours // 24 // 365} years"


def human_size(size: float) -> str:
    """units.HumanSize: decimal units, at most four significant digits."""
    return _scaled(size, 1000, ("B", "kB", "MB", "GB", "TB", "PB"))


def binary_size(size: float) -> str:
    """units.BytesSize: binary units, at most four significant digits (docker stats's memory)."""
    return _scaled(size, 1024, ("B", "KiB", "MiB", "GiB", "TiB", "PiB"))


def _scaled(size: float, base: int, units: tuple[str, ...]) -> str:
    index = 0
    while size >= base and index < len(units) - 1:
        size /= base
        index += 1
    return f"{size:.4g}{units[index]}"
