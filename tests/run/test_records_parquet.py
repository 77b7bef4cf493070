"""requests.jsonl -> requests.parquet: batch by batch, the same rows as reading the JSONL whole."""

from __future__ import annotations

from pathlib import Path

import orjson
import pandas as pd
import pytest

from bench import records
from bench.records import (
    RECORD_FIELDS,
    REQUESTS_JSONL,
    REQUESTS_PARQUET,
    RequestRecord,
    read_records_jsonl,
    write_requests_parquet,
)


def _record(index: int, **values: object) -> RequestRecord:
    return RequestRecord(cell_id=f"c{index % 2}", request_index=index, surface="native",
                         endpoint="chat", model="m", sent_s=float(index), end_s=index + 0.5,
                         chunk_times_s=[index + 0.1, index + 0.2], **values)  # type: ignore[arg-type]


def test_parquet_holds_every_whole_line_across_batches_with_late_typed_columns(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Batches of 3: error_message and output_tokens are null in the whole first batch and set
    # later; the last line is torn (a run killed mid-write) and is skipped.
    monkeypatch.setattr(records, "PARQUET_BATCH_LINES", 3)
    lines = [_record(i).to_json_line() for i in range(4)]
    lines.append(_record(4, error_class="server_error", error_message="boom", status=500).to_json_line())
    lines.append(_record(5, output_tokens=7, phase="warmup").to_json_line())
    lines.append(_record(6).to_json_line()[:25])
    (tmp_path / REQUESTS_JSONL).write_bytes(b"".join(lines))

    returned = write_requests_parquet(tmp_path)
    stored = pd.read_parquet(tmp_path / REQUESTS_PARQUET)
    jsonl = read_records_jsonl(tmp_path / REQUESTS_JSONL)
    pd.testing.assert_frame_equal(returned, stored)
    assert len(stored) == len(jsonl) == 6 and list(stored.columns) == list(jsonl.columns)
    assert pd.isna(stored["error_message"][3]) and stored["error_message"][4] == "boom"
    assert stored["output_tokens"][5] == 7 and pd.isna(stored["output_tokens"][0])
    assert [list(times) for times in stored["chunk_times_s"]] == jsonl["chunk_times_s"].tolist()


def test_returns_only_the_rows_and_columns_asked_for(tmp_path: Path) -> None:
    lines = [_record(0, phase="warmup"), _record(1), _record(2)]
    (tmp_path / REQUESTS_JSONL).write_bytes(b"".join(r.to_json_line() for r in lines))
    measured = write_requests_parquet(tmp_path, ["cell_id", "sent_s"], phase="measure")
    assert list(measured.columns) == ["cell_id", "sent_s"] and measured["sent_s"].tolist() == [1.0, 2.0]
    assert len(pd.read_parquet(tmp_path / REQUESTS_PARQUET)) == 3  # the file keeps everything


def test_an_empty_run_gives_an_empty_parquet_with_every_column(tmp_path: Path) -> None:
    assert write_requests_parquet(tmp_path, ["cell_id"], phase="measure").empty
    frame = pd.read_parquet(tmp_path / REQUESTS_PARQUET)
    assert frame.empty and list(frame.columns) == list(RECORD_FIELDS)


def test_a_count_beyond_int64_is_stored_as_missing_not_a_failed_conversion(tmp_path: Path) -> None:
    line = orjson.loads(_record(0).to_json_line())
    line["output_tokens"] = 2**63  # a hostile or broken server's eval_count
    (tmp_path / REQUESTS_JSONL).write_bytes(orjson.dumps(line) + b"\n" + _record(1, output_tokens=3).to_json_line())
    frame = write_requests_parquet(tmp_path)
    assert pd.isna(frame["output_tokens"][0]) and frame["output_tokens"][1] == 3
