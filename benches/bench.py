"""The fast path against durable backends, in one run (same as ``spikard-tasks bench``).

    python benches/bench.py [--url sqlite:///bench.db]... [--jobs 10000] [--quick]
                            [--json results.json]

Measures enqueue rates (single calls and bulk), drain rates of no-op sync and async
jobs, enqueue→start latency p50/p99 on an idle worker and worker peak RSS, for
``inprocess://`` and for each ``--url`` (default: a fresh SQLite file), then prints a
table with the durable ÷ fast-path ratios. The logic lives in ``spikard_tasks.bench``.
"""

from __future__ import annotations

import sys

from spikard_tasks.bench import main

if __name__ == "__main__":
    sys.exit(main())
