"""keep_alive (cold vs warm) and queue (where 503s come from) analysis of a loaded run.

Pure functions on `bench.records.Run`: no I/O. Both studies rebuild the timeline of each managed
server and model from the records: a request is cold when it paid a model load (native:
load_duration; OpenAI surface: a TTFT jump, or /api/ps showing the model unloaded in the gap
before it), and the expected state follows Ollama's rules (server/sched.go): a request that sets
keep_alive sets how long the idle runner stays; one that leaves it unset (every OpenAI request)
keeps the runner's last value (useLoadedRunner), and only a fresh load takes OLLAMA_KEEP_ALIVE;
a num_ctx change forces a reload.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bench.analysis.metrics import COLD_LOAD_THRESHOLD_NS, request_metrics
from bench.records import Run, missing_as_none
from bench.records.cell_settings import CellSettings

DEFAULT_KEEP_ALIVE = "5m"  # envconfig.KeepAlive default
DEFAULT_CONTEXT_LENGTH = 4096  # envconfig.ContextLength default in recent versions
# Gaps within this fraction of keep_alive are too close to call (timer and poll jitter).
_KEEP_ALIVE_TOLERANCE = 0.15
_GO_DURATION_PART = re.compile(r"(-?\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_GO_UNITS_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def keep_alive_seconds(value: Any) -> float:
    """A keep_alive as Ollama reads it: seconds, or a Go duration ("1h30m"); negative = never (inf)."""
    if value is None:
        return keep_alive_seconds(DEFAULT_KEEP_ALIVE)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        text = str(value).strip()
        try:
            seconds = float(text)  # OLLAMA_KEEP_ALIVE also takes plain seconds
        except ValueError:
            parts = _GO_DURATION_PART.findall(text)
            if not parts or "".join(n + u for n, u in parts) != text:
                raise ValueError(f"invalid keep_alive {value!r}") from None
            seconds = sum(float(n) * _GO_UNITS_S[u] for n, u in parts)
    return math.inf if seconds < 0 else seconds


# --- the per-request timeline ----------------------------------------------------------------


def _server_of_cells(run: Run) -> dict[str, int | None]:
    return {cell.cell_id: cell.server_id for cell in run.manifest.cells}


def _server_entry(run: Run, server_id: int | None) -> dict[str, Any]:
    for server in run.manifest.servers:
        if server.server_id == server_id:
            return server.model_dump(mode="json")
    return {}


def time_scale(run: Run, server_id: int | None) -> float:
    """How many times faster than real time the server ran (`bench sim --speed`); 1 for Ollama.

    The simulator divides every duration, keep_alive included, by its speed, so gaps measured in
    wall seconds compare with keep_alive / speed.
    """
    command = _server_entry(run, server_id).get("command") or []
    for flag, value in zip(command, command[1:]):
        if flag == "--speed":
            return float(value)
    scenario = run.manifest.scenario
    if run.manifest.target.kind == "sim":
        return float((scenario.get("sim") or {}).get("speed") or 1.0)
    return 1.0


def _server_setting(run: Run, server_id: int | None, name: str, settings: CellSettings) -> str | None:
    """A server variable: the cell's own (a swept axis), else its server's environment."""
    value = settings.server_setting(name)
    if value is not None:
        return value
    env = _server_entry(run, server_id).get("env") or {}
    return None if env.get(name) is None else str(env[name])


def request_timeline(run: Run) -> pd.DataFrame:
    """Every answered request (all phases) with server_id, time scale, idle gap before it, and `cold`.

    idle_before_s: seconds between the end of the last earlier request to the same server and
    model and this request's send (0 while others were in flight; NaN for the first one).
    cold: it paid a model load. evidence: load_duration, ttft_jump, ps, or '' when warm.
    """
    frame = request_metrics(run.requests)
    if frame.empty:
        return frame.assign(server_id=[], scale=[], idle_before_s=[], cold=[], evidence=[])
    servers = _server_of_cells(run)
    frame["server_id"] = frame["cell_id"].map(servers)
    frame["scale"] = [time_scale(run, missing_as_none(sid)) for sid in frame["server_id"]]
    answered = frame[frame["error_class"].isna() & frame["sent_s"].notna()].copy()
    answered = answered.sort_values("sent_s", kind="stable")
    keys = [answered["server_id"].fillna(-1), answered["model"]]
    previous_end = answered.groupby(keys)["end_s"].transform(lambda ends: ends.cummax().shift())
    answered["idle_before_s"] = (answered["sent_s"] - previous_end).clip(lower=0.0)
    threshold_s = COLD_LOAD_THRESHOLD_NS / 1e9 / answered["scale"]
    native_cold = answered["load_s"] > threshold_s
    answered["cold"] = native_cold
    answered["evidence"] = np.where(native_cold, "load_duration", "")
    openai = answered["surface"] == "openai"
    if openai.any():
        jump, ps_unloaded = _openai_cold(run, answered, threshold_s)
        answered.loc[openai, "cold"] = (jump | ps_unloaded)[openai]
        answered.loc[openai, "evidence"] = np.where(ps_unloaded, "ps", np.where(jump, "ttft_jump", ""))[openai]
    return answered


def _openai_cold(run: Run, answered: pd.DataFrame, threshold_s: pd.Series) -> tuple[pd.Series, pd.Series]:
    """OpenAI answers carry no load_duration: a TTFT jump over the group's warm TTFT, or /api/ps."""
    group_keys = ["server_id", "model", "surface", "endpoint", "prompt_tokens_group"]
    prompt_tokens = {cell_id: settings.prompt_tokens for cell_id, settings in run.manifest.cell_settings().items()}
    frame = answered.assign(prompt_tokens_group=answered["cell_id"].map(prompt_tokens))
    frame["server_id"] = frame["server_id"].fillna(-1)
    frame["prompt_tokens_group"] = frame["prompt_tokens_group"].fillna(-1)
    # Most requests of a study are warm, so the lower quartile of a group's TTFT is a warm TTFT.
    warm_ttft_s = frame.groupby(group_keys)["ttft_s"].transform(lambda ttft: ttft.quantile(0.25))
    native_loads = answered[(answered["surface"] == "native") & answered["cold"]]
    load_by_model = native_loads.groupby("model")["load_s"].median()
    load_s = frame["model"].map(load_by_model)
    # With a measured native load time, half of it is the jump; otherwise 3x warm TTFT.
    jump_s = np.where(load_s.notna(), 0.5 * load_s, 2.0 * warm_ttft_s)
    jump = (frame["ttft_s"] - warm_ttft_s) > np.maximum(jump_s, threshold_s)
    return jump.fillna(False).astype(bool), _ps_unloaded_in_gap(run, frame)


def _ps_unloaded_in_gap(run: Run, frame: pd.DataFrame) -> pd.Series:
    """True where an /api/ps poll between the previous request's end and this send lacked the model."""
    result = pd.Series(False, index=frame.index)
    if run.ps is None or run.ps.empty:
        return result
    loaded = run.ps.groupby("t_s")["name"].agg(lambda names: {str(n) for n in names if n is not None})
    poll_times = loaded.index.to_numpy(dtype=float)
    for index, row in frame.iterrows():
        gap_start = row["sent_s"] - (row["idle_before_s"] if pd.notna(row["idle_before_s"]) else 0.0)
        if not row["idle_before_s"] > 0:
            continue
        in_gap = (poll_times > gap_start) & (poll_times < row["sent_s"])
        if in_gap.any() and any(row["model"] not in names for names in loaded.iloc[np.flatnonzero(in_gap)]):
            result[index] = True
    return result


# --- keep_alive study ------------------------------------------------------------------------


@dataclass(frozen=True)
class KeepAliveCell:
    """One cell of a keep_alive study: what was sent, what happened, and whether it took effect."""

    cell_id: str
    surface: str
    model: str
    keep_alive_sent: str | None  # the cell's keep_alive setting (None: not sent)
    server_keep_alive: str  # OLLAMA_KEEP_ALIVE of the server (default 5m)
    gap_s: float | None  # idle seconds the scenario put before the cell
    requests: int
    cold_requests: int
    expected_cold_requests: int  # under Ollama's rules (OpenAI surface ignores keep_alive/num_ctx)
    cold_ttft_p50_s: float
    warm_ttft_p50_s: float
    verdict: str  # one plain-language line


@dataclass(frozen=True)
class KeepAliveStudy:
    requests: pd.DataFrame  # measure-phase timeline: cold, evidence, idle_before_s, expected_cold
    cells: tuple[KeepAliveCell, ...]
    cold_ttft_p50_s: float
    warm_ttft_p50_s: float
    cold_penalty_s: float  # median cold TTFT - median warm TTFT (NaN when one side is empty)

    def cells_frame(self) -> pd.DataFrame:
        return pd.DataFrame([cell.__dict__ for cell in self.cells])


def _expected_cold(run: Run, timeline: pd.DataFrame, honor_openai: bool) -> pd.Series:
    """Replays the scheduler's keep_alive/num_ctx rules; True/False, or None where too close to call."""
    settings_of = run.manifest.cell_settings()
    expected: dict[Any, bool | None] = {}
    for (_, _), requests in timeline.groupby([timeline["server_id"].fillna(-1), "model"], sort=False):
        loaded_ctx: Any = "unloaded"
        keep_alive_s = 0.0
        loading_until_s = -math.inf  # requests arriving while a load runs wait for it: cold too
        for index, row in requests.iterrows():
            cell_settings = settings_of.get(row["cell_id"], CellSettings())
            server_id = missing_as_none(row["server_id"])
            honored = row["surface"] == "native" or honor_openai
            sent_keep_alive = cell_settings.keep_alive
            server_default = _server_setting(run, server_id, "OLLAMA_KEEP_ALIVE", cell_settings) or DEFAULT_KEEP_ALIVE
            # None: the request leaves keep_alive unset (nil): a loaded runner keeps its value.
            request_keep_alive = keep_alive_seconds(sent_keep_alive) if honored and sent_keep_alive is not None else None
            sent_ctx = cell_settings.num_ctx
            ctx = sent_ctx if honored and sent_ctx is not None else "default"
            idle_s = row["idle_before_s"]
            wall_keep_alive_s = keep_alive_s / row["scale"]
            if loaded_ctx == "unloaded":
                cold: bool | None = True
            elif row["sent_s"] < loading_until_s and ctx == loaded_ctx:
                cold = True
            elif ctx != loaded_ctx:
                cold = True  # a different num_ctx forces a reload
            elif not idle_s > 0:
                cold = False  # others still in flight: the runner cannot expire
            elif keep_alive_s == 0:
                cold = True
            elif abs(idle_s - wall_keep_alive_s) <= _KEEP_ALIVE_TOLERANCE * wall_keep_alive_s:
                cold = None
            else:
                cold = bool(idle_s > wall_keep_alive_s)
            expected[index] = cold
            if cold and not row["sent_s"] < loading_until_s:
                load_s = row["load_s"] if pd.notna(row["load_s"]) else row["ttft_s"]
                loading_until_s = row["sent_s"] + (load_s if pd.notna(load_s) else 0.0)
            if request_keep_alive is not None:
                keep_alive_s = request_keep_alive  # a set keep_alive replaces the runner's
            elif cold is not False:
                keep_alive_s = keep_alive_seconds(server_default)  # a fresh load starts at OLLAMA_KEEP_ALIVE
            loaded_ctx = ctx
    return pd.Series(expected, dtype=object).reindex(timeline.index)


def keep_alive_study(run: Run) -> KeepAliveStudy:
    """Cold vs warm per request, the TTFT a cold load adds, and whether keep_alive took effect."""
    timeline = request_timeline(run)
    if timeline.empty:
        empty = timeline.assign(expected_cold=[], expected_cold_as_sent=[])
        return KeepAliveStudy(empty, (), math.nan, math.nan, math.nan)
    timeline["expected_cold"] = _expected_cold(run, timeline, honor_openai=False)
    timeline["expected_cold_as_sent"] = _expected_cold(run, timeline, honor_openai=True)
    measured = timeline[timeline["phase"].fillna("measure") == "measure"]
    cold_ttft = measured.loc[measured["cold"].astype(bool), "ttft_s"]
    warm_ttft = measured.loc[~measured["cold"].astype(bool), "ttft_s"]
    cells = tuple(_keep_alive_cell(run, cell_id, rows) for cell_id, rows in measured.groupby("cell_id", sort=False))
    cold_p50 = float(cold_ttft.median()) if len(cold_ttft) else math.nan
    warm_p50 = float(warm_ttft.median()) if len(warm_ttft) else math.nan
    return KeepAliveStudy(measured, cells, cold_p50, warm_p50, cold_p50 - warm_p50)


def _keep_alive_cell(run: Run, cell_id: str, rows: pd.DataFrame) -> KeepAliveCell:
    settings = run.manifest.cell_settings().get(cell_id, CellSettings())
    server_id = missing_as_none(rows["server_id"].iloc[0])
    sent = settings.keep_alive
    server_keep_alive = _server_setting(run, server_id, "OLLAMA_KEEP_ALIVE", settings) or DEFAULT_KEEP_ALIVE
    cold = rows["cold"].astype(bool)
    surface = str(rows["surface"].iloc[0])
    verdict = _keep_alive_verdict(run, rows, surface, sent, server_keep_alive, settings)
    return KeepAliveCell(
        cell_id=cell_id, surface=surface, model=str(rows["model"].iloc[0]),
        keep_alive_sent=None if sent is None else str(sent), server_keep_alive=server_keep_alive,
        gap_s=settings.gap_s, requests=len(rows), cold_requests=int(cold.sum()),
        expected_cold_requests=int((rows["expected_cold"] == True).sum()),  # noqa: E712 - object column
        cold_ttft_p50_s=float(rows.loc[cold, "ttft_s"].median()) if cold.any() else math.nan,
        warm_ttft_p50_s=float(rows.loc[~cold, "ttft_s"].median()) if (~cold).any() else math.nan,
        verdict=verdict,
    )


def _mismatches(rows: pd.DataFrame, column: str) -> int:
    known = rows[column].notna()
    return int((rows.loc[known, column].astype(bool) != rows.loc[known, "cold"].astype(bool)).sum())


def _keep_alive_verdict(
    run: Run, rows: pd.DataFrame, surface: str, sent: Any, server_keep_alive: str, settings: CellSettings
) -> str:
    cold = int(rows["cold"].astype(bool).sum())
    base = f"{cold} of {len(rows)} requests paid a cold load"
    if surface != "openai":
        return base
    lines = [base]
    if sent is not None:
        as_sent, ignored = _mismatches(rows, "expected_cold_as_sent"), _mismatches(rows, "expected_cold")
        if as_sent == ignored:
            lines.append(f"keep_alive {sent} in the OpenAI body: cannot tell from this run whether it took "
                         "effect (the gaps do not separate it from the keep_alive the model already had)")
        elif ignored < as_sent:
            lines.append(f"keep_alive {sent} in the OpenAI body was ignored: the request left keep_alive unset, "
                         f"so the model kept its last explicit keep_alive (OLLAMA_KEEP_ALIVE {server_keep_alive} "
                         "applies only to a fresh load)")
        else:
            lines.append(f"keep_alive {sent} in the OpenAI body took effect")
    if settings.num_ctx is not None:
        lines.append(_num_ctx_verdict(run, rows, settings.num_ctx, settings))
    return "; ".join(lines)


def _num_ctx_verdict(run: Run, rows: pd.DataFrame, num_ctx: int, settings: CellSettings) -> str:
    model = str(rows["model"].iloc[0])
    if run.ps is None or run.ps.empty:
        return f"num_ctx {num_ctx} in the OpenAI body: no /api/ps data to tell whether it took effect"
    start, end = float(rows["sent_s"].min()), float(rows["end_s"].max())
    during = run.ps[(run.ps["t_s"] >= start) & (run.ps["t_s"] <= end) & (run.ps["name"] == model)]
    lengths = sorted({int(v) for v in during["context_length"].dropna()})
    if not lengths:
        return f"num_ctx {num_ctx} in the OpenAI body: /api/ps reported no context_length during the cell"
    parallel = int(settings.server_setting("OLLAMA_NUM_PARALLEL") or 1)
    if any(length in (num_ctx, num_ctx * parallel) for length in lengths):
        return f"num_ctx {num_ctx} in the OpenAI body took effect (/api/ps context_length {lengths[-1]})"
    return (f"num_ctx {num_ctx} in the OpenAI body was ignored: /api/ps context_length {lengths[-1]} "
            "(the server's default context applied)")


# --- queue study -----------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueCell:
    """One cell of a queue study: load offered, what was rejected, and when."""

    cell_id: str
    max_queue: str | None  # OLLAMA_MAX_QUEUE of the server (None: Ollama's default 512)
    offered_concurrency: int | None
    rate_rps: float | None
    requests: int
    rejected: int
    rejection_rate: float
    rejected_while_loading: int  # during a model load or reload
    rejected_while_warm: int
    model_state: str  # cold | reload | warm: how the cell found the model
    queue_wait_p50_s: float
    queue_wait_p95_s: float
    verdict: str


def _load_windows(timeline: pd.DataFrame, num_ctx: dict[str, int | None]) -> list[tuple[Any, str, float, float, str]]:
    """(server_id, model, start_s, end_s, kind) of every load: from a cold request's send to when it
    got the runner. `num_ctx`: cell_id -> the num_ctx its requests sent (None: the server's default)."""
    windows = []
    for (server_id, model), rows in timeline.groupby([timeline["server_id"].fillna(-1), "model"], sort=False):
        previous_ctx: Any = None
        for _, row in rows.iterrows():
            ctx = num_ctx.get(row["cell_id"])
            if row["cold"]:
                kind = "reload" if previous_ctx is not None and ctx != previous_ctx else "load"
                load_s = row["load_s"] if pd.notna(row["load_s"]) else max(0.0, row["ttft_s"])
                windows.append((server_id, model, float(row["sent_s"]), float(row["sent_s"] + load_s), kind))
            previous_ctx = ctx if ctx is not None else "default"
    return windows


def _loading_at(t: float, windows: list[tuple[float, float, str]], first_tokens: np.ndarray, slack_s: float) -> bool:
    """Whether the model was loading (or not loaded yet) at t: inside a load window, or after the
    latest load began and before any request got its first token from the new runner."""
    if any(start - slack_s <= t <= end + slack_s for start, end, _ in windows):
        return True
    starts = [start for start, _, _ in windows if start - slack_s <= t]
    if not starts:
        return not bool((first_tokens <= t).any())
    latest = max(starts)
    return not bool(((first_tokens >= latest) & (first_tokens <= t)).any())


def queue_study(run: Run) -> tuple[QueueCell, ...]:
    """Per cell: offered load, rejection rate, queue wait, and whether 503s came while the model loaded."""
    timeline = request_timeline(run)
    settings_of = run.manifest.cell_settings()
    windows = _load_windows(timeline, {cell_id: settings.num_ctx for cell_id, settings in settings_of.items()})
    everything = request_metrics(run.requests)
    everything = everything[everything["phase"].fillna("measure") == "measure"]
    servers = _server_of_cells(run)
    cells = []
    for cell_id, rows in everything.groupby("cell_id", sort=False):
        settings = settings_of.get(str(cell_id), CellSettings())
        server_id = servers.get(str(cell_id))
        key = -1 if server_id is None else server_id
        model = str(rows["model"].iloc[0])
        model_windows = [(s, e, k) for sid, m, s, e, k in windows if sid == key and m == model]
        rejected = rows[rows["error_class"] == "rejected"]
        # Concurrent sends are stamped in any order, so a 503 may carry a send time a little before
        # that of the request that triggered the load; 100 ms of slack either side covers it.
        slack_s = 0.1
        served = timeline[(timeline["server_id"].fillna(-1) == key) & (timeline["model"] == model)]
        first_tokens = served["first_token_s"].dropna().to_numpy(dtype=float)
        while_loading = sum(
            _loading_at(float(t), model_windows, first_tokens, slack_s)
            for t in rejected["sent_s"].fillna(-math.inf)
        )
        cell_start, cell_end = float(rows["sent_s"].min()), float(rows["end_s"].max())
        kinds = {k for s, e, k in model_windows if e >= cell_start and s <= cell_end}
        state = "reload" if "reload" in kinds else ("cold" if "load" in kinds else "warm")
        waits = rows.loc[rows["error_class"].isna(), "queue_wait_s"].dropna()
        max_queue = _server_setting(run, server_id, "OLLAMA_MAX_QUEUE", settings)
        cell = QueueCell(
            cell_id=str(cell_id), max_queue=max_queue,
            offered_concurrency=settings.concurrency, rate_rps=settings.rate_rps, requests=len(rows), rejected=len(rejected),
            rejection_rate=len(rejected) / len(rows) if len(rows) else math.nan,
            rejected_while_loading=int(while_loading), rejected_while_warm=len(rejected) - int(while_loading),
            model_state=state,
            queue_wait_p50_s=float(waits.quantile(0.5)) if len(waits) else math.nan,
            queue_wait_p95_s=float(waits.quantile(0.95)) if len(waits) else math.nan,
            verdict="",
        )
        cells.append(_with_queue_verdict(cell))
    return tuple(cells)


def _with_queue_verdict(cell: QueueCell) -> QueueCell:
    queue = f"MAX_QUEUE {cell.max_queue or '512 (default)'}"
    state = {"cold": "a cold model", "reload": "a model forced to reload", "warm": "the warm model"}[cell.model_state]
    if cell.rejected == 0:
        verdict = f"none of {cell.requests} requests rejected against {state} ({queue})"
    elif cell.rejected_while_warm == 0:
        during = "reload" if cell.model_state == "reload" else "load"
        verdict = (f"{cell.rejected} of {cell.requests} requests rejected (503), all during the model {during}: "
                   f"{queue} bounds only the scheduler's pending queue; against the warm model nothing was rejected")
    else:
        verdict = (f"{cell.rejected} of {cell.requests} requests rejected (503), {cell.rejected_while_warm} of them "
                   f"while the model was warm ({queue}): Ollama's scheduler does not do that; check the server log")
    return QueueCell(**{**cell.__dict__, "verdict": verdict})
