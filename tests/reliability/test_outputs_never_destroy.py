"""Outputs never destroy what they land on: devices, FIFOs, directories, a command's own inputs,
a run's records and a user's directory are refused with one line before any work (issue 26, class 1)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from bench.records.atomic import check_output_file, write_text_atomically
from bench.cli import cli
from bench.errors import UsageError
from reliability.support import bench, write_scenario

QUICK = """\
# a user's comment, lost when bench rewrites this file
name: outputs
target: sim
sim: {speed: 50}
workload: {model: llama3.2:1b, max_tokens: 8, prompt: {tokens: 16, calibrate: false}}
load: {concurrency: 2, requests: 4, warmup_requests: 0}
"""


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("outputs")
    out = root / "run"
    result = bench("run", str(write_scenario(root, QUICK)), "--out", str(out), "--no-report")
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def _invoke(*args: str):  # noqa: ANN202 - click's Result
    return CliRunner().invoke(cli, list(args), env={"BENCH_DEBUG": ""})


def _one_error_line(output: str, fragment: str) -> None:
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and fragment in errors[0], output
    assert "Traceback" not in output


def _fifo(tmp_path: Path) -> Path:
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return path


def _device(tmp_path: Path, minor: int) -> Path:
    """A character device node like /dev/null (1, 3) or /dev/full (1, 7), made in tmp_path: the
    test never points bench at the machine's own /dev/null (a bench that still renamed over it
    would break the machine for every other process)."""
    path = tmp_path / f"dev-1-{minor}"
    try:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, minor))
    except PermissionError:
        pytest.skip("making a device node needs root (CAP_MKNOD), as in CI containers")
    return path


@pytest.mark.parametrize("minor", [3, 7], ids=["null", "full"])
@pytest.mark.parametrize("command", ["junit", "markdown", "report", "baseline"])
def test_a_character_device_is_never_replaced(finished_run: Path, tmp_path: Path, minor: int,
                                              command: str) -> None:
    device = str(_device(tmp_path, minor))
    args = {"junit": ["compare", str(finished_run), str(finished_run), "--junit", device],
            "markdown": ["compare", str(finished_run), str(finished_run), "--markdown", device],
            "report": ["report", str(finished_run), "-o", device],
            "baseline": ["baseline", "save", str(finished_run), device]}[command]
    result = _invoke(*args)
    assert result.exit_code == 2, result.output
    _one_error_line(result.output, "character device")
    assert stat.S_ISCHR(os.stat(device).st_mode)
    # Refused before the comparison: no table was printed first.
    assert len(result.output.splitlines()) == 1, result.output


def test_a_fifo_is_neither_replaced_nor_opened(finished_run: Path, tmp_path: Path) -> None:
    fifo = _fifo(tmp_path)
    for args in (["report", str(finished_run), "-o", str(fifo)],
                 ["compare", str(finished_run), str(finished_run), "--junit", str(fifo)],
                 ["gguf", "make", str(fifo)]):
        result = _invoke(*args)
        assert result.exit_code == 2, (args, result.output)
        _one_error_line(result.output, "a FIFO")
        assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_a_symlink_to_a_device_is_refused(tmp_path: Path) -> None:
    link = tmp_path / "looks-like-a-file.xml"
    link.symlink_to(_device(tmp_path, 3))
    with pytest.raises(UsageError, match="character device"):
        check_output_file(link, "--junit")
    with pytest.raises(UsageError, match="character device"):
        write_text_atomically(link, "<x/>")  # the writer refuses too, whoever calls it
    assert stat.S_ISCHR(os.stat(link).st_mode)


@pytest.mark.parametrize("record", ["requests.jsonl", "manifest.json", "scenario.yaml", "requests.parquet",
                                    "summary.csv", "server-0.log"])
def test_a_report_never_replaces_the_runs_records(finished_run: Path, record: str) -> None:
    before = (finished_run / record).read_bytes()
    result = _invoke("report", str(finished_run), "-o", str(finished_run / record))
    assert result.exit_code == 2, result.output
    _one_error_line(result.output, "a record of the run")
    assert (finished_run / record).read_bytes() == before


def test_compare_never_overwrites_its_own_inputs(finished_run: Path, tmp_path: Path) -> None:
    baseline = tmp_path / "bl.json"
    assert _invoke("baseline", "save", str(finished_run), str(baseline)).exit_code == 0
    before = baseline.read_bytes()
    for option in ("--markdown", "--junit"):
        result = _invoke("compare", str(baseline), str(finished_run), option, str(baseline))
        assert result.exit_code == 2, result.output
        _one_error_line(result.output, "an input of this command")
        assert baseline.read_bytes() == before
    result = _invoke("compare", str(baseline), str(finished_run), "--junit", str(finished_run))
    assert result.exit_code == 2 and (finished_run / "manifest.json").is_file(), result.output


def test_a_reports_own_previous_page_is_replaced(finished_run: Path) -> None:
    for _ in range(2):
        result = _invoke("report", str(finished_run), "-o", str(finished_run / "report.html"))
        assert result.exit_code == 0, result.output


@pytest.mark.parametrize("out", [".", ""])
def test_out_over_a_users_directory_is_refused_and_rewrites_nothing(tmp_path: Path, out: str) -> None:
    scenario = write_scenario(tmp_path, QUICK, name="scenario.yaml")
    (tmp_path / "requests.jsonl").write_text('{"mine": true}\n')
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        result = _invoke("run", str(scenario), "--out", out, "--no-report")
    finally:
        os.chdir(cwd)
    assert result.exit_code == 2, result.output
    _one_error_line(result.output, "not a bench run")
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == before


def test_an_empty_out_directory_is_used(tmp_path: Path) -> None:
    out = tmp_path / "empty"
    out.mkdir()
    result = bench("run", str(write_scenario(tmp_path, QUICK)), "--out", str(out), "--no-report")
    assert result.returncode == 0, result.stderr
    assert (out / "manifest.json").is_file()


def test_perf_refuses_an_unwritable_out_before_measuring() -> None:
    result = bench("perf", "--quick", "--out", "/proc/1/nope", timeout_s=60)
    assert result.returncode == 2, result.stdout + result.stderr
    _one_error_line(result.stderr, "--out /proc/1/nope")
    assert "…" not in result.stdout  # no measurement step started


def test_baseline_save_replaces_its_own_baseline_even_inside_the_run(finished_run: Path, tmp_path: Path) -> None:
    # Before, the second save into the run directory was refused as "a record of the run".
    for target in (finished_run / "baseline.json", tmp_path / "elsewhere.json"):
        for _ in range(2):
            result = _invoke("baseline", "save", str(finished_run), str(target))
            assert result.exit_code == 0, result.output
        assert target.read_text().lstrip().startswith('{\n "format": "bench-baseline"')
        assert _invoke("compare", str(target), str(finished_run)).exit_code == 0


@pytest.mark.parametrize("victim", ["run-summary", "run-manifest", "users-scenario", "users-json"])
def test_baseline_save_refuses_any_file_that_is_not_a_baseline(finished_run: Path, tmp_path: Path,
                                                               victim: str) -> None:
    path = {"run-summary": finished_run / "summary.json", "run-manifest": finished_run / "manifest.json",
            "users-scenario": write_scenario(tmp_path, QUICK, name="scenario.yaml"),
            "users-json": tmp_path / "notes.json"}[victim]
    if victim == "users-json":
        path.write_text('{"format": "mine", "note": "bench-baseline"}\n')
    before = path.read_bytes()
    result = _invoke("baseline", "save", str(finished_run), str(path))
    assert result.exit_code == 2, result.output
    _one_error_line(result.output, "a record of the run" if victim.startswith("run-") else "not a bench baseline")
    assert path.read_bytes() == before


@pytest.mark.parametrize("option", ["report -o", "--junit", "--markdown"])
def test_a_page_or_table_replaces_only_its_own_earlier_output(finished_run: Path, tmp_path: Path,
                                                              option: str) -> None:
    def write(path: Path):  # noqa: ANN202 - click's Result
        if option == "report -o":
            return _invoke("report", str(finished_run), "-o", str(path))
        return _invoke("compare", str(finished_run), str(finished_run), option, str(path))

    users = tmp_path / "thesis.txt"
    users.write_text("three years of work\n")
    result = write(users)
    assert result.exit_code == 2, result.output
    _one_error_line(result.output, "it exists and is not a bench")
    assert users.read_text() == "three years of work\n"
    own, empty = tmp_path / "out.file", tmp_path / "empty.file"
    empty.touch()  # nothing to lose: mktemp's file is taken
    for path in (own, own, empty):
        assert write(path).exit_code == 0, path
    assert own.read_bytes() == empty.read_bytes() or option == "report -o"
