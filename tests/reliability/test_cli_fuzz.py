"""The CLI itself, fuzzed: generated flags, values and files for every documented command give a
result or one-line error, never a traceback (exit 70 is the funnel's "bug") and never a hang.

In-process (click's CliRunner) so a few hundred cases per command fit a 2-core CI. Nothing is
measured and nothing listens: the target's preflight, managed servers, the simulator's server
loop and the soak are replaced by stand-ins, so a case that gets past every check stops at once.
Each case is bounded by SIGALRM: a hang fails with the arguments that caused it.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.cli import cli
from bench.cli.funnel import EXIT_INTERNAL
from bench.errors import TargetError

# BENCH_CLI_FUZZ_CASES / _RANDOM=1 widen a local hunt; CI runs the same 200 cases every time.
CASES_PER_COMMAND = int(os.environ.get("BENCH_CLI_FUZZ_CASES", "200"))
CASE_LIMIT_S = 20  # far above any case's time on a loaded 2-core machine; a hang is minutes
SETTINGS = settings(max_examples=CASES_PER_COMMAND, deadline=None,
                    derandomize=os.environ.get("BENCH_CLI_FUZZ_RANDOM") != "1",
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                           HealthCheck.data_too_large])

NUMBERS = st.sampled_from(["0", "-1", "1", "3", "0.5", "1e400", "-1e400", "nan", "inf", "-inf",
                           "99999999999999999999999", "18446744073709551617", "1e-320", "", " ",
                           "0x10", "1_000", "٣", "1,2", "abc", "1,", ",", "2,nan", "4,0"])
TEXTS = st.one_of(st.text(max_size=20), st.sampled_from([
    "sim", "localhost:99999", "http://10.1.2.3:abc", "http://127.0.0.1:1:2", "[::1", "ftp://x",
    "ttft_p95=10%", "ttft_p95=fast", "ttft_p95=nan", "ttft_p95<500ms", "x<", "=", "A=B", "=1",
    "native/chat", "openai/chat,native/embed", "llama3.2:1b", "[/]", "\x1b[2J", "5m", "0s", "1e999h",
    "OLLAMA_NUM_PARALLEL=4", "OLLAMA_HOST=0.0.0.0:1", "h100", "24GiB", "-5GiB", "0.33.0", "reuse",
    # issue 26: forged lines, bidi, YAML 1.1 forms, limits no run can meet, a huge name
    "a\nerror: forged", "\u202eevil", "\x00\x07", "1:30", "0o10", "0b11", "ttft_p95=-5ms", "ttft_p95=0",
    "error_rate<200%", "x" * 5000,
]))


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Files and directories a careless user might name: missing, empty, binary, half a run."""
    root = tmp_path_factory.mktemp("cli-fuzz")
    made = {"missing": root / "missing.yaml", "dir": root / "a-dir", "empty": root / "empty",
            "binary": root / "binary", "under-file": root / "empty" / "x", "proc": Path("/proc/bench-x")}
    made["dir"].mkdir()
    made["empty"].write_bytes(b"")
    made["binary"].write_bytes(bytes(range(256)) * 4)
    gguf = root / "cut.gguf"
    gguf.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 1, 9) + struct.pack("<Q", 40) + b"general.")
    made["gguf"] = gguf
    for name, manifest in {"run-list": [1], "run-empty": {}, "run-cells": {"cells": 3},
                           "run-ok": {"status": "complete", "cells": [], "scenario": {}}}.items():
        run = root / name
        run.mkdir()
        (run / "manifest.json").write_text(json.dumps(manifest))
        (run / "requests.jsonl").write_text('{"cell_id": 1}\n[2]\n{"phase": "measure", "ttft_s": "x"}\n')
        made[name] = run
    scenario = root / "ok.yaml"
    scenario.write_text("target: sim\nworkload: {model: m}\nload: {concurrency: 1, requests: 1}\n")
    made["scenario"] = scenario
    _issue_26_files(root, made)
    _second_pass_files(root, made)
    return made


def _second_pass_files(root: Path, made: dict[str, Path]) -> None:
    """Issue 26's second pass: a FIFO (opening it blocks), a device node made here (never the
    machine's own /dev/null), a file that is one 17 MiB line, a run holding a baseline (bench's own
    output, replaceable) beside its records (not replaceable)."""
    made["fifo"] = root / "fifo"
    os.mkfifo(made["fifo"])
    try:
        os.mknod(root / "null-device", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        made["device"] = root / "null-device"
    except PermissionError:
        pass  # only root makes device nodes (CI containers are root)
    made["one-huge-line"] = root / "huge-line.yaml"
    made["one-huge-line"].write_bytes(b"a" * (17 * 2**20))
    run = root / "run-with-baseline"
    run.mkdir()
    (run / "manifest.json").write_text(json.dumps({"status": "complete", "cells": [], "scenario": {}}))
    (run / "baseline.json").write_text('{\n "format": "bench-baseline",\n "format_version": 1\n}\n')
    made["run-with-baseline"] = run
    made["baseline-in-run"] = run / "baseline.json"
    made["record-in-run"] = run / "manifest.json"


def _issue_26_files(root: Path, made: dict[str, Path]) -> None:
    """File kinds and contents of issue 26: a symlink loop, JSON too deep for Python's parser,
    catalogs that would fail every request or are the wrong shape, a baseline of wrong types."""
    (root / "loop-a").symlink_to(root / "loop-b")
    (root / "loop-b").symlink_to(root / "loop-a")
    made["symlink-loop"] = root / "loop-a"
    made["deep-json"] = root / "deep.json"
    made["deep-json"].write_bytes(b"[" * 100_000 + b"]" * 100_000)
    model = ("{name: m0, architecture: llama, family: llama, quantization: Q4_0, size_bytes: 1000000, "
             "parameter_count: 1000000, block_count: 2, embedding_length: 64, head_count: 0, "
             "head_count_kv: 0, context_length: 2048}")
    catalogs = {"catalog-heads-0": f"models:\n  - {model}\n",
                "catalog-bandwidth-0": "gpus:\n  - {name: g0, memory: 8GiB, decode_bandwidth: 1e12, "
                                       "prefill_flops: 1e12, cpu_bandwidth: 0}\n",
                "catalog-shape": "models: {a: 1}\ngpus: [[1]]\n", "catalog-list": "- 1\n"}
    for name, text in catalogs.items():
        made[name] = root / f"{name}.yaml"
        made[name].write_text(text)
    made["baseline-types"] = root / "baseline-types.json"
    made["baseline-types"].write_text(json.dumps({"format": "bench-baseline", "format_version": 1,
                                                  "cells": [{"samples": [1], "settings": 3}] * 3}))
    made["scenario-yaml11"] = root / "yaml11.yaml"
    made["scenario-yaml11"].write_text("target: sim\nworkload: {model: 1:30}\n"
                                       "load: {concurrency: 0x10, requests: 1_000, duration_s: 1:30}\n"
                                       "slos: {ttft_p95: -5ms}\nthresholds: {error_rate: '<200%'}\n")


@pytest.fixture(autouse=True)
def nothing_runs(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Stand-ins for everything that would connect, listen or measure."""
    def refused(*args: Any, **kwargs: Any) -> None:
        raise TargetError("fuzz: no server here")

    import bench.run.resolve
    import bench.run.targets
    import bench.sim.server

    monkeypatch.setattr(bench.run.resolve, "preflight", refused)
    monkeypatch.setattr(bench.run.targets.Targets, "ensure", refused)
    monkeypatch.setattr(bench.sim.server, "serve", lambda *args, **kwargs: None)
    monkeypatch.setenv("OLLAMA_HOST", "127.0.0.1:9")  # discard port: nothing answers
    monkeypatch.delenv("BENCH_DEBUG", raising=False)
    yield


class CaseHang(BaseException):
    """A case past CASE_LIMIT_S. Not a TimeoutError: that is an OSError, which the CLI's funnel
    would print as one line and exit 2, passing the hang it should fail."""


def _alarm(signum: int, frame: Any) -> None:
    raise CaseHang(f"a CLI case ran past {CASE_LIMIT_S}s")


def check(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> Any:
    """One case: bounded in time, any exit but 70, no traceback, errors one line each."""
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(CASE_LIMIT_S)
    try:
        result = CliRunner().invoke(cli, args, env={"BENCH_DEBUG": "", **(env or {})}, catch_exceptions=True)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    shown = f"bench {' '.join(map(repr, args))} -> {result.exit_code}:\n{result.output}"
    assert result.exit_code != EXIT_INTERNAL, shown
    assert result.exception is None or isinstance(result.exception, SystemExit), shown
    assert "Traceback" not in result.output, shown
    if result.exit_code == 2:
        assert any(line.startswith("error: ") for line in result.output.splitlines()), shown
    return result


def _flags(options: dict[str, st.SearchStrategy[str]], flags: tuple[str, ...] = ()) -> st.SearchStrategy[list[str]]:
    pair = st.sampled_from(sorted(options)).flatmap(lambda name: options[name].map(lambda v: [name, v]))
    lone = st.sampled_from(flags).map(lambda flag: [flag]) if flags else st.nothing()
    return st.lists(st.one_of(pair, lone), max_size=4).map(lambda parts: [x for part in parts for x in part])


def _path(paths_: dict[str, Path]) -> st.SearchStrategy[str]:
    return st.sampled_from(sorted(paths_)).map(lambda key: str(paths_[key]))


SCENARIO_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), TEXTS),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.sampled_from(["model", "endpoint", "concurrency", "requests",
                                                             "tokens", "file", "args", "command", "x"]),
                                            inner, max_size=3)),
    max_leaves=8)
SECTIONS = {"name": TEXTS, "api_key_env": TEXTS,
            "workload": st.fixed_dictionaries({"model": SCENARIO_VALUES},
                                              optional={"endpoint": SCENARIO_VALUES, "max_tokens": SCENARIO_VALUES,
                                                        "prompt": SCENARIO_VALUES, "seed": SCENARIO_VALUES}),
            "load": st.dictionaries(st.sampled_from(["concurrency", "requests", "duration_s", "arrival",
                                                     "rate_rps", "warmup_requests", "concurency"]),
                                    SCENARIO_VALUES, max_size=3),
            "sim": SCENARIO_VALUES, "server": SCENARIO_VALUES, "gates": SCENARIO_VALUES,
            "slos": SCENARIO_VALUES}


def _scenario_text() -> st.SearchStrategy[str]:
    target = st.one_of(st.just("http://127.0.0.1:9"), TEXTS)  # mostly the discard port
    document = st.fixed_dictionaries({"target": target}, optional=SECTIONS)  # type: ignore[arg-type]

    def dump(doc: dict[str, Any]) -> str:
        try:
            return yaml.safe_dump(doc, allow_unicode=True)
        except yaml.YAMLError:
            return "workload: {model: m}\n"
    return st.one_of(document.map(dump), st.text(max_size=200))


@SETTINGS
@given(data=st.data())
def test_fuzz_validate_and_run_scenario_files(paths: dict[str, Path], tmp_path_factory: pytest.TempPathFactory,
                                              data: st.DataObject) -> None:
    root = tmp_path_factory.mktemp("s")
    scenario = root / "s.yaml"
    scenario.write_text(data.draw(_scenario_text()), encoding="utf-8")
    command = data.draw(st.sampled_from(["validate", "run"]))
    extra = data.draw(_flags({"--requests": NUMBERS, "--duration": NUMBERS, "--warmup": NUMBERS,
                              "--repeats": NUMBERS, "--sim-speed": NUMBERS, "--grace": NUMBERS,
                              "--target": TEXTS, "--baseline": _path(paths), "--out": _path(paths),
                              "--results": st.just(str(root / "results"))},
                             ("--quick", "--no-report"))) if command == "run" else []
    check([command, str(scenario), *extra], root)


@SETTINGS
@given(data=st.data())
def test_fuzz_flag_only_runs(paths: dict[str, Path], tmp_path: Path, data: st.DataObject) -> None:
    lists = st.one_of(NUMBERS, TEXTS)
    extra = data.draw(_flags({"--model": TEXTS, "--endpoint": TEXTS, "--prompt-tokens": lists,
                              "--max-tokens": lists, "--num-ctx": lists, "--temperature": NUMBERS,
                              "--seed": NUMBERS, "--arrival": TEXTS, "--concurrency": lists, "--rate": lists,
                              "--turns": lists, "--think-time": NUMBERS, "--shared-prefix-tokens": lists,
                              "--prompt-cache": TEXTS, "--sim-gpu": TEXTS, "--sim-env": TEXTS, "--slo": TEXTS,
                              "--percentiles": lists, "--threshold": TEXTS, "--prompt-file": _path(paths),
                              "--target": TEXTS, "--name": TEXTS}, ("--quick",)))
    check(["run", "--results", str(tmp_path / "results"), "--no-report", "--model", "m", *extra], tmp_path)


@SETTINGS
@given(data=st.data())
def test_fuzz_sim_flags(paths: dict[str, Path], tmp_path: Path, data: st.DataObject) -> None:
    extra = data.draw(_flags({"--port": NUMBERS, "--speed": NUMBERS, "--seed": NUMBERS, "--gpu": TEXTS,
                              "--gpu-memory": TEXTS, "--host": TEXTS, "--catalog": _path(paths),
                              "--fault-error-rate": NUMBERS, "--fault-stall-s": NUMBERS,
                              "--fault-cut-rate": NUMBERS, "--ollama-version": TEXTS, "--engine": TEXTS,
                              "--host-memory": TEXTS, "--emit-log": _path(paths)}))
    # The fault variables bench sim reads (a stall of 1e300 s used to pass): any of NUMBERS.
    env = data.draw(st.dictionaries(st.sampled_from(["BENCH_SIM_FAULT_STALL_S", "BENCH_SIM_FAULT_STALL_RATE",
                                                     "BENCH_SIM_FAULT_ERROR_RATE"]), NUMBERS, max_size=2))
    check(["sim", *extra], tmp_path, env)


@pytest.mark.parametrize("command", ["report", "compare", "baseline", "recommend", "kv", "kv-analyze",
                                     "soak", "resume"])
@SETTINGS
@given(data=st.data())
def test_fuzz_analysis_commands(paths: dict[str, Path], tmp_path: Path, command: str,
                                data: st.DataObject) -> None:
    path = _path(paths)
    if command == "report":
        args = ["report", data.draw(path), *data.draw(_flags({"-o": path}))]
    elif command == "compare":
        args = ["compare", data.draw(path), data.draw(path),
                *data.draw(_flags({"--max-regression": TEXTS, "--junit": path, "--markdown": path}))]
    elif command == "baseline":
        args = ["baseline", "save", data.draw(path), data.draw(path)]
    elif command == "recommend":
        args = ["recommend", data.draw(path), *data.draw(_flags({"--slo": TEXTS, "--min-user-tps": NUMBERS}))]
    elif command == "kv":
        args = ["kv", *data.draw(_flags({"--ctx": NUMBERS, "--parallel": NUMBERS, "--gpu-memory": TEXTS,
                                         "--graph": TEXTS, "--gguf": path, "--cache-type": TEXTS,
                                         "--target": TEXTS}))]
    elif command == "kv-analyze":
        args = ["kv-analyze", data.draw(path)]
    elif command == "soak":
        # Only refusals: a valid soak would run; its flags' parsing is what is fuzzed here.
        args = ["soak", "--duration", data.draw(st.sampled_from(["nan", "0", "-1s", "1e999h", "x", ""])),
                *data.draw(_flags({"--concurrency": NUMBERS, "--speed": NUMBERS, "--sample-every": TEXTS}))]
    else:
        args = ["run", "--resume", data.draw(path), *data.draw(_flags({"--target": TEXTS, "--sim-speed": NUMBERS}))]
    check(args, tmp_path)


# Every file kind of issue 26 against every flag that writes or reads a file, each case once (the
# drawn cases above reach a given pair only by chance): never a hang, a traceback or exit 70; an
# output over a FIFO, a device or a run's records always refused.
OUTPUTS = {"sim --emit-log": lambda p, x: ["sim", "--port", "0", "--emit-log", x],
           "report -o": lambda p, x: ["report", str(p["run-ok"]), "-o", x],
           "compare --junit": lambda p, x: ["compare", str(p["run-ok"]), str(p["run-ok"]), "--junit", x],
           "compare --markdown": lambda p, x: ["compare", str(p["run-ok"]), str(p["run-ok"]), "--markdown", x],
           "baseline save": lambda p, x: ["baseline", "save", str(p["run-ok"]), x],
           "gguf make": lambda p, x: ["gguf", "make", x]}
INPUTS = {"validate": lambda p, x: ["validate", x],
          "run --prompt-file": lambda p, x: ["run", "--model", "m", "--no-report", "--prompt-file", x],
          "sim --catalog": lambda p, x: ["sim", "--port", "0", "--catalog", x],
          "kv --gguf": lambda p, x: ["kv", "--gguf", x],
          "report": lambda p, x: ["report", x],
          "compare": lambda p, x: ["compare", x, x],
          "run --resume": lambda p, x: ["run", "--resume", x, "--no-report"]}
HOSTILE_KINDS = ("fifo", "device", "dir", "symlink-loop", "one-huge-line", "record-in-run", "baseline-in-run",
                 "deep-json", "binary", "proc")


@pytest.mark.parametrize("kind", HOSTILE_KINDS)
@pytest.mark.parametrize("flag", sorted(OUTPUTS) + sorted(INPUTS))
def test_every_file_flag_against_every_hostile_file_kind(paths: dict[str, Path], tmp_path: Path, flag: str,
                                                         kind: str) -> None:
    if kind not in paths:
        pytest.skip(f"no {kind} here (making a device node needs root)")
    # A run's record and a user's file are never replaced (gguf make still replaces any regular
    # file: a GGUF of its own is not yet told from a user's model).
    before = paths[kind].read_bytes() if kind == "record-in-run" or (
        kind == "binary" and flag != "gguf make") else None
    args = {**OUTPUTS, **INPUTS}[flag](paths, str(paths[kind]))
    result = check(args, tmp_path)
    if flag in OUTPUTS and kind in ("fifo", "device", "record-in-run", "dir"):
        assert result.exit_code == 2, (args, result.output)
    if before is not None:
        assert paths[kind].read_bytes() == before, f"{flag} changed {kind}"
    if kind == "fifo":
        assert stat.S_ISFIFO(os.stat(paths[kind]).st_mode)
    if kind == "device":
        assert stat.S_ISCHR(os.stat(paths[kind]).st_mode)


@pytest.mark.parametrize("value", ["1e300", "inf", "-inf", "nan", "-1", "604801", "1e-320", "x", ""])
def test_every_stall_the_simulator_is_given_is_refused_or_within_a_week(tmp_path: Path, value: str) -> None:
    check(["sim", "--port", "0", "--fault-stall-rate", "1"], tmp_path, {"BENCH_SIM_FAULT_STALL_S": value})
    from bench.numbers import MAX_SECONDS
    from bench.sim.config import build_config
    from bench.sim.config_errors import SimConfigError

    try:
        stall_s = build_config({"BENCH_SIM_FAULT_STALL_S": value}).faults.stall_s
    except SimConfigError:
        return
    assert 0 <= stall_s <= MAX_SECONDS
