"""The pool's supervisor with plain child processes: the restart backoff doubles, a
child exiting with code 2 (a configuration error) stops the pool, and ``stop()`` drains."""

from __future__ import annotations

import logging
import sys
import threading

import pytest

from spikard_tasks.pool.supervisor import PoolResult, Supervisor

pytestmark = pytest.mark.timeout(120)


def _exiting(code: int) -> list[str]:
    return [sys.executable, "-c", f"raise SystemExit({code})"]


def test_a_crashing_child_is_restarted_with_a_doubling_delay(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="spikard_tasks.pool")
    supervisor = Supervisor(lambda _i, _fd: _exiting(3), 1)
    results: list[PoolResult] = []
    runner = threading.Thread(target=lambda: results.append(supervisor.run()))
    runner.start()
    try:
        deadline = threading.Event()
        while "restarting in 2s" not in caplog.text and not deadline.wait(0.1):
            assert runner.is_alive(), caplog.text
    finally:
        supervisor.stop()
        runner.join(timeout=60)
    text = caplog.text
    for delay in ("0.5s", "1s", "2s"):
        assert (
            "worker child 0 (pid " in text and f"exited with code 3; restarting in {delay}" in text
        )
    assert results and results[0].report["restarts"] >= 3


def test_a_configuration_error_stops_the_pool(caplog: pytest.LogCaptureFixture) -> None:
    result = Supervisor(lambda _i, _fd: _exiting(2), 2).run()
    assert result.code == 2
    assert result.report["restarts"] == 0
    assert "a usage or configuration error" in caplog.text


def test_children_that_exit_0_on_stop_make_exit_code_0() -> None:
    sleeper = [
        sys.executable,
        "-c",
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n"
        "while True: time.sleep(0.05)",
    ]
    supervisor = Supervisor(lambda _i, _fd: sleeper, 3)
    results: list[PoolResult] = []
    runner = threading.Thread(target=lambda: results.append(supervisor.run()))
    runner.start()
    waited = threading.Event()
    while len(supervisor.pids()) < 3 and not waited.wait(0.05):
        pass
    supervisor.stop()
    runner.join(timeout=60)
    assert results[0].code == 0 and results[0].report["processes"] == 3
