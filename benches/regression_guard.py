"""CI regression guard: a short benchmark compared with a stored baseline.

    python benches/regression_guard.py [--baseline benches/baseline.json] [--update]
                                       [--url URL]... [--factor 3]

Runs the fast path and each durable URL (default: a fresh SQLite file) with small sizes
and divides every durable throughput figure by the fast path's, measured in the same run,
so that a slow or busy machine moves both sides alike. Fails (exit 1) only when a ratio
fell to a third (``--factor``) of the baseline's or, for latency, when the p50 grew past
three times the baseline's and past an absolute floor: gross regressions, never noise.
``--update`` records the current figures in the baseline instead of comparing, keeping
per figure the worse of the stored and the measured value: run it a few times for a
conservative baseline (delete the file to start afresh).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from spikard_tasks.bench import BenchSizes, ratios, run_durable, run_fast_path

#: Throughput figures guarded as durable ÷ fast-path ratios (higher is better).
THROUGHPUT = ("enqueue_single_per_s", "enqueue_bulk_per_s", "drain_sync_per_s", "drain_async_per_s")
#: Latency is guarded in milliseconds (the fast path's is too small to divide by).
LATENCY = "latency_p50_ms"
#: A p50 below this never fails the guard, whatever the baseline (timer noise).
LATENCY_FLOOR_MS = 10.0
#: Small sizes: the whole guard takes well under a minute per backend.
SIZES = BenchSizes(jobs=3_000, enqueue=1_000, batch=500, samples=60, concurrency=16)
DEFAULT_BASELINE = Path(__file__).with_name("baseline.json")


#: Fast-path rounds; each figure is the best of them (a single round varies up to 3x on
#: a busy 2-core machine, the best of three far less).
FAST_ROUNDS = 3


def measure(urls: Sequence[str]) -> dict[str, dict[str, float | None]]:
    """Per backend kind: the guarded ratios and the latency p50, from one run."""
    rounds = [run_fast_path(SIZES, progress=False) for _ in range(FAST_ROUNDS)]
    fast = dict(rounds[0])
    for key in THROUGHPUT:
        fast[key] = max(r[key] for r in rounds)
    results = [fast]
    results += [run_durable(url, SIZES, progress=False) for url in urls]
    ratio = ratios(results)
    out: dict[str, dict[str, float | None]] = {}
    for result in results[1:]:
        row = {key: ratio[result["target"]][key] for key in THROUGHPUT}
        row[LATENCY] = result.get(LATENCY)
        out[result["backend"]] = row
    return out


def compare(
    current: Mapping[str, Mapping[str, float | None]],
    baseline: Mapping[str, Mapping[str, float | None]],
    factor: float = 3.0,
) -> list[str]:
    """The gross regressions of ``current`` against ``baseline`` (empty: none).

    A backend or figure missing from either side is not compared; a figure the current
    run could not measure (``None``) while the baseline has it is a regression.
    """
    failures: list[str] = []
    for backend, base_row in baseline.items():
        row = current.get(backend)
        if row is None:
            continue
        for key, base in base_row.items():
            if base is None or key not in row:
                continue
            now = row[key]
            if now is None:
                failures.append(f"{backend} {key}: not measured (baseline {base:.4g})")
            elif key == LATENCY:
                if now > base * factor and now > LATENCY_FLOOR_MS:
                    failures.append(
                        f"{backend} {key}: {now:.3g} ms, over {factor:g} times "
                        f"the baseline {base:.3g} ms"
                    )
            elif now * factor < base:
                failures.append(
                    f"{backend} {key}: ratio to the fast path {now:.4g}, "
                    f"under 1/{factor:g} of the baseline {base:.4g}"
                )
    return failures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--baseline", type=Path, default=DEFAULT_BASELINE)
    parser.add_argument("--url", action="append", default=None, help="durable backend URL")
    parser.add_argument("--factor", type=float, default=3.0, help="regression factor (3)")
    parser.add_argument("--update", action="store_true", help="write the baseline instead")
    args = parser.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="spikard-guard-")
    try:
        return _guard(args, args.url or [f"sqlite:///{tmp}/guard.db"])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _guard(args: argparse.Namespace, urls: Sequence[str]) -> int:
    started = time.time()
    current = measure(urls)
    print(f"regression guard: {len(urls)} backend(s) in {time.time() - started:.0f}s")
    for backend, row in current.items():
        cells = ", ".join(f"{k}={v:.4g}" if v is not None else f"{k}=n/a" for k, v in row.items())
        print(f"  {backend}: {cells}")
    if args.update:
        previous: dict[str, Any] = {}
        if args.baseline.exists():
            previous = json.loads(args.baseline.read_text(encoding="utf-8"))
        for backend, row in current.items():
            merged = dict(previous.get(backend, {}))
            for key, value in row.items():
                old = merged.get(key)
                if value is None or old is None:
                    merged[key] = value if old is None else old
                else:  # keep the worse figure: a conservative baseline never fails on noise
                    merged[key] = max(old, value) if key == LATENCY else min(old, value)
            previous[backend] = merged
        args.baseline.write_text(json.dumps(previous, indent=2, sort_keys=True) + "\n")
        print(f"wrote {args.baseline}")
        return 0
    baseline = json.loads(args.baseline.read_text(encoding="utf-8"))
    failures = compare(current, baseline, args.factor)
    if failures:
        # A second run must confirm a regression: one noisy run never fails CI.
        print("possible regression; measuring again:", *failures, sep="\n  ")
        again = compare(measure(urls), baseline, args.factor)
        failures = [f for f in again if f.split(":")[0] in {g.split(":")[0] for g in failures}]
    for failure in failures:
        print(f"REGRESSION {failure}")
    if not failures:
        print(f"no figure regressed {args.factor:g} times against {args.baseline.name}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
