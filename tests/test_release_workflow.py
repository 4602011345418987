"""The release workflow cannot run here; what can be checked is: it parses, every job it
needs exists, every wheel is tested on its platform before the publish job, and every
path it names exists in the repository."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from .procs import REPO

WORKFLOW = REPO / ".github" / "workflows" / "release.yml"


def _load() -> dict[str, Any]:
    data = yaml.safe_load(WORKFLOW.read_text())
    assert isinstance(data, dict)
    return data


def test_the_workflow_parses_and_its_needs_exist() -> None:
    jobs = _load()["jobs"]
    for name, job in jobs.items():
        for need in job.get("needs", []):
            assert need in jobs, f"{name} needs unknown job {need}"
    assert set(jobs["publish"]["needs"]) == set(jobs) - {"publish"}


def test_every_platform_is_built_and_its_wheel_tested() -> None:
    jobs = _load()["jobs"]
    targets = set()
    for job in jobs.values():
        matrix = job.get("strategy", {}).get("matrix", {})
        rows = matrix.get("include") or [{"target": t} for t in matrix.get("target", [])]
        for step in job.get("steps", []):
            if not step.get("uses", "").startswith("PyO3/maturin-action"):
                continue
            target = step["with"].get("target") or step["with"].get("command")
            if target == "${{ matrix.target }}":
                targets.update(row["target"] for row in rows)
            else:
                targets.add(target)
    assert {"x86_64", "aarch64", "x86_64-unknown-linux-musl", "x64", "sdist"} <= targets
    for name, job in jobs.items():
        if name == "publish":
            continue
        names = [step.get("name", "") for step in job["steps"]]
        assert any("test" in n for n in names), f"{name} does not test what it built"


def test_every_path_it_names_exists() -> None:
    text = WORKFLOW.read_text()
    paths = set(re.findall(r"\btests/[\w/]+\.py\b", text))
    assert paths, "the workflow runs some of the test suite"
    for path in paths:
        assert (REPO / path).is_file(), path
    assert (REPO / "pyproject.toml").is_file() and (REPO / "LICENSE").is_file()


def test_the_package_metadata_users_look_at(tmp_path: Path) -> None:
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    classifiers = project["classifiers"]
    for minor in range(10, 15):
        assert f"Programming Language :: Python :: 3.{minor}" in classifiers
    for system in ("POSIX :: Linux", "MacOS", "Microsoft :: Windows"):
        assert f"Operating System :: {system}" in classifiers
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]
    assert project["dependencies"] == [], "the core wheel has no required dependency"
