"""Numbers as people write them: 29938560 <-> 29.94M.

    python -c "from gptlab.units import human, parse_count; print(human(29938560), parse_count('1.5B'))"
"""
from __future__ import annotations

import math

UNITS = (("B", 1e9), ("M", 1e6), ("K", 1e3))


def human(n: float | None) -> str:
    """29938560 -> '29.94M'; None -> '—'."""
    if n is None:
        return "—"
    if math.isnan(n):
        return "nan"
    for unit, div in UNITS:
        if abs(n) >= div:
            return f"{n / div:.2f}{unit}"
    return f"{n:g}"


def parse_count(s: str) -> float:
    """'124M' -> 124e6, '1.5B' -> 1.5e9, '30m' -> 30e6, '2e8' -> 2e8; ValueError names the accepted forms."""
    text = str(s).strip()
    scale = {"k": 1e3, "m": 1e6, "b": 1e9, "t": 1e12}.get(text[-1:].lower())
    try:
        value = float(text[:-1]) * scale if scale else float(text)
    except ValueError:
        raise ValueError(f"{s!r} is not a count; write e.g. 124M, 1.5B, 350e6") from None
    if not value > 0:
        raise ValueError(f"{s!r}: a count must be > 0")
    return value
