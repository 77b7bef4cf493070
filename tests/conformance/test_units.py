"""The comparison rules, the known-deviations file and the table, without any server."""

from __future__ import annotations

import pytest

from bench.conformance.checks import agree, approx, exact, record, shape_of
from bench.conformance.compare import DIFFERS, KNOWN, MATCH, RECORDED, compare, stale_known
from bench.conformance.known import KnownList, load_known, parse_known
from bench.conformance.probes_sched import expires_in_s, expiry_check
from bench.conformance.table import render
from bench.conformance.targets import launches_in_log
from bench.errors import UsageError


def test_shape_keeps_keys_and_json_types_not_values():
    assert shape_of({"b": 1.5, "a": [{"x": "s"}], "c": None, "d": True}) == {
        "a": [{"x": "string"}], "b": "number", "c": "null", "d": "bool"}
    assert shape_of({"n": 3}) == shape_of({"n": 3.25})  # Go writes 3.0 as 3


def test_approx_agrees_within_the_real_sides_tolerance_only():
    assert agree(approx(4, 1), approx(5, 1))
    assert not agree(approx(3, 1), approx(5, 1))
    assert agree(record(1), record(2))
    assert not agree(exact("a"), exact("b"))
    assert not agree(exact(1), None)


def test_difference_is_known_only_when_listed():
    known = parse_known("deviations:\n- {probe: p, field: 'size*', reason: 'a reason long enough'}\n", "k.yaml")
    rows = compare({"p": {"size MiB": exact(1), "other": exact(1), "t": record(5)}},
                   {"p": {"size MiB": exact(2), "other": exact(2), "t": record(9)}}, known)
    verdicts = {row.field: row.verdict for row in rows}
    assert verdicts == {"size MiB": KNOWN, "other": DIFFERS, "t": RECORDED}
    assert stale_known(rows, known) == []


def test_a_known_deviation_that_now_matches_is_reported_stale():
    known = parse_known("deviations:\n- {probe: p, field: f, reason: 'fixed since then, delete me'}\n", "k.yaml")
    rows = compare({"p": {"f": exact(1)}}, {"p": {"f": exact(1)}}, known)
    assert rows[0].verdict == MATCH
    assert stale_known(rows, known) == [{"probe": "p", "field": "f"}]


def test_a_field_only_one_side_saw_is_a_difference():
    rows = compare({"p": {"extra": exact(1)}}, {"p": {}}, KnownList("none", ()))
    assert [(row.field, row.verdict) for row in rows] == [("extra", DIFFERS)]


@pytest.mark.parametrize("text, fragment", [
    ("deviations: [{probe: p, field: f}]", "deviations.0.reason: Field required"),
    ("deviations: [{probe: p, field: f, reason: 'long enough reason', extra: 1}]", "deviations.0.extra"),
    ("deviations: [\n  {probe: p", "line"),
])
def test_a_bad_known_file_is_one_line_naming_the_field(text, fragment):
    with pytest.raises(UsageError) as caught:
        parse_known(text, "known.yaml")
    message = str(caught.value)
    assert message.startswith("known.yaml:") and fragment in message and "\n" not in message


def test_the_shipped_known_list_parses_and_every_entry_has_a_reason():
    known = load_known()
    assert all(len(entry.reason) >= 10 for entry in known.deviations)


def test_table_fits_80_columns_and_names_every_difference():
    long_value = exact({"error": "x" * 200})
    rows = compare({"a very long probe name": {"a field with a long name indeed": long_value}},
                   {"a very long probe name": {"a field with a long name indeed": exact("y" * 100)}},
                   KnownList("none", ()))
    lines = render(rows)
    assert max(len(line) for line in lines) <= 80
    assert any("DIFFERS" in line for line in lines)
    assert lines[-1].endswith("1 unexplained differences")


def test_launches_are_read_from_ollamas_log_line():
    log = ('time=2026-12-07T18:00:00Z level=INFO source=llama_server.go:433 msg="starting llama-server" '
           'cmd="/x/lib/ollama/llama-server --model /m/blobs/sha256-ab --port 4242 --host 127.0.0.1 -c 8192 -np 2 '
           '-b 1024 -ub 1024 --flash-attn auto"\n')
    [launch] = launches_in_log(log)
    assert (launch.ctx_total, launch.num_parallel, launch.num_batch) == (8192, 2, 1024)


def test_expiry_reads_go_nanosecond_timestamps_and_forever():
    assert expires_in_s("2318-08-05T00:00:00.123456789Z") > 100 * 365 * 86400
    assert expiry_check(10 * 365 * 86400 * 100.0).value == "forever"
    assert expiry_check(None).value == "not loaded"
    with pytest.raises(ValueError):
        expires_in_s("yesterday")
