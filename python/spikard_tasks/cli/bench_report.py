"""What ``spikard-tasks bench`` reports: the figures, the machine they were taken on,
the ratios between targets and the table; and the memory readings it takes."""

from __future__ import annotations

import os
import platform
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import _native
from .progress import format_table

__all__ = ["FIGURES", "machine", "ratios", "table"]

#: The figures measured for every target, in table order, with their labels.
FIGURES: dict[str, str] = {
    "enqueue_single_per_s": "enqueue, single (calls/s)",
    "enqueue_bulk_per_s": "enqueue, bulk (jobs/s)",
    "drain_sync_per_s": "drain, sync handler (jobs/s)",
    "drain_async_per_s": "drain, async handler (jobs/s)",
    "latency_p50_ms": "enqueue→start p50 (ms)",
    "latency_p99_ms": "enqueue→start p99 (ms)",
    "peak_rss_mib": "peak RSS (MiB)",
    "rss_growth_mib": "RSS growth (MiB)",
}


def _proc_status_kib(pid: int | str, key: str) -> int | None:
    """A ``/proc/<pid>/status`` memory field in KiB (``None`` where there is no /proc)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return None


def _mib(kib: int | None) -> float | None:
    return None if kib is None else kib / 1024.0


# -- the fast path --------------------------------------------------------------------


def _reset_peak_rss() -> None:
    """Resets this process' ``VmHWM`` to its current RSS (Linux), so the peak measured
    next belongs to the fast path alone."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
    except OSError:
        pass


def _sqlite_file_version(url: str) -> str | None:
    """The SQLite library version that last wrote a database file (from its header:
    the engine bundles its own SQLite, which may differ from Python's ``sqlite3``)."""
    if not url.startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///") :].split("?", 1)[0]
    try:
        with open(path, "rb") as fh:
            header = fh.read(100)
    except OSError:
        return None
    if len(header) < 100 or not header.startswith(b"SQLite format 3\x00"):
        return None
    number = int.from_bytes(header[96:100], "big")
    return f"{number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}"


# -- report ---------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """Cores, CPU model, OS and versions."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "os": platform.platform(),
        "spikard_tasks": _native.__version__,
        "python": platform.python_version(),
        "python_sqlite3": sqlite3.sqlite_version,
        "features": list(_native.FEATURES),
    }


def ratios(results: Sequence[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Per durable target: each figure divided by the fast path's."""
    fast = results[0]
    out: dict[str, dict[str, float | None]] = {}
    for result in results[1:]:
        row: dict[str, float | None] = {}
        for key in FIGURES:
            a, b = result.get(key), fast.get(key)
            row[key] = (
                a / b if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else None
            )
        out[result["target"]] = row
    return out


def _cell(value: Any) -> object:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return float(f"{value:.4g}") if abs(value) < 100 else round(value)
    return value


def _labels(results: Sequence[dict[str, Any]]) -> list[str]:
    """Short column names: the backend kind, numbered when a kind repeats."""
    kinds = [r["backend"] for r in results]
    labels = []
    for i, kind in enumerate(kinds):
        same = [j for j, k in enumerate(kinds) if k == kind]
        labels.append(kind if len(same) == 1 else f"{kind}#{same.index(i) + 1}")
    return labels


def table(results: Sequence[dict[str, Any]], ratio: dict[str, dict[str, float | None]]) -> str:
    """The figures, one row each, with a ``durable ÷ fast path`` column per backend."""
    labels = _labels(results)
    headers = ["figure", labels[0]]
    for label in labels[1:]:
        headers += [label, f"{label} ÷ fast"]
    rows: list[list[object]] = []
    for key, label in FIGURES.items():
        row: list[object] = [label, _cell(results[0].get(key))]
        for result in results[1:]:
            row += [_cell(result.get(key)), _cell(ratio[result["target"]][key])]
        rows.append(row)
    return format_table(headers, rows)
