"""``Supervisor``: starts N worker child processes, restarts the ones that die and stops
them all on SIGTERM/SIGINT.

A child that exits while the pool runs is restarted after a delay that doubles from
0.5 s up to 30 s (reset once a child lived 60 s); a child that reports it was recycled
(``--max-jobs-per-child`` / ``--max-memory-per-child``) is replaced at once. A child that
exits with code 2 (a usage or configuration error) stops the pool: restarting cannot mend
it. The first SIGTERM/SIGINT is forwarded to every child (each drains); the supervisor
exits 0 when they all exited 0. A second one is forwarded again (the children stop at
once), and children still alive after a short grace are killed (SIGKILL); the supervisor
then returns 128 + the signal's number.

Each child is started in a session of its own, so a Ctrl-C typed in a terminal reaches
the supervisor only (which forwards it once); each child writes its report (a JSON object)
to a pipe whose descriptor is given on its command line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import signal
import subprocess
import threading
import time
import types
from collections.abc import Callable, Mapping
from typing import Any

__all__ = [
    "BACKOFF_FIRST",
    "BACKOFF_MAX",
    "BACKOFF_RESET_AFTER",
    "PoolResult",
    "Supervisor",
    "describe_exit",
    "next_delay",
]

log = logging.getLogger("spikard_tasks.pool")

#: Seconds before the first restart of a child that died.
BACKOFF_FIRST = 0.5
#: The longest wait before a restart.
BACKOFF_MAX = 30.0
#: A child that lived this many seconds resets its slot's backoff.
BACKOFF_RESET_AFTER = 60.0
#: The exit code of a usage or configuration error (the command line's).
CONFIG_ERROR = 2
#: The report counters summed over the children.
COUNTERS = ("succeeded", "retried", "failed", "cancelled", "released")

#: ``command(index, report_fd)``: the argv of child ``index``.
Command = Callable[[int, int], list[str]]


def next_delay(delay: float) -> float:
    """The delay after ``delay``: doubled, at most ``BACKOFF_MAX``."""
    return min(delay * 2, BACKOFF_MAX)


def describe_exit(code: int) -> str:
    """``"code 1"`` or ``"signal SIGKILL"`` for a ``Popen.returncode``."""
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"code {code}"


@dataclasses.dataclass
class PoolResult:
    """How the pool ended: the exit code for the command line, and the children's
    summed report (plus ``processes``, ``restarts`` and ``recycled``)."""

    code: int
    report: dict[str, int]


@dataclasses.dataclass
class _Slot:
    """One child position: its process (``None`` while waiting for a restart)."""

    index: int
    proc: subprocess.Popen[bytes] | None = None
    report_fd: int = -1
    started: float = 0.0
    delay: float = BACKOFF_FIRST
    restart_at: float = 0.0


class Supervisor:
    """Runs ``processes`` children made by ``command`` until a signal (or ``stop()``)."""

    def __init__(
        self,
        command: Command,
        processes: int,
        *,
        env: Mapping[str, str] | None = None,
        kill_grace: float = 5.0,
        tick: float = 0.1,
    ) -> None:
        if processes < 1:
            raise ValueError("a pool needs at least one process")
        self._command = command
        self._env = dict(os.environ if env is None else env)
        self._slots = [_Slot(i) for i in range(processes)]
        self._kill_grace = kill_grace
        self._tick = tick
        self._signals = 0
        self._signum = signal.SIGTERM
        self._kill_at: float | None = None
        self._fatal = False
        self._clean = True
        self._restarts = 0
        self._recycled = 0
        self._totals = dict.fromkeys(COUNTERS, 0)
        self._lock = threading.RLock()

    @property
    def stopping(self) -> bool:
        """True once a signal (or ``stop()`` or a fatal child) asked the pool to stop."""
        return self._signals > 0

    def pids(self) -> list[int]:
        """The pids of the children alive now."""
        with self._lock:
            return [s.proc.pid for s in self._slots if s.proc is not None]

    # -- signals -----------------------------------------------------------------------

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """Like a signal received: the first call drains every child, a second stops
        them at once (SIGKILL after the grace)."""
        with self._lock:
            self._signals += 1
            self._signum = signal.Signals(signum)
            alive = [s for s in self._slots if s.proc is not None]
            if self._signals == 1:
                log.warning(
                    "stopping: %d worker children draining (send the signal again to stop at once)",
                    len(alive),
                )
            else:
                self._kill_at = time.monotonic() + self._kill_grace
                log.warning(
                    "stopping at once: %s sent again to %d worker children; the ones alive "
                    "in %g s are killed",
                    self._signum.name,
                    len(alive),
                    self._kill_grace,
                )
            for slot in alive:
                self._send(slot, signum)

    def _on_signal(self, signum: int, _frame: types.FrameType | None) -> None:
        self.stop(signum)

    @staticmethod
    def _send(slot: _Slot, signum: int) -> None:
        if slot.proc is not None and slot.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                slot.proc.send_signal(signum)

    # -- children ----------------------------------------------------------------------

    def _spawn(self, slot: _Slot) -> None:
        read_fd, write_fd = os.pipe()
        try:
            proc = subprocess.Popen(
                self._command(slot.index, write_fd),
                env=self._env,
                pass_fds=(write_fd,),
                start_new_session=True,
            )
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        with self._lock:
            slot.proc, slot.report_fd, slot.started = proc, read_fd, time.monotonic()
            if self._signals:  # a signal arrived while the child was being started
                self._send(slot, self._signum)
        log.info("worker child %d started (pid %d)", slot.index, proc.pid)

    def _read_report(self, slot: _Slot) -> dict[str, Any]:
        # The child exited: its report is in the pipe. Not blocking: a process the child
        # started may still hold the pipe's write end.
        chunks: list[bytes] = []
        os.set_blocking(slot.report_fd, False)
        try:
            while chunk := os.read(slot.report_fd, 65536):
                chunks.append(chunk)
        except BlockingIOError:
            pass
        finally:
            os.close(slot.report_fd)
            slot.report_fd = -1
        try:
            report = json.loads(b"".join(chunks) or b"{}")
        except ValueError:
            return {}
        return report if isinstance(report, dict) else {}

    def _exited(self, slot: _Slot, code: int, now: float) -> None:
        assert slot.proc is not None
        pid, lived = slot.proc.pid, now - slot.started
        report = self._read_report(slot)
        slot.proc = None
        for name in COUNTERS:
            value = report.get(name)
            if isinstance(value, int):
                self._totals[name] += value
        if self.stopping:
            forwarded = code == -self._signum and self._signals == 1
            if code != 0 and not forwarded and not report.get("recycled"):
                self._clean = False
            log.info(
                "worker child %d (pid %d) exited with %s", slot.index, pid, describe_exit(code)
            )
            return
        if code == 0 and report.get("recycled"):
            self._recycled += 1
            log.info(
                "worker child %d (pid %d) recycled (%s); replacing it",
                slot.index,
                pid,
                report["recycled"],
            )
            slot.restart_at = now
            return
        if code == CONFIG_ERROR:
            log.error(
                "worker child %d (pid %d) exited with code 2 (a usage or configuration "
                "error, see its log above); stopping the pool",
                slot.index,
                pid,
            )
            self._fatal = True
            self.stop(signal.SIGTERM)
            return
        if lived >= BACKOFF_RESET_AFTER:
            slot.delay = BACKOFF_FIRST
        log.warning(
            "worker child %d (pid %d) exited with %s; restarting in %gs",
            slot.index,
            pid,
            describe_exit(code),
            slot.delay,
        )
        slot.restart_at = now + slot.delay
        slot.delay = next_delay(slot.delay)
        self._restarts += 1

    def _step(self) -> bool:
        """One round: reap, restart, kill after the grace. False once all are gone."""
        now = time.monotonic()
        with self._lock:
            for slot in self._slots:
                if slot.proc is not None:
                    code = slot.proc.poll()
                    if code is not None:
                        self._exited(slot, code, now)
            if self._kill_at is not None and now >= self._kill_at:
                for slot in self._slots:
                    self._send(slot, signal.SIGKILL)
            waiting = [s for s in self._slots if s.proc is None and s.restart_at <= now]
            alive = any(s.proc is not None for s in self._slots)
        if self.stopping:
            return alive
        for slot in waiting:
            if self.stopping:  # a signal arrived meanwhile
                break
            self._spawn(slot)
        return True

    def run(self) -> PoolResult:
        """Starts the children and supervises them until they all exited after a stop.
        Installs SIGINT/SIGTERM handlers when called from the main thread."""
        restore: dict[signal.Signals, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                restore[sig] = signal.signal(sig, self._on_signal)
        try:
            log.info(
                "starting %d worker children (supervisor pid %d)", len(self._slots), os.getpid()
            )
            for slot in self._slots:
                if not self.stopping:
                    self._spawn(slot)
            while self._step():
                time.sleep(self._tick)
        finally:
            for sig, handler in restore.items():
                signal.signal(sig, handler)
            for slot in self._slots:  # only after an error in this loop
                self._send(slot, signal.SIGKILL)
        report = {
            **self._totals,
            "processes": len(self._slots),
            "restarts": self._restarts,
            "recycled": self._recycled,
        }
        if self._fatal:
            code = CONFIG_ERROR
        elif self._signals >= 2:
            code = 128 + self._signum
        else:
            code = 0 if self._clean else 1
        return PoolResult(code, report)
