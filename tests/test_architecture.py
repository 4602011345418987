"""The package's shape: no import circle (counting imports under ``TYPE_CHECKING`` and
inside functions), every module under 500 lines, and the public paths still importable."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "python" / "spikard_tasks"
MAX_LINES = 500


def _modules() -> dict[str, Path]:
    mods: dict[str, Path] = {}
    for path in sorted(PACKAGE.rglob("*.py*")):
        if path.suffix not in (".py", ".pyi"):
            continue
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods.setdefault(".".join(parts), path)
    return mods


def _edges(mods: dict[str, Path]) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for name, path in mods.items():
        out: set[str] = set()
        edges[name] = out
        if path.suffix == ".pyi":
            continue
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in mods]
                out.update(t for t in subs or [target] if t in mods and t != name)
            elif isinstance(node, ast.Import):
                out.update(a.name for a in node.names if a.name in mods and a.name != name)
    return edges


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_import_graph_has_no_circle() -> None:
    edges = _edges(_modules())
    assert len(edges) > 30, "the walk found the package's modules"
    assert _cycles(edges) == []


def test_the_cycle_finder_finds_a_planted_circle() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(edges) == [["a", "b", "c"]]


def test_the_core_does_not_import_its_faces() -> None:
    """The face (queue, task, job, …) never imports the CLI or HTTP layers, and the
    in-process fast path never imports the queue that selects it."""
    edges = _edges(_modules())
    for name, targets in edges.items():
        if name.startswith(("spikard_tasks.cli", "spikard_tasks.http")):
            continue
        if name in ("spikard_tasks.asgi", "spikard_tasks.bench", "spikard_tasks.__main__"):
            continue
        bad = {t for t in targets if t.startswith(("spikard_tasks.cli", "spikard_tasks.http"))}
        assert not bad, f"{name} imports {bad}"
        if name.startswith("spikard_tasks.inprocess"):
            assert "spikard_tasks.queue" not in targets, name


def test_every_module_is_under_500_lines() -> None:
    sizes = {
        name: len(path.read_text().splitlines())
        for name, path in _modules().items()
        if path.suffix == ".py"
    }
    assert {name: n for name, n in sizes.items() if n >= MAX_LINES} == {}


@pytest.mark.parametrize(
    ("module", "names"),
    [
        ("spikard_tasks", ["TaskQueue", "BackgroundRuntime", "Worker", "Task", "Job"]),
        ("spikard_tasks.runtime", ["BackgroundRuntime", "DrainReport", "RuntimeJob"]),
        ("spikard_tasks.asgi", ["create_app", "TasksApp", "job_view"]),
        ("spikard_tasks.http", ["create_app", "dashboard_app", "TasksApp"]),
        ("spikard_tasks.cli", ["main"]),
        ("spikard_tasks.inprocess", ["InProcessBackend", "InProcessSettings"]),
        ("spikard_tasks.testing", ["capture", "eager"]),
        ("spikard_tasks.bench", ["FIGURES", "main", "run_durable"]),
        ("spikard_tasks.exceptions", ["SpikardTasksError"]),
    ],
)
def test_public_import_paths_keep_working(module: str, names: list[str]) -> None:
    imported = importlib.import_module(module)
    for name in names:
        assert hasattr(imported, name), f"{module}.{name}"


#: Layers from the top; a module imports only from its own layer or the ones below. An entry
#: ending in "." is a package prefix (the longest matching one wins); others are exact.
LAYERS = [
    ["spikard_tasks", "spikard_tasks.__main__", "spikard_tasks.asgi", "spikard_tasks.bench"],
    ["spikard_tasks.cli.", "spikard_tasks.http.", "spikard_tasks.testing", "spikard_tasks.metrics"],
    ["spikard_tasks.queue"],
    ["spikard_tasks.worker", "spikard_tasks.inprocess", "spikard_tasks.inprocess.worker"],
    [
        "spikard_tasks.inprocess.backend",
        "spikard_tasks.runtime",
        "spikard_tasks._backend",
        "spikard_tasks._registry",
        "spikard_tasks.operations",
    ],
    [
        "spikard_tasks.inprocess.",
        "spikard_tasks.cron",
        "spikard_tasks._normalize",
        "spikard_tasks._chain",
    ],
    ["spikard_tasks.task"],
    ["spikard_tasks.ops_types"],
    ["spikard_tasks.job", "spikard_tasks.options", "spikard_tasks.config"],
    ["spikard_tasks.pool.", "spikard_tasks._targets"],
    ["spikard_tasks."],  # the rest: exceptions, status, limits, text, the bridge, _native
]


def _layer(module: str) -> int:
    best_length, best = -1, len(LAYERS)
    for index, names in enumerate(LAYERS):
        for name in names:
            if module == name or module + "." == name:
                return index
            if name.endswith(".") and module.startswith(name) and len(name) > best_length:
                best_length, best = len(name), index
    return best


def test_the_layer_rules_place_every_module() -> None:
    assert all(_layer(name) < len(LAYERS) for name in _modules())
    assert _layer("spikard_tasks.cli.main") == 1
    assert _layer("spikard_tasks.inprocess.executor") == 5
    assert _layer("spikard_tasks.status") == len(LAYERS) - 1
    assert _layer("spikard_tasks.pool.supervisor") > _layer("spikard_tasks.queue")


def test_no_module_imports_from_a_layer_above_it() -> None:
    upward = {
        (name, target)
        for name, targets in _edges(_modules()).items()
        for target in targets
        if _layer(target) < _layer(name)
    }
    assert upward == set()
