"""`bench run`, `bench validate`, `bench schema`: parse, call bench.run.runner / bench.scenario, print."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from bench.cli import params
from bench.cli.console import output_console, working
from bench.errors import BenchError, ScenarioError, UsageError
from bench.escape import plain_terminal

if TYPE_CHECKING:
    from bench.analysis.run_analysis import RunAnalysis
    from bench.run.runner import RunOptions, RunResult

# Exit codes: 0 complete, 2 user error (BenchError, via bench.cli), 3 failed (abort_on),
# 4 partial (the managed server died), 1 regressed against --baseline, 130 interrupted by Ctrl-C / SIGTERM (partial, records kept).
EXIT_FAILED = 3
EXIT_PARTIAL = 4
EXIT_INTERRUPTED = 130
EXIT_REGRESSED = 1  # as `bench compare`: a gate regressed against --baseline, or a threshold broke
GATES_MARKDOWN = "gates.md"


class CommaList(click.ParamType):
    """`1,2,4` -> [1, 2, 4], each item converted by `item_type` (a click type)."""

    name = "list"

    def __init__(self, item_type: click.ParamType) -> None:
        self.item_type = item_type

    def convert(self, value, param, ctx):  # noqa: ANN001, ANN201 - click's signature
        if isinstance(value, list):
            return value
        return [self.item_type.convert(item.strip(), param, ctx)
                for item in str(value).split(",") if item.strip()]


def _pairs(values: tuple[str, ...], flag: str) -> dict[str, str]:
    """NAME=VALUE (or NAME<limit for thresholds) pairs from a repeated flag."""
    pairs: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        cut = next((i for i, ch in enumerate(item) if ch in "<>"), -1)
        if flag == "--threshold" and cut > 0 and (not sep or cut < item.index("=")):
            name, value = item[:cut], item[cut:]  # ttft_p95<500ms, ttft_p99.9<=2s
        if not name.strip() or not value.strip():
            raise UsageError(f"{flag} {item!r}: expected NAME=VALUE")
        pairs[name.strip()] = value.strip()
    return pairs


_INTS = CommaList(click.IntRange(min=1))
# Flags that define a scenario without a file (flag-only runs); with a file they are refused.
_WORKLOAD_FLAGS = ("model", "endpoint", "prompt_tokens", "prompt_file", "max_tokens", "num_ctx",
                   "temperature", "seed", "arrival", "concurrency", "rate_rps", "turns",
                   "think_time_s", "shared_prefix_tokens", "prompt_cache", "sim_gpu", "sim_env",
                   "slo", "name")


def scenario_flags(command):  # noqa: ANN001, ANN201 - a click decorator
    """The flags of a flag-only run (`bench run --target sim --model M ...`)."""
    flags = [
        click.option("--model", type=CommaList(click.STRING), help="Model(s), comma-separated (flag-only run)."),
        click.option("--endpoint", type=CommaList(click.STRING), help="native/chat, openai/chat, ... (comma list)."),
        click.option("--prompt-tokens", type=_INTS, help="Prompt length(s) in tokens (comma list)."),
        click.option("--prompt-file", help="JSONL/ShareGPT prompts or conversations."),
        click.option("--max-tokens", type=_INTS, help="num_predict / max_tokens (comma list)."),
        click.option("--num-ctx", type=_INTS, help="options.num_ctx (comma list)."),
        click.option("--temperature", type=click.FloatRange(min=0)),
        click.option("--seed", type=int),
        click.option("--arrival", type=CommaList(click.Choice(["closed", "constant", "poisson"]))),
        click.option("--concurrency", type=_INTS, help="Workers, or the in-flight cap (comma list)."),
        click.option("--rate", "rate_rps", type=CommaList(click.FloatRange(min=0, min_open=True)),
                     help="Requests per second for constant/poisson arrivals (comma list)."),
        click.option("--turns", type=_INTS, help="Multi-turn conversations of this many user turns."),
        click.option("--think-time", "think_time_s", type=params.SECONDS_OR_ZERO,
                     help="Seconds between a reply and the user's next turn."),
        click.option("--shared-prefix-tokens", type=CommaList(click.IntRange(min=0)),
                     help="A common system prompt of this many tokens."),
        click.option("--prompt-cache", type=CommaList(click.Choice(["reuse", "defeat"])),
                     help="reuse (shared prefixes stay identical) or defeat (unique first token)."),
        click.option("--sim-gpu", help="GPU profile of the embedded simulator (--target sim)."),
        click.option("--sim-env", multiple=True, help="NAME=VALUE for the embedded simulator (repeatable)."),
        click.option("--slo", multiple=True, help="METRIC=VALUE, e.g. ttft_p95=2s (repeatable)."),
        click.option("--name", help="Name of a flag-only run (default: flags)."),
        click.option("--percentiles", type=CommaList(click.FloatRange(min=0, max=100, min_open=True,
                                                                       max_open=True)),
                     help="Latency percentiles to report, e.g. 50,90,95,99,99.9."),
        click.option("--threshold", multiple=True,
                     help='METRIC<LIMIT, e.g. "ttft_p95<500ms" or error_rate=<1% (repeatable): '
                          "exit 1 when broken."),
    ]
    for flag in reversed(flags):
        command = flag(command)
    return command


@click.command("run")
@click.argument("scenario_file", type=click.Path(path_type=Path), required=False)
@click.option("--target", help="Base URL of the server, `sim`, or `ollama` (the real Ollama `bench ollama build` made, "
              "started and stopped by bench) (overrides the scenario and OLLAMA_HOST).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False),
              help="Run directory (default results/<run-id>).")
@click.option("--results", "results_root", type=click.Path(path_type=Path, file_okay=False),
              default=Path("results"), show_default=True, help="Where run directories are created.")
@click.option("--requests", type=params.COUNT, help="Measured requests per cell (overrides).")
@click.option("--duration", "duration_s", type=params.SECONDS,
              help="Seconds per cell (overrides requests).")
@click.option("--warmup", "warmup_requests", type=params.COUNT_OR_ZERO, help="Warmup requests per cell.")
@click.option("--repeats", type=params.REPEATS, help="Repeats per cell.")
@click.option("--quick", is_flag=True, help="Smoke test: 4 requests per cell, 1 warmup, 1 repeat.")
@click.option("--sim-speed", type=params.SPEED,
              help="Speed factor of the embedded simulator (target: sim).")
@click.option("--sim-engine", type=click.Choice(["simulated", "llama-server"]),
              help="Engine behind the embedded simulator (target: sim): the roofline model or a real "
                   "llama-server per loaded model; replaces the scenario's own choice.")
@click.option("--grace", "grace_s", type=params.SECONDS_OR_ZERO, default=10.0, show_default=True,
              help="Seconds in-flight requests get after Ctrl-C / SIGTERM.")
@click.option("--baseline", type=click.Path(path_type=Path, exists=True),
              help="Baseline run directory or saved baseline file: gate this run against it "
                   "with the scenario's gates (exit 1 on a regression).")
@click.option("--no-report", is_flag=True, help="Skip report.html.")
@click.option("--transport", type=click.Choice(["auto", "httpx", "fast"]), default="auto", show_default=True,
              help="HTTP client transport: bench's lean one (http:// only; kernel receive "
                   "timestamps, far less client CPU, see `bench perf`), httpx's own, or auto "
                   "(lean for http://, httpx for https://).")
@click.option("--adaptive", is_flag=True,
              help="Stop each cell once its intervals are tight (the scenario's stop_when, else 95% "
                   "intervals of ttft_p95 and output_tps within ±5%, 20 requests at least) and skip "
                   "cells of a sweep that cannot win (spilled settings, past the knee).")
@click.option("--full-grid", is_flag=True, help="Ignore the scenario's stop_when and prune: every cell to its end.")
@click.option("--workers", type=click.IntRange(min=1, max=256), default=1, show_default=True,
              help="Client processes per cell: the cell's streams (closed loop) or arrivals (open "
                   "loop) spread over N processes on one clock, records merged.")
@click.option("--ray", "ray_address", is_flag=False, flag_value="local", default=None, metavar="[ADDRESS]",
              help="Run each server group as a Ray task (pip install 'bench[ray]'): on a local Ray "
                   "cluster on loopback only, or the one at ADDRESS (ray://host:10001, or `auto` for the cluster "
                   "this machine belongs to). Give the scenario first: `bench run FILE --ray`.")
@click.option("--resume", "resume_dir", type=click.Path(path_type=Path, file_okay=False),
              help="Finish an interrupted run: run only its cells not yet complete, in RUN_DIR.")
@scenario_flags
def run_command(scenario_file: Path | None, target: str | None, out_dir: Path | None,
                results_root: Path, requests: int | None, duration_s: float | None,
                warmup_requests: int | None, repeats: int | None, quick: bool,
                sim_speed: float | None, sim_engine: str | None, grace_s: float, baseline: Path | None, no_report: bool,
                transport: str, adaptive: bool, full_grid: bool, workers: int, ray_address: str | None,
                resume_dir: Path | None, **flags: Any) -> None:
    """Run SCENARIO_FILE: expand its matrix into cells, load the target, record every request.

    Without a file, flags alone describe the run: `bench run --target sim --model llama3.2:1b
    --concurrency 1,2,4 --prompt-tokens 512 --max-tokens 128 --requests 64`; the run directory
    keeps the equivalent scenario.yaml, which reruns it.

    With --resume RUN_DIR the scenario and overrides come from RUN_DIR's manifest (a SCENARIO_FILE
    given too must match it); --target and --sim-speed may point the resumed cells elsewhere.
    """
    # pandas, pyarrow and the clients load here (seconds on a busy machine): say so at once.
    with working(output_console(), "starting bench run"):
        from bench.plan import Overrides
        from bench.run.runner import RunOptions, run_scenario  # noqa: F401 - loaded under the spinner
        from bench.scenario import flag_scenario, load_scenario, with_outputs, with_sim_engine

    percentiles, thresholds = flags.pop("percentiles"), _pairs(flags.pop("threshold"), "--threshold")
    if resume_dir is not None:
        if (out_dir is not None or quick or sim_engine is not None
                or (requests, duration_s, warmup_requests, repeats) != (None,) * 4):
            raise UsageError("--resume: --out, --quick, --sim-engine, --requests, --duration, --warmup and "
                             "--repeats come from the run being resumed")
        if adaptive or full_grid:
            raise UsageError("--resume: --adaptive and --full-grid come from the run being resumed")
        resume_options = RunOptions(target=target, sim_speed=sim_speed, grace_s=grace_s,
                                    baseline=baseline, report=not no_report, transport=transport,
                                    workers=workers)
        _resume(resume_dir, scenario_file, resume_options, ray_address)
        return
    given = [name for name in _WORKLOAD_FLAGS if flags.get(name) not in (None, (), [])]
    if scenario_file is None and not flags.get("model"):
        raise UsageError("run: give a SCENARIO_FILE, --resume RUN_DIR, or flags (at least --model)")
    if scenario_file is not None and given:
        flag = "--" + given[0].replace("_", "-").removesuffix("-s").replace("rate-rps", "rate")
        raise UsageError(f"{flag}: describes a flag-only run; with a SCENARIO_FILE, edit the file")
    if scenario_file is None:
        scenario = flag_scenario(
            target=target, requests=requests, duration_s=duration_s,
            warmup_requests=warmup_requests, repeats=repeats,
            sim_env=_pairs(flags.pop("sim_env"), "--sim-env"), slos=_pairs(flags.pop("slo"), "--slo"),
            name=flags.pop("name") or "flags", **{k: v for k, v in flags.items() if v is not None},
        )
        if scenario.server is not None:
            target = None  # --sim-env NAME=A,B: the scenario now manages one `bench sim` per value
    else:
        scenario = load_scenario(scenario_file)
    scenario = with_outputs(scenario, percentiles=percentiles, thresholds=thresholds)
    if sim_engine is not None:
        scenario = with_sim_engine(scenario, sim_engine, target)
    if quick:
        requests = requests or 4
        warmup_requests = 1 if warmup_requests is None else warmup_requests
        repeats = repeats or 1
    overrides = Overrides(requests=requests, duration_s=duration_s,
                          warmup_requests=warmup_requests, repeats=repeats)
    options = RunOptions(scenario_path=scenario_file, target=target, out_dir=out_dir,
                         results_root=results_root, overrides=overrides, sim_speed=sim_speed,
                         baseline=baseline, grace_s=grace_s, report=not no_report,
                         transport=transport, adaptive=adaptive, full_grid=full_grid, workers=workers)
    _exit_for(_run(scenario, options, ray_address))


def _run(scenario, options: RunOptions, ray_address: str | None) -> RunResult:  # noqa: ANN001 - a bench.scenario.Scenario
    """The run here, or with --ray [ADDRESS] (`ray_address`: 'local' for a local cluster) on Ray."""
    if ray_address is not None:
        from bench.run.ray_groups import run_on_ray  # Ray is an optional extra: bench[ray]

        return run_on_ray(scenario, options, None if ray_address == "local" else ray_address, output_console())
    from bench.run.runner import run_scenario

    return run_scenario(scenario, options, output_console())


def _resume(run_dir: Path, scenario_file: Path | None, given_options: RunOptions, ray_address: str | None) -> None:
    """--resume: the run's own scenario; how its options and the command line's combine is
    bench.run.resolve's business."""
    from bench.run.resume import load_resume_point
    from bench.scenario import Scenario, load_scenario

    given: Scenario | None = load_scenario(scenario_file) if scenario_file is not None else None
    point = load_resume_point(run_dir, given, str(scenario_file or ""))
    total = len(point.manifest.cells)
    remaining = total - len(point.complete_cells)
    if remaining == 0 and point.manifest.status == "complete":
        click.echo(f"nothing to resume: every cell of {run_dir} is complete")
        return
    if remaining == 0:
        # Killed after its last record, before its outputs: finish it (summary, report, status).
        click.echo(f"finishing {run_dir}: every cell has its records; writing the outputs")
    else:
        click.echo(f"resuming {run_dir}: {remaining} of {total} cells to run")
    # bench.run.resolve merges the run's stored options with these.
    _exit_for(_run(point.scenario, dataclasses.replace(given_options, resume=point), ray_address))


def _exit_for(result: RunResult) -> None:
    baseline = result.manifest.baseline
    regressed = bool(baseline) and result.status == "complete" and gate_run(Path(baseline), result.run_dir,
                                                                            result.analysis)
    if result.status == "failed":
        sys.exit(EXIT_FAILED)
    if result.status == "partial":
        sys.exit(EXIT_INTERRUPTED if result.interrupted else EXIT_PARTIAL)
    broken = [t for t in result.manifest.thresholds or [] if not t.get("passed")]
    if regressed or broken:
        sys.exit(EXIT_REGRESSED)  # 1: a gate regressed or a threshold is broken


def gate_run(baseline: Path, run_dir: Path, analysis: RunAnalysis | None = None) -> bool:
    """`bench compare BASELINE RUN_DIR` in one step: print the gates, keep them in the run; regressed?
    `analysis`: the run's, made at its end, so its records are not loaded again."""
    from bench.analysis.baseline import load_baseline
    from bench.analysis.compare import compare_baselines, compare_paths
    from bench.outputs.gate_tables import headline, render_table, to_markdown
    from bench.records.atomic import write_text_atomically

    comparison = (compare_paths(baseline, run_dir) if analysis is None
                  else compare_baselines(load_baseline(baseline), analysis.baseline))
    console = output_console()
    console.print(render_table(comparison, width=console.width))
    console.print(headline(comparison), highlight=False, soft_wrap=True, markup=False)
    write_text_atomically(run_dir / GATES_MARKDOWN, to_markdown(comparison))
    return comparison.regressed


@click.command("validate")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
def validate_command(files: tuple[Path, ...]) -> None:
    """Check scenario FILES without running them (one line per problem; exit 2 if any)."""
    from bench.plan import plan_cells
    from bench.workload.prompts import prompt_source
    from bench.run.checks import scenario_problems
    from bench.scenario import load_scenario

    failed = False
    for path in files:
        try:
            scenario = load_scenario(path)
            problems = scenario_problems(scenario)
            if problems:
                raise ScenarioError("\n".join(problems))
            prompt_source(scenario)
            cells = plan_cells(scenario)
        except BenchError as error:
            for line in str(error).splitlines():
                click.echo(f"error: {plain_terminal(line)}", err=True)
            failed = True
            continue
        click.echo(f"{plain_terminal(path)}: ok ({len(cells)} cells)")
    if failed:
        sys.exit(2)


@click.command("schema")
def schema_command() -> None:
    """Print the scenario JSON Schema (for editors: yaml-language-server, VS Code)."""
    from bench.scenario import scenario_json_schema

    click.echo(json.dumps(scenario_json_schema(), indent=2))


def register(group: click.Group) -> None:
    group.add_command(run_command)
    group.add_command(validate_command)
    group.add_command(schema_command)
