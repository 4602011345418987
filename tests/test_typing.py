"""Type checkers see tasks: mypy and pyright report exactly the lines of
``tests/typing/sample.py`` marked ``# E`` (wrong argument types or counts, wrong result
types), and nothing else."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SAMPLE = Path(__file__).parent / "typing" / "sample.py"
pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]


def _expected(text: str) -> set[int]:
    return {n for n, line in enumerate(text.splitlines(), 1) if line.rstrip().endswith("# E")}


def _mypy(path: Path) -> set[int]:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--no-error-summary",
            "--hide-error-context",
            "--no-pretty",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    lines = {
        int(m.group(1))
        for m in re.finditer(rf"^[^:\n]*{re.escape(path.name)}:(\d+): error", out.stdout, re.M)
    }
    assert lines or out.returncode == 0, out.stdout + out.stderr
    return lines


def _pyright(path: Path) -> set[int]:
    exe = shutil.which("pyright") or str(Path(sys.executable).parent / "pyright")
    if not Path(exe).exists():
        pytest.skip("pyright is not installed (pip install pyright)")
    out = subprocess.run(
        [exe, "--pythonpath", sys.executable, str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    found = {int(m.group(1)) for m in re.finditer(r":(\d+):\d+ - error", out.stdout)}
    assert found or out.returncode == 0, out.stdout + out.stderr
    return found


@pytest.mark.parametrize("checker", [_mypy, _pyright], ids=["mypy", "pyright"])
def test_exactly_the_wrong_calls_are_reported(checker: object) -> None:
    text = SAMPLE.read_text()
    assert len(_expected(text)) >= 8
    assert checker(SAMPLE) == _expected(text)  # type: ignore[operator]


@pytest.mark.parametrize("checker", [_mypy, _pyright], ids=["mypy", "pyright"])
def test_a_broken_signature_is_noticed(checker: object, tmp_path: Path) -> None:
    """The check can fail: with ``add``'s parameters changed to ``str``, correct lines
    become errors and the set no longer matches."""
    broken = tmp_path / "sample.py"
    text = SAMPLE.read_text().replace(
        "def add(a: int, b: int) -> int:", "def add(a: str, b: str) -> int:"
    )
    broken.write_text(text)
    assert checker(broken) != _expected(text)  # type: ignore[operator]
