"""The probes, in the order they run (later ones rely on earlier ones leaving models loaded)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bench.conformance import probes_api, probes_gen, probes_sched
from bench.conformance.checks import Check
from bench.conformance.session import ProbeSession


@dataclass(frozen=True)
class Probe:
    name: str
    what: str
    run: Callable[[ProbeSession], Awaitable[dict[str, Check]]]


PROBES: tuple[Probe, ...] = (
    Probe("version", "/api/version and GET /", probes_api.probe_version),
    Probe("unknown model", "404/400 status and body per endpoint", probes_api.probe_unknown_model),
    Probe("bad request", "bad options, keep_alive, body, capability", probes_api.probe_bad_request),
    Probe("ndjson stream", "/api/generate, /api/chat line shapes", probes_api.probe_ndjson),
    Probe("sse stream", "/v1 chat + completions: role, finish, usage", probes_api.probe_sse),
    Probe("cold burst", "8 at once, NUM_PARALLEL=2 MAX_QUEUE=3", probes_sched.probe_cold_burst),
    Probe("fast path", "warm model served while another loads", probes_sched.probe_fast_path),
    Probe("keep_alive", "default, set, inherited, OpenAI, expiry", probes_sched.probe_keep_alive),
    Probe("eviction", "MAX_LOADED_MODELS=2: shortest keep_alive", probes_sched.probe_eviction),
    Probe("api/ps", "fields of a loaded model", probes_sched.probe_ps),
    Probe("context", "default num_ctx / batch; num_ctx past train", probes_gen.probe_context),
    Probe("num_predict", "set, 0, -1 and past 10 x num_ctx", probes_gen.probe_num_predict),
    Probe("truncation", "prompt past num_ctx, shift on/off, chat", probes_gen.probe_truncation),
    Probe("prompt cache", "repeated prefix: counts and durations", probes_gen.probe_prompt_cache),
    Probe("embeddings", "/api/embed, /api/embeddings, /v1", probes_gen.probe_embeddings),
)

PROBE_NAMES = tuple(probe.name for probe in PROBES)


async def run_probes(session: ProbeSession, names: tuple[str, ...] = PROBE_NAMES) -> dict[str, dict[str, Check]]:
    """Every selected probe in order; a probe that fails records its error as its one field."""
    observed: dict[str, dict[str, Check]] = {}
    for probe in PROBES:
        if probe.name not in names:
            continue
        try:
            observed[probe.name] = await probe.run(session)
        except Exception as error:  # noqa: BLE001 - one broken probe must not hide the others
            from bench.conformance.checks import exact

            observed[probe.name] = {"probe error": exact(f"{type(error).__name__}: {str(error)[:160]}")}
    return observed
