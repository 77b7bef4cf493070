"""The per-request record, the run directory layout, and loading a run back as DataFrames.

A run directory (results/<run-id>/ or --out DIR) holds:

    manifest.json        scenario as resolved, environment, target version, models, cells, status
    scenario.yaml        the scenario with the command line's settings in it (reruns the run)
    requests.jsonl       one RequestRecord per line, appended and flushed as each request ends
    requests.parquet     the same records, written at the end of the run (or by load_run on demand)
    summary.csv/.json    one row per cell (bench.analysis.metrics.cell_summary)
    gpu.parquet          NVML timeline (bench.telemetry.nvml), absent without a GPU
    ps.parquet           /api/ps timeline (bench.telemetry.ollama_ps)
    proc.parquet         RSS of the managed server's process tree (bench.telemetry.process_memory)
    server-<n>.log       logs of managed servers (bench.run.managed_server)
    recommendation.json  bench recommend's verdict, when computed
    kv.json              KV-cache analysis, when the run varied num_ctx / NUM_PARALLEL / cache type
    report.html          bench report's page

Every time in a record is in seconds on the monotonic clock, relative to the run's t0
(manifest `t0_epoch_s` maps it to wall time). Telemetry timelines use the same t0, so plots align.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import math
import os
import types
import typing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

import orjson

from bench.errors import RunDirError
from bench.records.manifest import Manifest
# The record model, re-exported for the later stages (`X as X`: an explicit re-export for mypy).
from bench.records.record import ERROR_CLASSES as ERROR_CLASSES
from bench.records.record import RECORD_FIELDS as RECORD_FIELDS
from bench.records.record import Endpoint as Endpoint
from bench.records.record import Phase as Phase
from bench.records.record import RequestRecord as RequestRecord
from bench.records.record import Surface as Surface
from bench.secrets import has_secrets, redact

MANIFEST_FILE = "manifest.json"
SCENARIO_YAML = "scenario.yaml"
REQUESTS_JSONL = "requests.jsonl"
REQUESTS_PARQUET = "requests.parquet"
SUMMARY_CSV = "summary.csv"
SUMMARY_JSON = "summary.json"
GPU_PARQUET = "gpu.parquet"
PS_PARQUET = "ps.parquet"
PROC_PARQUET = "proc.parquet"
RECOMMENDATION_JSON = "recommendation.json"
KV_JSON = "kv.json"
REPORT_HTML = "report.html"

class RecordWriter:
    """Appends records to requests.jsonl, flushed per record so a crash keeps what was measured."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / REQUESTS_JSONL
        self._file: IO[bytes] = open(self.path, "ab", buffering=0)  # noqa: SIM115

    def append(self, record: RequestRecord) -> None:
        line = record.to_json_line()
        if has_secrets():
            # A server or library may quote the key back (headers in an error, an echo in any
            # field, changed in case or cut): never store it. Keys are visible ASCII, which JSON
            # leaves as it is, so the encoded line is redacted as text.
            line = redact(line.decode("utf-8")).encode("utf-8")
        if self._file.closed:
            # A write failed (disk full): the run is ending with that error, named once; the
            # requests still finishing have nowhere to go and must not each raise again.
            return
        try:
            # One write() per record on an unbuffered file: each line reaches the OS whole.
            self._file.write(line)
        except OSError as error:
            self._file.close()
            # write() names no file: say which one, so the one-line error does (ENOSPC, EFBIG).
            raise OSError(error.errno, error.strerror, str(self.path)) from None

    def close(self) -> None:
        if not self._file.closed:
            os.fsync(self._file.fileno())
            self._file.close()

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# Lines per batch (and parquet row group) when converting requests.jsonl: 20k parsed records
# are ~60 MiB of Python objects (32 chunk times each); smaller batches save little more.
PARQUET_BATCH_LINES = 20_000


if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

# pandas and pyarrow are imported where a frame or a table is made, not here: the clients and
# the load engine import this module for RequestRecord alone, and every `bench perf` worker and
# `bench run --workers` process would pay ~1 s for them (tests/cli/test_startup.py checks).


def _arrow_type(annotation: Any) -> pa.DataType:
    """The parquet column type of a RequestRecord field (None is a null value, not a type)."""
    import pyarrow as pa

    if isinstance(annotation, types.UnionType):
        (annotation,) = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
    if typing.get_origin(annotation) is Literal or annotation is str:
        return pa.string()
    if typing.get_origin(annotation) is list:
        return pa.list_(_arrow_type(typing.get_args(annotation)[0]))
    return {int: pa.int64(), float: pa.float64()}[annotation]


@functools.cache
def requests_schema() -> pa.Schema:
    """The parquet schema of requests.parquet: one column per RequestRecord field.

    Explicit, because a batch types a column by what it holds: error_message is all null in a
    batch without errors and a string in the next, and one file needs one schema.
    """
    import pyarrow as pa

    hints = typing.get_type_hints(RequestRecord)
    return pa.schema([(name, _arrow_type(hint)) for name, hint in hints.items()])


def __getattr__(name: str) -> Any:
    if name == "REQUESTS_SCHEMA":  # the schema under its old constant name, built on first use
        return requests_schema()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

_INT64_MAX = 2**63 - 1


def _jsonl_rows(path: Path) -> Iterator[dict[str, Any]]:
    """The parsed lines of a JSONL file, skipping a torn line (a run killed mid-write) and any
    line that is JSON but not a record (an object)."""
    if not path.exists():
        return
    from bench.inputs import open_input

    with open_input(path, RunDirError, "records file") as lines:
        for raw_line in lines:
            try:
                row = orjson.loads(raw_line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(row, dict):
                yield row


_MAX_RECORD_TIME_S = 1e9  # 31 years: past any run


def _fits(arrow_type: pa.DataType, value: Any) -> bool:
    import pyarrow as pa

    if isinstance(value, bool):
        return False
    if pa.types.is_integer(arrow_type):
        return isinstance(value, int) and -_INT64_MAX - 1 <= value <= _INT64_MAX
    if pa.types.is_floating(arrow_type):
        # Every float of a record is a time in seconds from the run's start: 1e308 (a hand-edited
        # or foreign file) overflowed numpy's sums and ended `bench report` with exit 70.
        return isinstance(value, (int, float)) and math.isfinite(value) and abs(value) <= _MAX_RECORD_TIME_S
    if pa.types.is_string(arrow_type):
        return isinstance(value, str)
    if pa.types.is_list(arrow_type):
        return isinstance(value, list) and all(_fits(arrow_type.value_type, item) for item in value)
    return True


@functools.cache
def _field_types() -> dict[str, pa.DataType]:
    return {schema_field.name: schema_field.type for schema_field in requests_schema()}


def _with_sane_types(row: dict[str, Any]) -> dict[str, Any]:
    """The row with every value of the wrong type (a hand-edited or foreign file, a server count
    past int64) set to missing: one bad field must not make the whole run unreadable."""
    for name, value in row.items():
        arrow_type = _field_types().get(name)
        if arrow_type is not None and value is not None and not _fits(arrow_type, value):
            row[name] = None
    return row


def _records_table(rows: list[dict[str, Any]]) -> pa.Table:
    import pyarrow as pa

    try:
        return pa.Table.from_pylist(rows, schema=requests_schema())
    except (OverflowError, TypeError, ValueError, pa.ArrowException):
        return pa.Table.from_pylist([_with_sane_types(row) for row in rows], schema=requests_schema())


def read_records_jsonl(path: Path) -> pd.DataFrame:
    """Read requests.jsonl, skipping a torn last line (a run killed mid-write)."""
    import pandas as pd

    rows = [_with_sane_types(row) for row in _jsonl_rows(path)]
    frame = pd.DataFrame(rows, columns=list(RECORD_FIELDS)) if not rows else pd.DataFrame(rows)
    for name in RECORD_FIELDS:
        if name not in frame.columns:
            frame[name] = None
    return frame


def missing_as_none(value: Any) -> Any:
    """A stored value with pandas' missing marker (NaN) as None, for JSON and for `is None` tests."""
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def number_or_none(value: Any) -> float | None:
    """A stored value as a float; None when it is missing (None, NaN) or not a number."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def write_json(path: Path, payload: Any) -> None:
    """Write JSON atomically (temp file + rename) so a reader never sees half a file."""
    from bench.records.atomic import write_atomically

    encoded = orjson.dumps(payload, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY, default=str)
    if has_secrets():  # failure reasons, notes: text that may quote an error message
        encoded = redact(encoded.decode("utf-8")).encode("utf-8")
    # A full disk is one line naming `path` (write() names no file), the temporary removed.
    write_atomically(path, lambda temp_path: temp_path.write_bytes(encoded))


def read_json(path: Path) -> Any:
    from bench.inputs import MAX_JSON_BYTES, read_input_bytes

    if not path.exists() and not path.is_symlink():
        raise RunDirError(f"{path}: not found")
    data = read_input_bytes(path, MAX_JSON_BYTES, RunDirError, "JSON file")
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:
        raise RunDirError(f"{path}: not valid JSON ({error})") from error


def read_manifest(path: Path) -> Manifest:
    """manifest.json parsed once; RunDirError naming the first bad field."""
    from pydantic import ValidationError

    payload = read_json(path)
    try:
        return Manifest.model_validate(payload)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise RunDirError(f"{path}: {where}: {first['msg']}") from None


def write_requests_parquet(run_dir: Path, columns: Sequence[str] | None = None,
                           phase: Phase | None = None) -> pd.DataFrame:
    """Convert requests.jsonl to requests.parquet, a batch of lines at a time; returns the records.

    The frame returned holds only `columns` (default all) of the `phase` rows (default all):
    ask for what you need, since a long run's records in full are hundreds of MiB in pandas.
    Torn lines are skipped as `read_records_jsonl` skips them. The file is written beside and
    renamed into place, so `load_run` never prefers a half-written parquet.
    """
    run_dir = Path(run_dir)
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bench.records.atomic import write_atomically

    kept = [_rows_and_columns(requests_schema().empty_table(), columns, phase)]

    def write(temp_path: Path) -> None:
        with pq.ParquetWriter(temp_path, requests_schema()) as writer:
            lines = _jsonl_rows(run_dir / REQUESTS_JSONL)
            while rows := list(itertools.islice(lines, PARQUET_BATCH_LINES)):
                table = _records_table(rows)
                del rows  # else the next batch is parsed while this one is still held
                writer.write_table(table)
                kept.append(_rows_and_columns(table, columns, phase))

    # A full disk is one line naming requests.parquet, the temporary removed, requests.jsonl intact.
    write_atomically(run_dir / REQUESTS_PARQUET, write)
    return pa.concat_tables(kept).to_pandas()


def _rows_and_columns(table: pa.Table, columns: Sequence[str] | None, phase: Phase | None) -> pa.Table:
    import pyarrow.compute as pc

    if phase is not None:
        table = table.filter(pc.equal(table["phase"], phase))  # a null phase is not `phase`
    return table.select(list(columns)) if columns is not None else table


@dataclass
class Run:
    """A run directory loaded back: everything the analysis and the report need."""

    path: Path
    manifest: Manifest  # a dict is parsed (tests and tools build runs by hand)
    requests: pd.DataFrame  # one row per RequestRecord
    cells: pd.DataFrame  # one row per cell: cell_id, cell_index, and one column per setting
    gpu: pd.DataFrame | None = None
    ps: pd.DataFrame | None = None
    proc: pd.DataFrame | None = None  # process-memory timeline (managed servers on Linux)
    extras: dict[str, Any] = field(default_factory=dict)  # recommendation.json, kv.json, ...
    summary: pd.DataFrame | None = None  # summary.csv, when the run wrote one (bench.load_run)

    @property
    def status(self) -> str:
        """complete, partial, failed, or running (a run still going or killed)."""
        return self.manifest.status

    def __post_init__(self) -> None:
        if isinstance(self.manifest, dict):
            self.manifest = Manifest.model_validate(self.manifest)


def load_run(path: str | Path) -> Run:
    """Load a run directory; works on a partial run (killed, interrupted) as long as it has a manifest."""
    run_dir = Path(path)
    if not run_dir.is_dir():
        raise RunDirError(f"{run_dir}: not a run directory")
    manifest = read_manifest(run_dir / MANIFEST_FILE)
    jsonl_path = run_dir / REQUESTS_JSONL
    parquet_path = run_dir / REQUESTS_PARQUET
    # The JSONL is the source of truth; the parquet is a cache written at the end of a run.
    requests = None
    if parquet_path.exists() and (
        not jsonl_path.exists() or parquet_path.stat().st_mtime >= jsonl_path.stat().st_mtime
    ):
        requests = _read_parquet(parquet_path, required=not jsonl_path.exists())
    if requests is None:
        requests = read_records_jsonl(jsonl_path)
    import pandas as pd

    cells = cells_frame(manifest)
    # A timeline cut by a kill is left out (the report says what it lacks), not a crash.
    gpu = _read_parquet(run_dir / GPU_PARQUET)
    ps = _read_parquet(run_dir / PS_PARQUET)
    proc = _read_parquet(run_dir / PROC_PARQUET)
    extras = {
        name: read_json(run_dir / name)
        for name in (RECOMMENDATION_JSON, KV_JSON)
        if (run_dir / name).exists()
    }
    return Run(run_dir, manifest, requests, cells, gpu, ps, proc, extras)


def cells_frame(manifest: Manifest) -> pd.DataFrame:
    """The run's cells as a DataFrame, one row per cell (cell_id, cell_index, CellSettings.row()):
    a view for grouping and joining; typed values are the manifest cells' `settings`."""
    import pandas as pd

    return pd.DataFrame([{"cell_id": c.cell_id, "cell_index": c.cell_index, **c.settings.row()}
                         for c in manifest.cells])


def _read_parquet(path: Path, required: bool = False) -> pd.DataFrame | None:
    """A Parquet file, or None when absent or unreadable (RunDirError when `required`)."""
    if not path.exists():
        return None
    import pandas as pd
    import pyarrow as pa

    try:
        return pd.read_parquet(path)
    except (OSError, ValueError, pa.ArrowException) as error:
        if required:
            raise RunDirError(f"{path}: not a readable Parquet file ({error})") from None
        return None
