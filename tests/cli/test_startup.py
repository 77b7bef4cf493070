"""`bench --help` and `bench --version` start fast: no heavy library is imported until a command needs it."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("pandas", "scipy", "matplotlib", "pyarrow", "numpy")

_PROBE = """
import json, sys
from click.testing import CliRunner
from bench.cli import cli
runner = CliRunner()
outputs = [runner.invoke(cli, args).exit_code for args in ({args})]
print(json.dumps({{"exit_codes": outputs, "heavy": sorted(m for m in {heavy} if m in sys.modules)}}))
"""


def _probe(arg_lists: list[list[str]]) -> dict:
    code = _PROBE.format(args=repr(arg_lists) + " or ()", heavy=repr(HEAVY))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_version_and_help_import_no_heavy_library():
    result = _probe([["--version"], ["--help"]])
    assert result["exit_codes"] == [0, 0]
    assert result["heavy"] == []


def test_every_command_help_imports_no_heavy_library():
    commands = ["run", "validate", "schema", "sim", "report", "compare", "recommend", "kv",
                "kv-analyze", "perf", "soak", "baseline", "conformance"]
    result = _probe([[command, "--help"] for command in commands])
    assert result["exit_codes"] == [0] * len(commands)
    assert result["heavy"] == []


def test_importing_the_cli_imports_no_heavy_library():
    done = subprocess.run([sys.executable, "-c", "import sys, bench.cli; print(sorted(m for m in "
                           f"{HEAVY!r} if m in sys.modules))"], capture_output=True, text=True,
                          timeout=120, check=True)
    assert done.stdout.strip() == "[]"




def test_the_simulator_process_imports_no_run_records():
    # `bench sim` starts once per managed server: the run records' pydantic models (bench.records,
    # ~0.4 s to build on a quiet 2-core box, ~1 s busy) are the client's, not the simulator's.
    done = subprocess.run([sys.executable, "-c", "import sys, bench.cli, bench.cli.sim_cmd, bench.sim.server; "
                           "print(sorted(m for m in sys.modules if m.startswith('bench.records') or m in "
                           f"{HEAVY!r}))"], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]"

def test_the_run_loop_imports_no_scipy():
    # scipy.stats takes ~1-3 s to import on a busy 2-core box, before the first request: only the
    # analyses that need it (intervals of 10+ samples, repeats, KV fits, stop rules) import it.
    done = subprocess.run([sys.executable, "-c", "import sys, bench.run.runner, bench.run.adaptive; "
                           "print(sorted(m for m in sys.modules if m.split('.')[0] == 'scipy'))"],
                          capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]"

def test_kv_cache_type_choices_match_the_calculator():
    from bench.cli.kv_cmd import CACHE_TYPES
    from bench.analysis.kv_formulas import CACHE_TYPES as KV_CACHE_TYPES

    assert CACHE_TYPES == KV_CACHE_TYPES


def test_help_lists_commands_in_the_order_a_user_needs_them():
    from click.testing import CliRunner

    from bench.cli import cli

    text = CliRunner().invoke(cli, ["--help"], terminal_width=80).output
    listed = [line.split()[0] for line in text.split("Commands:")[1].splitlines() if line.startswith("  ")]
    assert listed[:5] == ["run", "validate", "report", "recommend", "compare"]
    assert sorted(listed) == sorted(cli.commands)  # every command still listed
