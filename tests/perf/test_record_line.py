"""A record's JSON line holds every field, in declaration order, with the values as written."""

from __future__ import annotations

import dataclasses

import orjson

from bench.records import RECORD_FIELDS, RequestRecord


def test_json_line_is_the_record_field_by_field() -> None:
    record = RequestRecord(cell_id="c1", request_index=7, surface="openai", endpoint="chat",
                           model="llama3.2:1b", repeat=2, phase="warmup", worker=3,
                           sent_s=0.25, first_token_s=0.5, chunk_times_s=[0.5, 0.75, 1.0],
                           status=200, done_reason="length", output_tokens=3,
                           eval_duration_ns=2_000_000_000_000, output_text="héllo ✓")
    line = record.to_json_line()
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    parsed = orjson.loads(line)
    assert tuple(parsed) == RECORD_FIELDS
    assert parsed == dataclasses.asdict(record)
    assert line == orjson.dumps(dataclasses.asdict(record)) + b"\n"
