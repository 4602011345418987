"""Every fenced Python and shell example in README.md runs, so the README cannot drift from
the code.

How the examples run (the runner is ``tests/readme_examples.py``):

- Each ```` ```python ````, ```` ```bash ````, ```` ```sh ```` and ```` ```console ```` block is
  one test, named by its line, section and language (``L53-define-tasks-...-python``); a
  failure shows the block's first lines and its output. Other fences (```` ```text ````) are
  not run: use them for signatures, tables and output.
- All blocks run in file order in one temporary directory, as a new user following the
  README would: a block may use what earlier ones wrote. Running one test alone (``-k``)
  runs the blocks before it first.
- A python block whose first line names a file (``# myapp/tasks.py``) is written there and
  not run; any other python block is a complete program (no top-level ``await``, no
  undefined name) run by a fresh ``python`` with the directory as cwd and ``PYTHONPATH``.
- Shell blocks run with ``bash -euo pipefail``, with this venv's ``spikard-tasks`` first on
  ``PATH``.
- A block that cannot simply run carries an HTML comment on the line before its fence,
  invisible on GitHub: ``<!-- example: background; ready at "started" -->`` (a command that
  runs forever: SIGINT once ready, exit status 0 expected), ``SIGINT after the next block``,
  ``free port for 8000``, ``output has "TEXT"``, ``requires fastapi, litestar``,
  ``skip: REASON`` and ``run by .ci/run`` (the install-and-test commands at the top, which
  CI runs itself: checked against ``.ci/run`` instead of installing again). At most
  :data:`MAX_SKIPPED` blocks may be skipped, so skipping is not the easy way out.

Blocks that need a server use the ones on 127.0.0.1 with queue names of their own. The
per-block tests are ``slow`` (they start workers and a server: 5-10 s); the tests of the
runner itself are not.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from . import readme_examples as rx
from .procs import REPO

README = REPO / "README.md"
#: How many README blocks may be skipped (``skip:`` or ``requires``) at most.
MAX_SKIPPED = 4

BLOCKS = rx.parse(README.read_text())

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[rx.Session]:
    """One run of the README's blocks, in one directory, shared by the block tests."""
    s = rx.Session(BLOCKS, tmp_path_factory.mktemp("readme"), REPO)
    yield s
    s.close()


@pytest.mark.slow
@pytest.mark.parametrize("block", BLOCKS, ids=[b.slug for b in BLOCKS])
def test_readme_block(block: rx.Block, session: rx.Session) -> None:
    outcome = session.run_through(block.index)
    if outcome.status == "skipped":
        pytest.skip(f"README.md line {block.line}: {outcome.detail}")
    if outcome.status == "failed":
        pytest.fail(
            f"README.md line {block.line} ({block.lang}) failed:\n{block.head()}\n"
            f"...\n{outcome.detail}",
            pytrace=False,
        )


def test_readme_has_examples_and_few_skips() -> None:
    langs = {b.lang for b in BLOCKS}
    assert {"python", "bash"} <= langs
    assert any(b.file for b in BLOCKS), "no block writes a file for later ones"
    skipped = [b.slug for b in BLOCKS if b.directives.may_skip]
    assert len(skipped) <= MAX_SKIPPED, f"too many README blocks skipped: {skipped}"


def test_ci_blocks_match_ci_script() -> None:
    ci = [b for b in BLOCKS if b.directives.ci]
    assert len(ci) == 2, "the install+demo and install+test commands are CI's"
    ci_script = (REPO / ".ci" / "run").read_text()
    pyproject = (REPO / "pyproject.toml").read_text()
    for block in ci:
        assert rx.ci_mismatches(block.text, ci_script, pyproject) == []
    # the check can fail: a command CI does not run is reported
    assert rx.ci_mismatches("pytest --no-such-flag\n", ci_script, pyproject) == [
        "pytest --no-such-flag"
    ]
    assert rx.ci_mismatches("pip install '.[nope]'\n", ci_script, pyproject) == [
        "pip install '.[nope]'"
    ]


BROKEN = """\
# Broken examples

```python
# pkg/mod.py
VALUE = 41
```

```python
from pkg.mod import VALUE
assert VALUE + 1 == 42
print("fine")
```

```python
print(undefined_name)
```

```bash
echo one
false
echo never
```

Text with a fence that is not run:

```text
this is not Python at all (
```

<!-- example: output has "expected text" -->
```sh
echo other text
```

<!-- example: background; ready at "up" -->
```bash
trap 'exit 3' INT; echo up; while true; do sleep 0.1; done
```

```console
$ echo console-ok
console-ok
```

## Skipped

<!-- example: skip: shows an install from an index -->
```bash
pip install something-that-does-not-exist
```

<!-- example: requires no_such_module_for_readme_tests -->
```python
import no_such_module_for_readme_tests
```
"""


def test_runner_reports_broken_blocks(tmp_path: Path) -> None:
    results = rx.run_markdown(BROKEN, tmp_path, REPO)
    got = [(b.line, o.status) for b, o in results]
    assert got == [
        (3, "written"),
        (8, "passed"),
        (14, "failed"),
        (18, "failed"),
        (31, "failed"),
        (36, "failed"),
        (40, "passed"),
        (48, "skipped"),
        (53, "skipped"),
    ]
    outcomes = {b.line: o for b, o in results}
    assert "fine" in outcomes[8].detail
    assert "NameError" in outcomes[14].detail and "undefined_name" in outcomes[14].detail
    assert "exit status 1" in outcomes[18].detail
    assert "one" in outcomes[18].detail and "never" not in outcomes[18].detail
    assert "lacks 'expected text'" in outcomes[31].detail
    assert "exit status 3 after SIGINT" in outcomes[36].detail
    assert "console-ok" in outcomes[40].detail
    assert outcomes[48].detail == "shows an install from an index"
    assert outcomes[53].detail == "needs no_such_module_for_readme_tests, not installed"
    assert (tmp_path / "work" / "pkg" / "mod.py").read_text() == "# pkg/mod.py\nVALUE = 41\n"


def test_background_block_stopped_after_the_next_one(tmp_path: Path) -> None:
    markdown = """\
<!-- example: background; free port for 18765; ready at "Serving"; SIGINT after the next block -->
```bash
python -m http.server 18765 --bind 127.0.0.1
```

```bash
echo hello > page.txt && curl -s localhost:18765/page.txt
```
"""
    results = rx.run_markdown(markdown, tmp_path, REPO)
    assert [o.status for _, o in results] == ["passed", "passed"]
    assert "hello" in results[1][1].detail
    assert "18765" not in results[1][1].detail  # served on a free port instead


@pytest.mark.parametrize(
    "marker",
    [
        "<!-- example: skipp: typo -->\n```bash\ntrue\n```\n",
        '<!-- example: ready at "x" -->\n```bash\ntrue\n```\n',
        "<!-- example: skip: stray -->\n\nsome text\n```bash\ntrue\n```\n",
        "<!-- example: skip: stray -->\n\n```bash\ntrue\n```\n",
        "```bash\ntrue\n```\n<!-- example: skip: after the last fence -->\n",
        "<!-- example: skip: on a text fence -->\n```text\nx\n```\n",
    ],
)
def test_malformed_markers_are_errors(marker: str) -> None:
    with pytest.raises(rx.ExampleError):
        rx.parse(marker)
