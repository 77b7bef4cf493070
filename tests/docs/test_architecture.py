"""The tree shows the pipeline and stays that way: the written map (docs/architecture.md) matches bench/, no
import circle, and no module or function grows past the house limits without a written reason.

`python tests/docs/test_architecture.py` prints every module over LIMIT_MODULE_LINES and every
function over LIMIT_FUNCTION_LINES, with the reason it is allowed (or none)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
ARCHITECTURE = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")

LIMIT_MODULE_LINES = 400
LIMIT_FUNCTION_LINES = 50

# Known offenders and why they are allowed for now. A new offender fails the test: split it, or
# write its reason here. A listed one that shrank below the limit fails too, so the list stays true.
MODULE_REASONS = {
    "bench/analysis/compare.py": "gate statistics only (thresholds, bootstrap intervals, verdicts, cell "
                                 "matching); the rendering moved to bench/outputs/gate_tables.py",
    "bench/analysis/studies.py": "keep_alive and queue studies share the per-request timeline builder",
    "bench/analysis/metrics.py": "per-request and per-cell metrics plus their definitions text (docs/metrics.md)",
    "bench/load.py": "closed, open and conversation schedules share the dispatcher and the clock",
    "bench/clients/transport.py": "one HTTP/1.1 transport (pool, connection, parser callbacks) kept "
                                  "together on purpose: the hot path, measured by bench perf",
    "bench/run/runner.py": "the cell loop with the adaptive, sweep and --workers hooks of issues 18/19",
    "bench/records.py": "the record, JSONL, Parquet conversion and load_run",
    "bench/sim/scheduler.py": "the simulator's scheduler mirrors Ollama's server/sched.go",
    "bench/sim/native.py": "the simulator's native routes mirror Ollama's server/routes.go",
}
FUNCTION_REASONS = {
    "bench/sim/config.py:build_config": "one flag or variable per line, in Ollama's envconfig order",
    "bench/clients/openai.py:_read_sse": "the SSE hot loop: one function keeps per-event cost down",
    "bench/clients/native.py:_read_stream": "the NDJSON hot loop: one function keeps per-line cost down",
    "bench/sim/openai_api.py:completions": "mirrors Ollama's openai middleware, branch by branch",
    "bench/run/runner.py:_run_cell": "one cell with the stop rule, pruning and --workers branches",
    "bench/cli/run_cmd.py:run_command": "flag-only runs, resume and plain runs share one click command",
    "bench/report/latency.py:_ttft_cdfs": "one figure of small multiples, drawn in one place",
    "bench/analysis/metrics.py:request_metrics": "one vectorised pass, column by column",
    "bench/sim/memory.py:llama_server_buffers": "mirrors llama.cpp's buffer accounting step by step",
    "bench/plan.py:_axes": "every axis of the matrix in its fixed order",
    "bench/clients/http.py:make_http_client": "mostly its docstring: why each client setting",
    "bench/clients/_exchange.py:exchange": "one request's whole life: send, status, stream, errors",
    "bench/telemetry/selfcheck.py:_allocator": "a child process's script, kept readable in one piece",
    "bench/sim/emitter.py:__call__": "the ASGI hot path of the perf emitter",
    "bench/sim/testing.py:running_sim": "fixture with its cleanup in one place",
    "bench/cli/perf_cmd.py:summary_table": "one table row per measured quantity",
    "bench/analysis/kv_fit.py:analyze_group": "three fits, the choice among them and the kv.json entry",
}


# Import circles allowed for now, with why. Empty is the goal.
ALLOWED_CIRCLES: dict[tuple[str, str], str] = {}


def _modules() -> list[Path]:
    return sorted(path for path in BENCH.rglob("*.py"))


def _name(path: Path) -> str:
    relative = path.relative_to(ROOT).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _module_offenders() -> dict[str, int]:
    found = {}
    for path in _modules():
        lines = path.read_text(encoding="utf-8").count("\n")
        if lines > LIMIT_MODULE_LINES:
            found[str(path.relative_to(ROOT))] = lines
    return found


def _function_offenders() -> dict[str, int]:
    found = {}
    for path in _modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1  # type: ignore[operator]
                if length > LIMIT_FUNCTION_LINES:
                    found[f"{path.relative_to(ROOT)}:{node.name}"] = length
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(path: Path, known: set[str]) -> set[str]:
    """bench modules `path` imports, at module level or inside functions (not for type checking)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = _name(path) if path.name == "__init__.py" else _name(path).rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in known)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]
                                + ([node.module] if node.module else []))
            for alias in node.names:
                target = f"{base}.{alias.name}"
                found.add(target if target in known else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    # The root package holds only __version__ and the Python API's lazy re-exports: importing
    # __version__ from it is not an import of the pipeline.
    return {name for name in found if name in known and name not in (_name(path), "bench")}


def import_circles() -> list[list[str]]:
    """Strongly connected groups of bench modules (Tarjan): each is an import circle."""
    known = {_name(path) for path in _modules()}
    graph = {_name(path): _imports(path, known) for path in _modules()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                circles.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return circles


def _architecture_section() -> str:
    start = ARCHITECTURE.index("## Architecture")
    end = ARCHITECTURE.find("\n## ", start + 3)
    return ARCHITECTURE[start:] if end == -1 else ARCHITECTURE[start:end]


def test_no_module_imports_itself_in_a_circle() -> None:
    # Lazy imports inside functions count: a circle deferred to call time is still a circle.
    assert [group for group in import_circles() if tuple(group) not in ALLOWED_CIRCLES] == []


def test_the_architecture_map_names_every_package_and_stage_module() -> None:
    section = _architecture_section()
    named_paths = set(re.findall(r"`(bench/[\w/.]+)`", section))
    shorthand = set(re.findall(r"`(\w+\.py)`", section))
    missing = [str(path.relative_to(ROOT)) for path in _modules()
               if path.name != "__init__.py" and path.parent in (BENCH, BENCH / "run", BENCH / "analysis", BENCH / "outputs")
               and path.name != "__main__.py"
               and str(path.relative_to(ROOT)) not in named_paths and path.name not in shorthand]
    packages = [f"bench/{p.name}/" for p in BENCH.iterdir() if (p / "__init__.py").exists()]
    missing += [package for package in packages if package not in named_paths]
    assert missing == []
    stale = [path for path in named_paths if not (ROOT / path).exists()]
    assert stale == []


def test_modules_over_the_limit_have_a_written_reason() -> None:
    offenders = _module_offenders()
    unexplained = sorted(set(offenders) - set(MODULE_REASONS))
    assert unexplained == [], f"over {LIMIT_MODULE_LINES} lines: split, or give a reason in MODULE_REASONS"
    assert sorted(set(MODULE_REASONS) - set(offenders)) == [], "under the limit now: drop from MODULE_REASONS"


def test_functions_over_the_limit_have_a_written_reason() -> None:
    offenders = _function_offenders()
    unexplained = sorted(set(offenders) - set(FUNCTION_REASONS))
    assert unexplained == [], f"over {LIMIT_FUNCTION_LINES} lines: split, or give a reason in FUNCTION_REASONS"
    assert sorted(set(FUNCTION_REASONS) - set(offenders)) == [], "under the limit now: drop from FUNCTION_REASONS"


if __name__ == "__main__":
    for name, lines in sorted(_module_offenders().items(), key=lambda item: -item[1]):
        print(f"module   {lines:5d}  {name}: {MODULE_REASONS.get(name, 'NO REASON')}")
    for name, lines in sorted(_function_offenders().items(), key=lambda item: -item[1]):
        print(f"function {lines:5d}  {name}: {FUNCTION_REASONS.get(name, 'NO REASON')}")
    for circle in import_circles():
        print("circle  ", " -> ".join(circle))
