"""The command line explains itself: help on every option and subcommand, every default
shown, and numbers checked by argparse (exit code 2 naming the option)."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from spikard_tasks.cli import build_parser

from .cli_procs import cli

pytestmark = pytest.mark.timeout(120)


def _parsers(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _parsers(child, (*path, name))


def _subcommand_help(parser: argparse.ArgumentParser) -> dict[str, str | None]:
    helps: dict[str, str | None] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for pseudo in action._choices_actions:
                helps[pseudo.dest] = pseudo.help
    return helps


PARSERS = list(_parsers(build_parser()))


def test_the_walk_reaches_every_command() -> None:
    names = {" ".join(path) for path, _ in PARSERS}
    assert {"worker", "scheduler", "cron list", "cron remove", "enqueue", "status"} <= names
    assert {"cancel", "demo", "serve", "bench"} <= names


@pytest.mark.parametrize("path,parser", PARSERS, ids=[" ".join(p) or "top" for p, _ in PARSERS])
def test_every_option_and_subcommand_has_help(
    path: tuple[str, ...], parser: argparse.ArgumentParser
) -> None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            continue
        label = "/".join(action.option_strings) or action.dest
        assert action.help and action.help != argparse.SUPPRESS, f"{path} {label} has no help"
    for name, text in _subcommand_help(parser).items():
        assert text, f"subcommand {' '.join((*path, name))} has no help"


@pytest.mark.parametrize("path,parser", PARSERS, ids=[" ".join(p) or "top" for p, _ in PARSERS])
def test_every_default_is_shown(path: tuple[str, ...], parser: argparse.ArgumentParser) -> None:
    """An option whose default is a value prints it; one whose default is ``None`` says
    in its help what applies instead (the word "default" appears)."""
    text = " ".join(parser.format_help().split())
    for action in parser._actions:
        if not action.option_strings or action.default is argparse.SUPPRESS:
            continue
        if isinstance(action, (argparse._StoreTrueAction, argparse._HelpAction)):
            continue
        label = "/".join(action.option_strings)
        if action.default is None or action.default == "":
            assert action.help and ("default" in action.help or "(" in action.help), label
        else:
            assert f"(default: {action.default})" in text, f"{path} {label}"


def test_help_of_the_real_command_shows_defaults() -> None:
    worker = cli("worker", "--help")
    assert worker.returncode == 0, worker.stderr
    flat = " ".join(worker.stdout.split())
    assert "(default: INFO)" in flat
    assert "--queues A,B=N consume exactly these queues" in flat
    assert "--drain-timeout" in flat and "--url" in flat
    enqueue = cli("enqueue", "--help")
    assert "(default: [])" in " ".join(enqueue.stdout.split())
    top = cli("--help")
    assert top.returncode == 0 and "cancel a job" in top.stdout


BAD_NUMBERS = [
    (("worker", "tests.apps.cli_app:queue"), "--concurrency", "0"),
    (("worker", "tests.apps.cli_app:queue"), "--concurrency", "many"),
    (("worker", "tests.apps.cli_app:queue"), "--drain-timeout", "-1"),
    (("worker", "tests.apps.cli_app:queue"), "--drain-timeout", "nan"),
    (("worker", "tests.apps.cli_app:queue"), "--drain-timeout", "inf"),
    (("enqueue", "--url", "URL", "report"), "--delay", "-0.5"),
    (("enqueue", "--url", "URL", "report"), "--max-attempts", "0"),
    (("enqueue", "--url", "URL", "report"), "--timeout", "0"),
    (("enqueue", "--url", "URL", "report"), "--priority", str(2**31)),
    (("demo",), "--jobs", "0"),
    (("serve", "tests.apps.cli_app:queue"), "--port", "70000"),
    (("bench",), "--jobs", "-3"),
    (("bench",), "--poll-interval", "inf"),
    (("queues", "limit", "--url", "URL", "emails"), "--max-running", "0"),
    (("queues", "limit", "--url", "URL", "emails"), "--max-running", "many"),
    (("queues", "limit", "--url", "URL", "emails"), "--rate", "10/w"),
    (("queues", "limit", "--url", "URL", "emails"), "--rate", "0/s"),
]


@pytest.mark.parametrize("head,option,value", BAD_NUMBERS)
def test_a_number_out_of_range_exits_2_naming_the_option(
    tmp_path: Path, head: tuple[str, ...], option: str, value: str
) -> None:
    url = f"sqlite:///{tmp_path / 'never.db'}"
    args = [url if part == "URL" else part for part in head]
    result = cli(*args, option, value, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert re.search(rf"argument [^:]*{re.escape(option)}", result.stderr), result.stderr
    assert list(tmp_path.iterdir()) == [], "nothing created"


def test_log_level_is_checked_and_case_insensitive(tmp_path: Path) -> None:
    bad = cli("worker", "tests.apps.cli_app:queue", "--log-level", "LOUD", cwd=tmp_path)
    assert bad.returncode == 2 and "--log-level" in bad.stderr
    parsed = build_parser().parse_args(["scheduler", "m:q", "--log-level", "debug"])
    assert parsed.log_level == "DEBUG"


def test_version_and_python_dash_m() -> None:
    """``--version`` through ``python -m spikard_tasks`` (the package's own version,
    installed or not) and through ``python -m spikard_tasks.cli``."""
    from spikard_tasks import _native
    from spikard_tasks._version import installed_version

    expected = f"spikard-tasks {installed_version()} (engine {_native.__version__})"
    for flag in ("--version", "-V"):
        result = cli(flag)
        assert (result.returncode, result.stdout.strip()) == (0, expected), result.stderr
    no_command = cli()
    assert no_command.returncode == 2 and "COMMAND" in no_command.stderr
