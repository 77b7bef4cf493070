"""The requests a cell sends: RequestSpecs from a cell's settings and its prompts (single requests
or conversations), and the prompt calibration probes sent before a cell's first request."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from bench.clients.base import RequestSpec
from bench.workload.conversations import ConversationMaker, trace_conversations
from bench.plan import Cell
from bench.workload.prompts import Calibration, PromptSource, calibrate, nonce
from bench.records.record import Phase, RequestRecord
from bench.scenario import Distribution, Scenario
from bench.workload.trace import read_trace

# What the load stage consumes (bench.load): request makers, conversations, trace steps.
# make_spec(repeat, request_index, phase, scheduled_s) -> the request to send
SpecFactory = Callable[[int, int, Phase, float], RequestSpec]


class ConversationLike(Protocol):
    """A virtual user's conversation as the load engine drives it (bench.workload.conversations)."""

    @property
    def finished(self) -> bool: ...

    def think_time_s(self) -> float: ...

    def next_spec(self, request_index: int, phase: Phase, scheduled_s: float) -> RequestSpec: ...

    def observe(self, record: RequestRecord) -> bool: ...


# start_conversation(repeat, conversation_index, phase) -> a new conversation
ConversationStarter = Callable[[int, int, Phase], ConversationLike]
# trace_steps(repeat) -> (offset seconds, conversation) per request of a trace, in time order; the
# same conversation object for the turns of one conversation (bench.workload.trace).
TraceSteps = Callable[[int], list[tuple[float, ConversationLike]]]


@dataclass(frozen=True)
class CellRequests:
    """What a cell sends, as the load stage asks for it: single requests (`make_spec`), and for a
    multi-turn workload its conversations, for a trace its timed steps."""

    make_spec: SpecFactory
    start_conversation: ConversationStarter | None = None
    trace_steps: TraceSteps | None = None
# Sends one calibration probe and keeps its record (the run appends it to requests.jsonl).
ProbeSend = Callable[[RequestSpec], Awaitable[RequestRecord]]


def calibration_key(cell: Cell) -> tuple[str, str, str]:
    """Prompts are calibrated once per (model, surface, endpoint): the server's template differs."""
    return (str(cell.settings.model), cell.surface, cell.endpoint)


def request_template(cell: Cell, scenario: Scenario) -> RequestSpec:
    """The cell's request fields; the prompt and ids are filled in per request."""
    settings, workload = cell.settings, scenario.workload
    return RequestSpec(
        cell_id=cell.cell_id, request_index=0, surface=cell.surface,
        endpoint=cell.endpoint, model=str(settings.model), prompt="",
        # A number here; from_data and distributions are set per request (spec_factory).
        max_tokens=settings.max_tokens if isinstance(settings.max_tokens, int) else None,
        num_ctx=settings.num_ctx,
        keep_alive=settings.keep_alive, temperature=settings.temperature,
        seed=workload.seed, format=cell.request_format, system=workload.prompt.system,
        store_text=scenario.store_text, timeout_s=scenario.load.timeout_s,
        deadline_s=scenario.load.request_deadline_s,
    )


def spec_factory(cell: Cell, scenario: Scenario, prompts: PromptSource, worker: int = 0) -> SpecFactory:
    """The cell's request maker: settings from the cell, a prompt unique to each request, and the
    shared system prompt (identical, or made unique when the cell defeats the prompt cache).

    Deterministic in (seed, cell, repeat, index), so any client process (`bench run --workers`)
    makes the same request; `worker` is that process, kept in each record."""
    key = calibration_key(cell)
    template = dataclasses.replace(request_template(cell, scenario), worker=worker)
    shared_tokens = cell.settings.shared_prefix_tokens
    cache = cell.settings.prompt_cache_mode
    max_tokens = cell_max_tokens(cell, scenario)
    prompt_tokens = cell.settings.prompt_tokens

    def make_spec(repeat: int, request_index: int, phase: Phase, scheduled_s: float) -> RequestSpec:
        prompt = prompts.prompt_for(key, cell.cell_id, repeat, request_index, prompt_tokens)
        system = template.system
        if shared_tokens or cache == "defeat":
            request_nonce = nonce(scenario.workload.seed, cell.cell_id, repeat, request_index)
            system = prompts.system_for(key, shared_tokens, cache, request_nonce)
        tokens = prompts.max_tokens_for(key, max_tokens, f"{cell.cell_id}:{repeat}:{request_index}",
                                        request_index)
        return dataclasses.replace(template, request_index=request_index, prompt=prompt, system=system,
                                   repeat=repeat, phase=phase, scheduled_s=scheduled_s, max_tokens=tokens)

    return make_spec


def cell_requests(cell: Cell, scenario: Scenario, prompts: PromptSource, worker: int = 0) -> CellRequests:
    """Everything the cell sends, for client process `worker` (see spec_factory)."""
    return CellRequests(spec_factory(cell, scenario, prompts, worker=worker),
                        conversation_starter(cell, scenario, prompts), trace_steps(cell, scenario, prompts))


def cell_max_tokens(cell: Cell, scenario: Scenario) -> Any:
    """What decides a request's max_tokens: the cell's number, `from_data`, or the distribution."""
    distribution = scenario.workload.max_tokens
    return distribution if isinstance(distribution, Distribution) else cell.settings.max_tokens


def conversation_starter(cell: Cell, scenario: Scenario, prompts: PromptSource) -> ConversationStarter | None:
    """Starts the cell's conversations, when the workload is multi-turn."""
    conversation = scenario.workload.conversation
    if conversation is None:
        return None
    turns = cell.settings.turns
    maker = ConversationMaker(
        prompts=prompts, spec=conversation, template=request_template(cell, scenario),
        key=calibration_key(cell), turns=turns if isinstance(turns, int) else None,
        prompt_tokens=cell.settings.prompt_tokens,
        shared_prefix_tokens=cell.settings.shared_prefix_tokens,
        cache=cell.settings.prompt_cache_mode,
        file_conversations=prompts.file_conversations, max_tokens=cell_max_tokens(cell, scenario),
    )
    return maker.start


def trace_steps(cell: Cell, scenario: Scenario, prompts: PromptSource) -> TraceSteps | None:
    """The trace's requests as (offset, conversation) for a cell with arrival: trace."""
    trace = scenario.load.trace
    if cell.settings.arrival != "trace" or trace is None:
        return None
    entries = read_trace(Path(trace.file))
    template = request_template(cell, scenario)
    key = calibration_key(cell)
    cache = cell.settings.prompt_cache_mode
    shared = prompts.system_for(key, cell.settings.shared_prefix_tokens, "reuse", "")

    def steps(repeat: int) -> list[tuple[float, ConversationLike]]:
        return [*trace_conversations(entries, dataclasses.replace(template, repeat=repeat), prompts, key,
                                   trace.time_scale, cache, shared)]

    return steps


def calibration_needed(cell: Cell, scenario: Scenario, prompts: PromptSource) -> bool:
    """Whether `calibrate_cell` will send probes for this cell."""
    synthetic_and_new = prompts.synthetic and calibration_key(cell) not in prompts.calibrations
    return synthetic_and_new and scenario.workload.prompt.calibrate


async def calibrate_cell(cell: Cell, scenario: Scenario, prompts: PromptSource, send: ProbeSend,
                         now_s: Callable[[], float]) -> Calibration | None:
    """Fit chars/token for the cell's key with two warmup-phase probes, unless already known.

    Returns the new calibration (also stored in `prompts.calibrations`), or None when nothing was
    needed (prompts from a file, or the key was calibrated by an earlier cell or session).
    """
    key = calibration_key(cell)
    if key in prompts.calibrations or not prompts.synthetic:
        return None
    if not scenario.workload.prompt.calibrate:
        prompts.calibrations[key] = Calibration(source="default (calibrate: false)")
        return prompts.calibrations[key]
    probe_index = iter((-2, -1))  # negative request_index marks calibration probes

    async def send_probe(text: str) -> RequestRecord:
        spec = RequestSpec(
            cell_id=cell.cell_id, request_index=next(probe_index), surface=cell.surface,
            endpoint=cell.endpoint, model=str(cell.settings.model), prompt=text,
            phase="warmup", max_tokens=1, num_ctx=cell.settings.num_ctx,
            keep_alive=cell.settings.keep_alive, store_text=scenario.store_text,
            timeout_s=scenario.load.timeout_s, deadline_s=scenario.load.request_deadline_s,
            scheduled_s=now_s(),
        )
        return await send(spec)

    prompts.calibrations[key] = await calibrate(send_probe, scenario.workload.seed)
    return prompts.calibrations[key]
