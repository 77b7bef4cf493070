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
    "bench/analysis/server_studies.py": "keep_alive and queue studies share the per-request timeline builder",
    "bench/analysis/metrics.py": "per-request and per-cell metrics plus their definitions text (docs/metrics.md)",
    "bench/clients/transport.py": "one HTTP/1.1 transport (pool, connection, parser callbacks) kept "
                                  "together on purpose: the hot path, measured by bench perf",
    "bench/sim/scheduler.py": "the simulator's scheduler mirrors Ollama's server/sched.go",
    "bench/sim/native.py": "the simulator's native routes mirror Ollama's server/routes.go",
}
FUNCTION_REASONS = {
    "bench/sim/config.py:build_config": "one flag or variable per line, in Ollama's envconfig order",
    "bench/clients/native.py:_read_stream": "the NDJSON hot loop: one function keeps per-line cost down",
    "bench/sim/openai_api.py:completions": "mirrors Ollama's openai middleware, branch by branch",
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


# Folders whose every module the map names (the stages; the others are named as packages).
STAGE_FOLDERS = tuple(BENCH / name for name in ("", "run", "analysis", "outputs", "load", "workload", "records"))


# The stages of docs/architecture.md's map, lowest first: a module imports from its own stage or
# those before it, never after ("a climb back up"). `bench.sim` and `bench.engine` stand apart: a
# server shares no code with the client side, and only the commands may start one in-process.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("helpers", ("bench.errors", "bench.numbers", "bench.escape", "bench.secrets", "bench.endpoints",
                 "bench.processes", "bench.inputs")),
    ("scenario", ("bench.scenario",)),
    # The request a client is asked to send and the record it gives back: the contract between
    # the workload (which makes requests and reads replies) and the load stage (which fills records);
    # and a cell's settings, made by the plan and stored by the records stage.
    ("request", ("bench.clients.base", "bench.records.record", "bench.records.cell_settings")),
    ("plan", ("bench.plan", "bench.workload")),
    ("load", ("bench.clients", "bench.load")),
    ("records", ("bench.records", "bench.telemetry")),
    ("analysis", ("bench.analysis",)),
    ("outputs", ("bench.outputs",)),
    ("report", ("bench.report",)),
    ("orchestration", ("bench.run", "bench.perf", "bench.ollama", "bench.conformance")),
    ("api", ("bench.api",)),
    ("commands", ("bench.cli", "bench.__main__", "bench")),
]
APART = ("bench.sim", "bench.engine")
# Modules of the helpers stage the servers apart may use too (they are not client code; numbers
# holds the one ceiling for every duration, the simulator's fault stall included).
APART_MAY_USE = ("bench.errors", "bench.processes", "bench.inputs", "bench.numbers")
# Who may import a server apart: the commands that serve one; the real Ollama target, which
# imports models made by the engine's GGUF maker and finds llama-server the way the engine does;
# and `bench conformance`, which holds the simulator beside the real Ollama and reads its state.
APART_USERS = ("bench.cli", "bench.ollama", "bench.conformance")

# Imports against the stage order allowed for now, with why. Empty is the goal.
ALLOWED_CLIMBS: dict[tuple[str, str], str] = {}


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def stage_rank(name: str) -> int | None:
    """The index of the module's stage in LAYERS (the longest matching prefix), None when apart."""
    if _within(name, APART):
        return None
    matches = [(len(prefix), rank) for rank, (_, prefixes) in enumerate(LAYERS)
               for prefix in prefixes if _within(name, (prefix,))]
    assert matches, f"{name}: in no stage of LAYERS"
    return max(matches)[1]


def climbs(allowed: dict[tuple[str, str], str] = ALLOWED_CLIMBS) -> list[str]:
    """Every import that goes against the stage order, or into or out of the servers apart."""
    known = {_name(path) for path in _modules()}
    found = []
    for path in _modules():
        importer = _name(path)
        for imported in sorted(_imports(path, known)):
            if (importer, imported) in allowed:
                continue
            low, high = stage_rank(importer), stage_rank(imported)
            if low is None:
                wrong = high is not None and not _within(imported, APART_MAY_USE)
            elif high is None:
                wrong = not _within(importer, APART_USERS)
            else:
                wrong = high > low
            if wrong:
                found.append(f"{importer} -> {imported}")
    return found


def _architecture_section() -> str:
    start = ARCHITECTURE.index("## Architecture")
    end = ARCHITECTURE.find("\n## ", start + 3)
    return ARCHITECTURE[start:] if end == -1 else ARCHITECTURE[start:end]


def test_no_module_imports_itself_in_a_circle() -> None:
    # Lazy imports inside functions count: a circle deferred to call time is still a circle.
    assert [group for group in import_circles() if tuple(group) not in ALLOWED_CIRCLES] == []


# Leaf names more than one module carries, and why that is one idea, not two. Any other shared leaf
# name fails: rename one of the modules so each name says one thing.
SHARED_LEAF_NAMES: dict[str, str] = {
    "conversations.py": "multi-turn conversations at each stage: made (workload), per-turn figures (analysis), drawn (report)",
    "statistics.py": "the latency statistics table: in the terminal (outputs) and in the report",
    "sweep.py": "the saturation sweep at each stage: rates set while it runs (run), its answer (analysis), "
                "printed and stored (outputs), drawn (report)",
    "native.py": "Ollama's native API: spoken by the client (clients) and served by the simulator (sim)",
    "memory.py": "a load's memory: modelled by the simulator (sim) and drawn from measurements (report)",
    "testing.py": "test fixtures that start a server: the simulator (sim) and the real Ollama (ollama)",
    "workers.py": "client processes on one clock: a cell's load (load) and bench perf's streams (perf)",
    # bench/conformance (the sim-versus-Ollama probes, helper h22b) names its steps after the run's; its
    # owner renames them with the next change there.
    "checks.py": "pre-run checks (run) and conformance checks (conformance): pending a rename",
    "compare.py": "gate statistics (analysis) and the sim-versus-Ollama comparison (conformance): pending a rename",
    "targets.py": "the run's servers (run) and the two conformance sides (conformance): pending a rename",
}


def shared_leaf_names() -> dict[str, list[str]]:
    by_name: dict[str, list[str]] = {}
    for path in _modules():
        if path.name not in ("__init__.py", "__main__.py"):
            by_name.setdefault(path.name, []).append(str(path.relative_to(ROOT)))
    return {name: paths for name, paths in by_name.items() if len(paths) > 1}


def test_a_leaf_name_shared_by_two_modules_names_one_idea() -> None:
    shared = shared_leaf_names()
    assert sorted(set(shared) - set(SHARED_LEAF_NAMES)) == [], "rename, or say in SHARED_LEAF_NAMES why it is one idea"
    assert sorted(set(SHARED_LEAF_NAMES) - set(shared)) == [], "no longer shared: drop from SHARED_LEAF_NAMES"


# The root of bench/ keeps what has no stage; everything else lives in its stage's folder.
ROOT_MODULES_MAX = 8


def test_the_root_keeps_only_what_has_no_stage() -> None:
    root = sorted(path.name for path in BENCH.glob("*.py") if path.name not in ("__init__.py", "__main__.py"))
    assert len(root) <= ROOT_MODULES_MAX, root


def test_no_module_imports_from_a_later_stage() -> None:
    assert climbs() == []
    still = set(climbs(allowed={}))
    assert sorted(f"{a} -> {b}" for a, b in ALLOWED_CLIMBS if f"{a} -> {b}" not in still) == [], \
        "no longer a climb: drop from ALLOWED_CLIMBS"


def test_a_climb_back_up_is_caught() -> None:
    assert stage_rank("bench.load.cell") < stage_rank("bench.report.page")  # type: ignore[operator]
    assert stage_rank("bench.sim.app") is None and stage_rank("bench.run.runner") is not None


def test_the_architecture_map_names_every_package_and_stage_module() -> None:
    section = _architecture_section()
    named_paths = set(re.findall(r"`(bench/[\w/.]+)`", section))
    shorthand = set(re.findall(r"`(\w+\.py)`", section))
    missing = [str(path.relative_to(ROOT)) for path in _modules()
               if path.name != "__init__.py" and path.parent in STAGE_FOLDERS
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
    for climb in climbs():
        print("climb   ", climb)
