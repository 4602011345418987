"""The CI regression guard's verdicts (``benches/regression_guard.py``)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest


def _load_guard() -> ModuleType:
    path = Path(__file__).parent.parent / "benches" / "regression_guard.py"
    spec = importlib.util.spec_from_file_location("regression_guard", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


guard = _load_guard()
BASE = {"sqlite": {"drain_sync_per_s": 0.03, "latency_p50_ms": 2.0}}


def test_noise_within_three_times_passes() -> None:
    current = {"sqlite": {"drain_sync_per_s": 0.012, "latency_p50_ms": 5.9}}
    assert guard.compare(current, BASE) == []


def test_a_throughput_ratio_under_a_third_fails() -> None:
    current = {"sqlite": {"drain_sync_per_s": 0.0099, "latency_p50_ms": 2.0}}
    (failure,) = guard.compare(current, BASE)
    assert "drain_sync_per_s" in failure and "sqlite" in failure


def test_latency_fails_only_past_three_times_and_the_floor() -> None:
    assert guard.compare({"sqlite": {"latency_p50_ms": 9.0}}, BASE) == []  # under the floor
    (failure,) = guard.compare({"sqlite": {"latency_p50_ms": 12.0}}, BASE)
    assert "latency_p50_ms" in failure


def test_a_figure_no_longer_measured_fails_and_unknown_backends_are_skipped() -> None:
    assert guard.compare({"sqlite": {"drain_sync_per_s": None}}, BASE) != []
    assert guard.compare({"redis": {"drain_sync_per_s": 0.0}}, BASE) == []


@pytest.mark.parametrize("factor", [2.0, 3.0])
def test_the_factor_is_configurable(factor: float) -> None:
    current = {"sqlite": {"drain_sync_per_s": 0.012}}
    assert bool(guard.compare(current, BASE, factor)) is (0.012 * factor < 0.03)


def test_the_stored_baseline_covers_every_guarded_figure_on_sqlite() -> None:
    import json

    baseline = json.loads(guard.DEFAULT_BASELINE.read_text(encoding="utf-8"))
    assert set(baseline["sqlite"]) == {*guard.THROUGHPUT, guard.LATENCY}
    assert all(isinstance(v, float) and v > 0 for v in baseline["sqlite"].values())
