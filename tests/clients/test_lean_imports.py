"""The clients and the load engine stay light: a `bench perf` worker or a `bench run --workers`
process imports them, and pandas + pyarrow would cost each of those processes about a second."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("pandas", "pyarrow", "scipy", "matplotlib")


def _heavy_after(statement: str) -> list[str]:
    code = f"import json, sys; {statement}; print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_importing_the_clients_imports_no_pandas_or_pyarrow() -> None:
    assert _heavy_after("import bench.clients") == []


def test_a_request_record_is_written_without_pandas_or_pyarrow() -> None:
    statement = ("from bench.records import RequestRecord; "
                 "RequestRecord(cell_id='c', request_index=0, surface='native', endpoint='chat', "
                 "model='m').to_json_line()")
    assert _heavy_after(statement) == []
