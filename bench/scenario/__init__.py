"""The scenario: pydantic model, YAML loading with line numbers, JSON Schema.

Every user mistake in a scenario becomes one ScenarioError line `FILE:LINE: field.path: message`.
Fields marked as axes accept a single value or a list; a list makes a matrix axis (bench.plan).

The model lives in `fields` (types, durations, thresholds), `blocks` and `model`; the file side
in `yaml_lines` (YAML with line numbers), `loading` (errors, `load_scenario`) and `flags`
(flag-only scenarios, settings written back, YAML out). This module is their one public face.
"""

from __future__ import annotations

from bench.endpoints import resolve_ollama_host
from bench.scenario.blocks import (
    AbortOn,
    ConversationSpec,
    Distribution,
    Load,
    Matrix,
    Pace,
    Placement,
    PromptSpec,
    Prune,
    SecondsDistribution,
    ServerBlock,
    SimTarget,
    StopWhen,
    SweepSpec,
    TraceSpec,
    Workload,
)
from bench.scenario.fields import (
    DEFAULT_PERCENTILES,
    DEFAULT_TURNS,
    ENDPOINTS,
    Threshold,
    parse_slo_value,
    parse_threshold,
    refuse_listen_args,
    seconds_of,
)
from bench.scenario.flags import (
    flag_scenario,
    scenario_from_dict,
    scenario_to_yaml,
    with_outputs,
    with_run_settings,
    with_sim_engine,
)
from bench.scenario.loading import load_scenario, parse_scenario, scenario_json_schema
from bench.scenario.model import Scenario

__all__ = [
    "DEFAULT_PERCENTILES", "DEFAULT_TURNS", "ENDPOINTS", "AbortOn", "ConversationSpec",
    "Distribution", "Load", "Matrix", "Pace", "Placement", "PromptSpec", "Prune", "Scenario",
    "SecondsDistribution", "ServerBlock", "SimTarget", "StopWhen", "SweepSpec", "Threshold",
    "TraceSpec", "Workload", "flag_scenario", "load_scenario", "parse_scenario", "parse_slo_value",
    "parse_threshold", "refuse_listen_args", "resolve_ollama_host", "scenario_from_dict",
    "scenario_json_schema", "scenario_to_yaml", "seconds_of", "with_outputs", "with_run_settings",
    "with_sim_engine",
]
