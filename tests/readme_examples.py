"""Finds the fenced examples of a Markdown file and runs them as a new user would.

Used by ``tests/test_readme_examples.py`` (which documents the conventions); kept apart so
the tests can feed it small Markdown strings of their own.

Every ```` ```python ````, ```` ```bash ````, ```` ```sh ```` and ```` ```console ```` block is
an example. Other fences (```` ```text ````, a bare fence) are not run. Examples run in file
order in one directory (``Session.work``), so a block may use what an earlier one wrote.

- A python block whose first line is a comment naming a file (``# myapp/tasks.py``) is
  written to that path and not run. Any other python block runs as a script in a fresh
  ``python`` (this interpreter) with the directory as cwd and as ``PYTHONPATH``.
- Shell blocks run with ``bash -euo pipefail`` in the directory, with this interpreter's
  ``bin`` directory (``python``, ``spikard-tasks``) first on ``PATH``. A ``console`` block
  runs its ``$ `` lines (output lines are not compared).
- An HTML comment on the line before the fence, ``<!-- example: CLAUSE; CLAUSE -->``
  (invisible on GitHub), says how to run a block that cannot simply run. Clauses:

  ``run by .ci/run``
      not run here: CI runs it; every command of the block must appear in ``.ci/run``.
  ``skip: REASON``
      not run, for the reason given (skips are counted and capped by the test).
  ``requires MODULE, MODULE``
      skipped (and counted) when one of these modules cannot be imported.
  ``background``
      the block runs forever (a worker, a server): it is started in a process group of its
      own, and gets SIGINT once ready (``ready at "TEXT"``: once its output contains TEXT),
      or, with ``SIGINT after the next block``, once the next block finished. It must then
      exit with status 0.
  ``free port for N``
      a free port replaces the number N in this block and every later one (so examples that
      serve on a fixed port do not collide with whatever else runs on this machine).
  ``output has "TEXT"``
      the block's output must contain TEXT.

  An unknown clause is an error, so a typo cannot turn into a silent skip.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

#: Fence languages that are examples.
RUN_LANGS = {"python", "bash", "sh", "console"}
#: How long one block (or a background block's start or stop) may take before it fails.
BLOCK_TIMEOUT = 90.0

_FENCE = re.compile(r"^```\s*([\w+-]*)\s*$")
_MARKER = re.compile(r"^<!--\s*example:\s*(.*?)\s*-->\s*$")
_FILE_LINE = re.compile(r"^#\s*([\w./-]+\.py)\s*$")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*$")


class ExampleError(ValueError):
    """The Markdown is malformed for the runner (an unknown clause, a stray marker)."""


@dataclasses.dataclass
class Directives:
    """What a ``<!-- example: ... -->`` marker asks for."""

    ci: bool = False
    skip: str | None = None
    requires: tuple[str, ...] = ()
    background: bool = False
    ready: str | None = None
    stop_after_next: bool = False
    free_port: int | None = None
    output_has: tuple[str, ...] = ()

    @property
    def may_skip(self) -> bool:
        """Whether this block is (or may be) skipped rather than run."""
        return self.skip is not None or bool(self.requires)


def parse_directives(text: str) -> Directives:
    """Parses the clauses of one marker; raises :class:`ExampleError` on an unknown one."""
    d = Directives()
    for clause in (c.strip() for c in text.split(";")):
        if clause == "run by .ci/run":
            d.ci = True
        elif m := re.fullmatch(r"skip:\s*(.+)", clause):
            d.skip = m.group(1)
        elif m := re.fullmatch(r"requires\s+([\w., ]+)", clause):
            d.requires = tuple(x for x in re.split(r"[,\s]+", m.group(1)) if x)
        elif clause == "background":
            d.background = True
        elif m := re.fullmatch(r'ready at "(.+)"', clause):
            d.ready = m.group(1)
        elif clause == "SIGINT after the next block":
            d.stop_after_next = True
        elif m := re.fullmatch(r"free port for (\d+)", clause):
            d.free_port = int(m.group(1))
        elif m := re.fullmatch(r'output has "(.+)"', clause):
            d.output_has += (m.group(1),)
        else:
            raise ExampleError(f"unknown example clause {clause!r} in <!-- example: {text} -->")
    if (d.ready or d.stop_after_next) and not d.background:
        raise ExampleError(f"'ready at' and 'SIGINT after' need 'background': {text!r}")
    return d


@dataclasses.dataclass
class Block:
    """One fenced example."""

    index: int
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    section: str
    directives: Directives

    @property
    def slug(self) -> str:
        """A short, stable test id: line, section and language."""
        section = re.sub(r"[^a-z0-9]+", "-", self.section.lower()).strip("-")[:30]
        return f"L{self.line}-{section or 'top'}-{self.lang}"

    @property
    def file(self) -> str | None:
        """The path a python block is written to, if its first line names one."""
        first = self.text.splitlines()[0] if self.text else ""
        m = _FILE_LINE.match(first)
        return m.group(1) if self.lang == "python" and m else None

    def head(self, n: int = 3) -> str:
        """The block's first ``n`` lines, for failure messages."""
        return "\n".join(self.text.splitlines()[:n])


def parse(markdown: str) -> list[Block]:
    """Every example block of ``markdown``, in order."""
    blocks: list[Block] = []
    lines = markdown.splitlines()
    section = ""
    pending: tuple[int, Directives] | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        if m := _MARKER.match(line):
            pending = (i + 1, parse_directives(m.group(1)))
        elif m := _FENCE.match(line):
            lang = m.group(1).lower()
            end = i + 1
            while end < len(lines) and not lines[end].startswith("```"):
                end += 1
            text = "\n".join(lines[i + 1 : end]) + "\n"
            if pending and pending[0] != i:
                raise ExampleError(f"line {pending[0]}: an example marker not right before a fence")
            marker = pending
            if lang in RUN_LANGS:
                d = marker[1] if marker else Directives()
                blocks.append(Block(len(blocks), i + 1, lang, text, section, d))
            elif marker:
                raise ExampleError(f"line {marker[0]}: a marker before a ```{lang} fence")
            pending = None
            i = end
        elif (m := _HEADING.match(line)) and line.startswith("#"):
            section = m.group(2)
        if pending and pending[0] < i:
            raise ExampleError(f"line {pending[0]}: an example marker not right before a fence")
        i += 1
    if pending:
        raise ExampleError(f"line {pending[0]}: an example marker not right before a fence")
    return blocks


def console_commands(text: str) -> str:
    """The commands of a ``console`` block (its ``$ `` lines and their continuations)."""
    out: list[str] = []
    continued = False
    for line in text.splitlines():
        if line.startswith("$ ") or continued:
            out.append(line[2:] if line.startswith("$ ") and not continued else line)
            continued = line.endswith("\\")
    return "\n".join(out) + "\n"


def ci_mismatches(text: str, ci_script: str, pyproject: str) -> list[str]:
    """The commands of a ``run by .ci/run`` block that ``.ci/run`` does not run.

    A command matches a line of the script when its words appear in that line in order
    (CI adds flags such as ``-q``). ``pip install .`` / ``pip install '.[test]'`` match when
    CI builds the checkout's wheel and installs it with an extra that includes ``test``."""
    ci_lines = []
    for line in ci_script.splitlines():
        try:
            ci_lines.append(shlex.split(line, comments=True))
        except ValueError:
            continue
    missing = []
    for command in re.split(r"&&|\n", text):
        words = shlex.split(command, comments=True)
        if not words:
            continue
        if words[:2] == ["pip", "install"] and words[-1].startswith("."):
            if not _ci_installs_checkout(words[-1], ci_script, pyproject):
                missing.append(command.strip())
            continue
        if not any(_in_order(words, line) for line in ci_lines):
            missing.append(command.strip())
    return missing


def _ci_installs_checkout(target: str, ci_script: str, pyproject: str) -> bool:
    """Whether CI builds the checkout's wheel and installs it with ``target``'s extra."""
    installed = re.search(r'pip install [^\n]*"\$WHEEL(?:\[(\w+)\])?"', ci_script)
    if "maturin build" not in ci_script or installed is None:
        return False
    wanted = re.fullmatch(r"\.(?:\[(\w+)\])?", target)
    if wanted is None or wanted.group(1) in (None, installed.group(1)):
        return wanted is not None
    extra = re.search(rf"^{installed.group(1)} = \[(.*?)^\]", pyproject, re.M | re.S)
    return extra is not None and f"spikard-tasks[{wanted.group(1)}]" in extra.group(1)


def _in_order(words: list[str], line: list[str]) -> bool:
    it = iter(line)
    return all(any(w == x for x in it) for w in words)


@dataclasses.dataclass
class Outcome:
    """How one block went: ``passed``, ``written``, ``ci``, ``skipped`` or ``failed``."""

    status: str
    detail: str = ""


class _Background:
    """A background block: its process group and the output it printed so far."""

    def __init__(self, block: Block, proc: subprocess.Popen[bytes]) -> None:
        self.block = block
        self.proc = proc
        self.output = b""
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        stream = self.proc.stdout
        assert stream is not None
        while chunk := stream.read1(4096):
            with self._changed:
                self.output += chunk
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def text(self) -> str:
        with self._changed:
            return self.output.decode(errors="replace")

    def wait_for(self, needle: str) -> bool:
        """Waits until the output contains ``needle``; False if the process ended first."""
        deadline = time.monotonic() + BLOCK_TIMEOUT
        with self._changed:
            while needle.encode() not in self.output:
                if self.proc.poll() is not None and not self._reader.is_alive():
                    return False
                if time.monotonic() > deadline:
                    return False
                self._changed.wait(0.2)
        return True

    def interrupt(self) -> Outcome:
        """SIGINT to the block's process group; it must exit with status 0."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
        try:
            code = self.proc.wait(BLOCK_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            return Outcome("failed", f"still running {BLOCK_TIMEOUT:.0f} s after SIGINT")
        self._reader.join(BLOCK_TIMEOUT)
        if code != 0:
            return Outcome("failed", f"exit status {code} after SIGINT:\n{self.text()}")
        return _check_output(self.block, self.text())


def _check_output(block: Block, output: str) -> Outcome:
    for needle in block.directives.output_has:
        if needle not in output:
            return Outcome("failed", f"output lacks {needle!r}:\n{output}")
    return Outcome("passed", output)


class Session:
    """Runs the blocks of one Markdown file in order, in one directory (``work``)."""

    def __init__(self, blocks: list[Block], root: Path, repo: Path) -> None:
        self.blocks = blocks
        self.repo = repo
        self.work = root / "work"
        self.scripts = root / "scripts"
        self.work.mkdir(parents=True)
        self.scripts.mkdir()
        self.outcomes: list[Outcome] = []
        self._ports: dict[int, int] = {}
        self._background: list[_Background] = []
        bindir = str(Path(sys.executable).parent)
        env = {k: v for k, v in os.environ.items() if not k.startswith("SPIKARD_TASKS_")}
        env.update(
            PATH=bindir + os.pathsep + env.get("PATH", ""),
            PYTHONPATH=str(self.work),
            PYTHONUNBUFFERED="1",
        )
        self.env = env

    def run_through(self, index: int) -> Outcome:
        """Runs every block up to ``index`` that has not run yet; returns that one's outcome."""
        while len(self.outcomes) <= index:
            block = self.blocks[len(self.outcomes)]
            outcome = self._run(block)
            # a background block waiting for this one to finish gets its SIGINT now
            for bg in [b for b in self._background if b.block.index == block.index - 1]:
                self._background.remove(bg)
                stopped = bg.interrupt()
                if outcome.status == "failed":
                    outcome.detail += f"\n-- meanwhile, line {bg.block.line}:\n{bg.text()}"
                elif stopped.status == "failed":
                    self.outcomes[bg.block.index] = stopped
                    outcome = Outcome("failed", f"line {bg.block.line}: {stopped.detail}")
            self.outcomes.append(outcome)
        return self.outcomes[index]

    def close(self) -> None:
        """Stops what still runs in the background."""
        while self._background:
            bg = self._background.pop()
            bg.interrupt()

    def _run(self, block: Block) -> Outcome:
        d = block.directives
        if d.ci:
            missing = ci_mismatches(
                block.text,
                (self.repo / ".ci" / "run").read_text(),
                (self.repo / "pyproject.toml").read_text(),
            )
            if missing:
                return Outcome("failed", f".ci/run does not run: {missing}")
            return Outcome("ci")
        if d.skip is not None:
            return Outcome("skipped", d.skip)
        import importlib.util

        absent = [m for m in d.requires if importlib.util.find_spec(m) is None]
        if absent:
            return Outcome("skipped", f"needs {', '.join(absent)}, not installed")
        if d.free_port is not None:
            self._ports[d.free_port] = _free_port()
        text = block.text
        for fixed, port in self._ports.items():
            text = re.sub(rf"\b{fixed}\b", str(port), text)
        if block.file is not None:
            path = self.work / block.file
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            return Outcome("written", block.file)
        if block.lang == "python":
            script = self.scripts / f"readme_line_{block.line}.py"
            script.write_text(text)
            argv = [sys.executable, str(script)]
        else:
            body = console_commands(text) if block.lang == "console" else text
            argv = ["bash", "-euo", "pipefail", "-c", body]
        if d.background:
            return self._start_background(block, argv)
        try:
            done = subprocess.run(
                argv,
                cwd=self.work,
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=BLOCK_TIMEOUT,
            )
        except subprocess.TimeoutExpired as exc:
            out = (exc.output or b"").decode(errors="replace")
            return Outcome("failed", f"did not finish within {BLOCK_TIMEOUT:.0f} s:\n{out}")
        output = done.stdout.decode(errors="replace")
        if done.returncode != 0:
            return Outcome("failed", f"exit status {done.returncode}:\n{output}")
        return _check_output(block, output)

    def _start_background(self, block: Block, argv: list[str]) -> Outcome:
        proc = subprocess.Popen(
            argv,
            cwd=self.work,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        bg = _Background(block, proc)
        ready = block.directives.ready
        if ready is not None and not bg.wait_for(ready):
            bg.interrupt()
            return Outcome("failed", f"never printed {ready!r}:\n{bg.text()}")
        if block.directives.stop_after_next and block.index + 1 < len(self.blocks):
            self._background.append(bg)
            return Outcome("passed", "started in the background")
        return bg.interrupt()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def run_markdown(markdown: str, root: Path, repo: Path) -> list[tuple[Block, Outcome]]:
    """Parses and runs every example of ``markdown`` (for tests of the runner itself)."""
    blocks = parse(markdown)
    session = Session(blocks, root, repo)
    try:
        return [(b, session.run_through(b.index)) for b in blocks]
    finally:
        session.close()
