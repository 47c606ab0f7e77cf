"""Markdown tables and the number formats reports use.

    python -c "from gptlab.analysis.tables import markdown_table; print(markdown_table(('a', 'b'), [(1, 2)]))"
"""
from __future__ import annotations

import math


def markdown_table(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def num(x, fmt: str) -> str:
    return "—" if x is None else format(x, fmt)


def pm(value: float, err: float, fmt: str = ".3f") -> str:
    """'5.899 ± 0.101', or '± undetermined' where the standard error is infinite."""
    return f"{value:{fmt}} ± {err:{fmt}}" if math.isfinite(err) else f"{value:{fmt}} ± undetermined"
