"""Scenarios from command-line flags (flag-only runs), command-line settings written into a
scenario, and a scenario back to YAML."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from bench.errors import ScenarioError, UsageError
from bench.scenario.loading import _located, file_problem
from bench.scenario.model import Scenario
from bench.scenario.yaml_lines import _is_field_name


# Scenario fields -> the `bench run` flag that sets them, for errors of a flag-only run.
_FLAG_OF_FIELD = {
    "workload.model": "--model", "workload.endpoint": "--endpoint",
    "workload.prompt.tokens": "--prompt-tokens", "workload.prompt.file": "--prompt-file",
    "workload.prompt.shared_prefix_tokens": "--shared-prefix-tokens",
    "workload.prompt.cache": "--prompt-cache", "workload.max_tokens": "--max-tokens",
    "workload.num_ctx": "--num-ctx", "workload.conversation.turns": "--turns",
    "workload.conversation.think_time_s": "--think-time", "load.rate_rps": "--rate",
    "load.arrival": "--arrival", "load.concurrency": "--concurrency", "slos": "--slo",
    "thresholds": "--threshold", "percentiles": "--percentiles", "sim.env": "--sim-env",
}


def _dict_error(errors: list[dict[str, Any]], source: str, flags: bool) -> str:
    """One line for a scenario given as a dict: the field path (or the flag that set it)."""
    _, located_path, message = _located(errors[0], None)
    path = [f"[{part}]" if isinstance(part, int) else part for part in errors[0]["loc"]
            if isinstance(part, int) or _is_field_name(str(part))]
    if located_path and located_path[-1] not in path and _is_field_name(located_path[-1]):
        path.append(located_path[-1])  # a cross-field check names the field it blames
    dotted = ".".join(path).replace(".[", "[") or "(top level)"
    if flags:
        for field_path, flag in _FLAG_OF_FIELD.items():
            if dotted == field_path or dotted.startswith((field_path + ".", field_path + "[")):
                return f"{flag}: {message}"
    return f"{source}: {dotted}: {message}"


def scenario_from_dict(data: dict[str, Any], source: str = "<scenario>",
                       flags: bool = False) -> Scenario:
    """Validate a scenario given as a Python dict (the Python API, flag-only runs)."""
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as error:
        raise ScenarioError(_dict_error(error.errors(include_url=False), source, flags)) from None
    scenario._source = source
    prompt_file = scenario.workload.prompt.file
    if (problem := file_problem(prompt_file)) is not None:
        raise ScenarioError(f"{source}: workload.prompt.file: {problem} {prompt_file}")
    if scenario.load.trace is not None and (problem := file_problem(scenario.load.trace.file)) is not None:
        raise ScenarioError(f"{source}: load.trace.file: {problem} {scenario.load.trace.file}")
    return scenario


def scenario_to_yaml(scenario: Scenario) -> str:
    """The scenario as YAML that loads back into the same scenario (defaults left out)."""
    data = scenario.model_dump(mode="json", exclude_defaults=True)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def with_run_settings(scenario: Scenario, *, target: str | None = None,
                      sim_speed: float | None = None, requests: int | None = None,
                      duration_s: float | None = None, warmup_requests: int | None = None,
                      repeats: int | None = None) -> Scenario:
    """The scenario with command-line settings written into it: what the run really ran.

    Requests or a duration replace both (as bench.plan's overrides do), so the same cells plan.
    """
    data = scenario.model_dump(mode="json")
    load = data["load"]
    if requests is not None or duration_s is not None:
        load["requests"] = [requests] if requests is not None else None
        load["duration_s"] = [duration_s] if duration_s is not None else None
    if warmup_requests is not None:
        load["warmup_requests"] = warmup_requests
    if repeats is not None:
        load["repeats"] = repeats
    if target is not None and data.get("server") is None:
        data["target"] = target
    if sim_speed is not None:
        data["sim"]["speed"] = sim_speed
    resolved = Scenario.model_validate(data)
    resolved._source, resolved._root = scenario._source, scenario._root
    return resolved


def with_sim_engine(scenario: Scenario, engine: str, target: str | None = None) -> Scenario:
    """The scenario with the embedded simulator's engine set (`bench run --sim-engine`).

    Replaces any `--engine` in `sim.args`, so the same file runs on the simulated engine and on
    llama-server unchanged; UsageError when the target is not the embedded simulator.
    """
    if scenario.server is not None or (target or scenario.target) != "sim":
        raise UsageError(f"--sim-engine {engine}: only for target: sim (the embedded simulator)")
    data = scenario.model_dump(mode="json")
    kept: list[str] = []
    skip = False
    for arg in data["sim"]["args"]:
        if skip:
            skip = False
        elif arg == "--engine":
            skip = True
        elif not arg.startswith("--engine="):
            kept.append(arg)
    data["sim"]["args"] = [*kept, "--engine", engine]
    resolved = Scenario.model_validate(data)
    resolved._source, resolved._root = scenario._source, scenario._root
    return resolved


def flag_scenario(*, model: list[str], target: str | None = None, name: str = "flags",
                  endpoint: list[str] | None = None, prompt_tokens: list[int] | None = None,
                  prompt_file: str | None = None, max_tokens: list[int] | None = None,
                  num_ctx: list[int] | None = None, temperature: float | None = None,
                  seed: int | None = None, arrival: list[str] | None = None,
                  concurrency: list[int] | None = None, rate_rps: list[float] | None = None,
                  requests: int | None = None, duration_s: float | None = None,
                  warmup_requests: int | None = None, repeats: int | None = None,
                  turns: list[int] | None = None, think_time_s: float | None = None,
                  shared_prefix_tokens: list[int] | None = None,
                  prompt_cache: list[str] | None = None, sim_gpu: str | None = None,
                  sim_env: dict[str, str] | None = None, slos: dict[str, str] | None = None,
                  thresholds: dict[str, str] | None = None,
                  percentiles: list[float] | None = None) -> Scenario:
    """A scenario from `bench run` flags alone (no file); unset flags keep the scenario defaults."""
    if prompt_file is not None:
        prompt_file = os.path.abspath(prompt_file)  # the stored scenario.yaml may move
    prompt: dict[str, Any] = {"tokens": prompt_tokens, "file": prompt_file,
                              "shared_prefix_tokens": shared_prefix_tokens, "cache": prompt_cache}
    workload: dict[str, Any] = {
        "model": model, "endpoint": endpoint, "max_tokens": max_tokens, "num_ctx": num_ctx,
        "temperature": temperature, "seed": seed,
        "prompt": {k: v for k, v in prompt.items() if v is not None},
    }
    if turns is not None or think_time_s is not None:
        workload["conversation"] = {k: v for k, v in
                                    {"turns": turns, "think_time_s": think_time_s}.items()
                                    if v is not None}
    load = {"arrival": arrival, "concurrency": concurrency, "rate_rps": rate_rps,
            "requests": requests, "duration_s": duration_s, "warmup_requests": warmup_requests,
            "repeats": repeats}
    sim = {"gpu": sim_gpu, "env": sim_env}
    data = {
        "name": name, "target": target,
        "sim": {k: v for k, v in sim.items() if v is not None},
        "workload": {k: v for k, v in workload.items() if v is not None},
        "load": {k: v for k, v in load.items() if v is not None},
        "slos": slos or {}, "thresholds": thresholds or {}, "percentiles": percentiles,
    }
    axes = sim_env_axes(sim_env or {})
    if axes:
        if target != "sim":
            raise UsageError("--sim-env NAME=A,B sweeps the embedded simulator's settings: give --target sim")
        # A server setting is read at start-up: one managed `bench sim` per combination, as a
        # scenario's `server: {env: {NAME: [A, B]}}` does it.
        del data["target"], data["sim"]
        data["server"] = {"command": ["bench", "sim", *(["--gpu", sim_gpu] if sim_gpu else [])],
                          "env": {**(sim_env or {}), **axes}}
    return scenario_from_dict(data, source="command line", flags=True)


# Ollama settings that are whole numbers (envconfig.Uint): a typo fails here, before any server starts.
_WHOLE_NUMBER_SETTINGS = ("OLLAMA_NUM_PARALLEL", "OLLAMA_MAX_QUEUE", "OLLAMA_MAX_LOADED_MODELS",
                          "OLLAMA_CONTEXT_LENGTH")


def sim_env_axes(sim_env: dict[str, str]) -> dict[str, list[str]]:
    """`--sim-env` values with commas as sweep axes ({"OLLAMA_NUM_PARALLEL": ["1", "2", "4"]});
    every value of a whole-number Ollama setting checked (UsageError naming the flag)."""
    axes: dict[str, list[str]] = {}
    for name, raw in sim_env.items():
        values = [value.strip() for value in str(raw).split(",")]
        if any(not value for value in values):
            raise UsageError(f"--sim-env {name}={raw}: an empty value in the list")
        if name in _WHOLE_NUMBER_SETTINGS:
            bad = [value for value in values if not value.isdigit()]
            if bad:
                raise UsageError(f"--sim-env {name}={raw}: {bad[0]!r} is not a whole number")
        if len(values) > 1:
            if len(set(values)) != len(values):
                raise UsageError(f"--sim-env {name}={raw}: a value is listed twice")
            axes[name] = values
    return axes


def with_outputs(scenario: Scenario, *, percentiles: list[float] | None = None,
                 thresholds: dict[str, str] | None = None) -> Scenario:
    """The scenario with --percentiles replacing its percentiles and --threshold added to its own."""
    if not percentiles and not thresholds:
        return scenario
    data = scenario.model_dump(mode="json")
    if percentiles:
        data["percentiles"] = percentiles
    if thresholds:
        data["thresholds"] = {**data["thresholds"], **thresholds}
    try:
        resolved = Scenario.model_validate(data)
    except ValidationError as error:
        raise ScenarioError(_dict_error(error.errors(include_url=False), "command line", True)) from None
    resolved._source, resolved._root = scenario._source, scenario._root
    return resolved
