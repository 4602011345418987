"""A dependency-free progress bar and table printer for the CLI."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import TextIO

__all__ = ["ProgressBar", "format_table"]


class ProgressBar:
    """A one-line progress bar on a terminal (plain periodic lines otherwise)."""

    def __init__(self, total: int, label: str = "", stream: TextIO | None = None) -> None:
        self.total = max(total, 1)
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.started = time.perf_counter()
        self._last_plain = 0.0

    def update(self, done: int, extra: str = "") -> None:
        """Redraws the bar with ``done`` of ``total`` finished."""
        frac = min(done / self.total, 1.0)
        elapsed = time.perf_counter() - self.started
        rate = done / elapsed if elapsed > 0 else 0.0
        width = 30
        filled = int(frac * width)
        bar = "█" * filled + "░" * (width - filled)
        line = f"{self.label} {bar} {done}/{self.total} ({frac:4.0%}) {rate:,.0f}/s {extra}"
        if self.tty:
            self.stream.write("\r" + line.ljust(100))
            self.stream.flush()
        elif elapsed - self._last_plain >= 1.0 or done >= self.total:
            self._last_plain = elapsed
            self.stream.write(line + "\n")
            self.stream.flush()

    def close(self) -> None:
        """Ends the bar's line."""
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Formats rows as an aligned plain-text table (numbers right-aligned)."""
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    numeric = [
        all(isinstance(row[i], (int, float)) for row in rows) if rows else False
        for i in range(len(headers))
    ]

    def line(row: list[str]) -> str:
        parts = [
            c.rjust(w) if numeric[i] else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)
