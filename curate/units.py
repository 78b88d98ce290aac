"""Sizes and counts as users write them (256MB, 1GiB, 48.1B tokens) and as reports print them."""

from __future__ import annotations

import re
from typing import Any

from curate.errors import ConfigError

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?i?B?)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
_SIZE_UNITS |= {"KI": 2**10, "MI": 2**20, "GI": 2**30, "TI": 2**40}
_COUNT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMBGT]?)\s*$", re.IGNORECASE)
_COUNT_UNITS = {"": 1, "K": 1e3, "M": 1e6, "B": 1e9, "G": 1e9, "T": 1e12}


def parse_size(size: str | int) -> int:
    """Bytes in a size such as 256MB, 1.5GB, 512MiB or a plain number; ConfigError if it is not one."""
    if isinstance(size, int):
        return size
    match = _SIZE.match(str(size))
    if not match:
        raise ConfigError(f"not a size: {size!r} (use e.g. 256MB, 1GB, 512MiB)")
    unit = (match.group(2) or "").upper().removesuffix("B")
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


def parse_count(value: Any) -> int:
    """A token count such as 400M, 48.1B or a plain number; ConfigError if it is not a positive one."""
    if isinstance(value, bool):
        raise ConfigError(f"not a token count: {value!r} (use e.g. 400M, 48.1B or 1000000)")
    if isinstance(value, (int, float)):
        number = float(value)
    else:
        match = _COUNT.match(str(value))
        if not match:
            raise ConfigError(f"not a token count: {value!r} (use e.g. 400M, 48.1B or 1000000)")
        number = float(match.group(1)) * _COUNT_UNITS[match.group(2).upper()]
    if not number > 0:
        raise ConfigError(f"total_tokens must be positive, not {value!r}")
    return int(number)


def human_bytes(n: int | float | None) -> str:
    """Bytes as a short human-readable size (1.5 MB); '-' when unknown."""
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(size) < 1000 or unit == "TB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} PB"  # unreachable; keeps type checkers content
