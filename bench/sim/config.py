"""The simulator's configuration: OLLAMA_* variables read as Ollama reads them, plus sim knobs.

`build_config` is the one parser used by both `bench sim` and `bench.sim.testing.running_sim`.
"""

from __future__ import annotations


from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.sim import context
from bench.sim.catalog import Catalog, GpuProfile, load_catalog
from bench.sim.catalog import _merge as merge_entries
from bench.sim.durations import keep_alive_s, parse_bytes
from bench.sim.config_errors import SimConfigError
from bench.sim.memory import KV_TYPE_BYTES
from bench.sim.versions import V0_33, OllamaRules, rules_for
from bench.numbers import MAX_SECONDS
from bench.processes import is_loopback

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 11434
DEFAULT_GPU = "rtx4090"
ENGINES = ("simulated", "llama-server")


@dataclass(frozen=True)
class FaultConfig:
    """Injected failures, each a per-request probability (seeded); all off by default."""

    error_rate: float = 0.0  # 500 before anything is sent
    cut_rate: float = 0.0  # stream closed mid-way without a done line
    stall_rate: float = 0.0  # stream pauses stall_s (wall seconds, not scaled by --speed)
    stall_s: float = 5.0
    malformed_rate: float = 0.0  # one garbage line inside the stream
    no_done_rate: float = 0.0  # stream ends cleanly (HTTP-wise) but never sends done / [DONE]
    oom_rate: float = 0.0  # the runner reports "out of memory": 500, and every model expires (runtime OOM)

    def __post_init__(self) -> None:
        # bench's one ceiling for every duration (bench.numbers.MAX_SECONDS): a stall of 1e300 s
        # (or inf, nan) is no fault to study, it is a server that hangs its streams for good.
        if not 0.0 <= self.stall_s <= MAX_SECONDS:
            raise SimConfigError(f"stall_s {self.stall_s}: expected seconds between 0 and {MAX_SECONDS:g} (a week)")

    @property
    def any(self) -> bool:
        rates = (self.error_rate, self.cut_rate, self.stall_rate, self.malformed_rate, self.no_done_rate, self.oom_rate)
        return any(rate > 0 for rate in rates)


@dataclass(frozen=True)
class SimConfig:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    num_parallel: int = 1
    max_queue: int = 512
    keep_alive_s: float = 300.0
    max_loaded_models: int = 0  # 0: automatic, 3 per GPU
    context_length: int = 0  # OLLAMA_CONTEXT_LENGTH; 0: automatic (v0.33 VRAM tiers, v0.12.6 4096)
    kv_cache_type: str = "f16"
    kv_cache_type_set: bool = False  # OLLAMA_KV_CACHE_TYPE given (v0.33 passes it to llama-server as is)
    flash_attention: bool | None = None  # OLLAMA_FLASH_ATTENTION; None: unset (v0.33: llama-server auto)
    gpu_overhead_bytes: int = 0
    host_memory_bytes: int = 64 * 2**30
    gpu: GpuProfile | None = None
    seed: int = 0
    speed: float = 1.0
    catalog: Catalog = field(default_factory=Catalog)
    faults: FaultConfig = field(default_factory=FaultConfig)
    emit_log_path: Path | None = None
    rules: OllamaRules = V0_33
    engine: str = "simulated"
    # OLLAMA_GO_TEMPLATE (v0.33, default true): Ollama renders chat prompts with the model's Go
    # TEMPLATE and calls llama-server /completion; false sends chat to llama-server's own Jinja
    # /v1/chat/completions (routes.go shouldUseGoTemplate, chatModeForModel).
    go_template: bool = True
    # --engine llama-server: the binary (None: PATH, then the `engine` extra), model name → GGUF
    # file (--model-file), and where each runner's log goes (None: a temporary file).
    llama_server_path: str | None = None
    model_files: dict[str, Path] = field(default_factory=dict)
    engine_log_dir: Path | None = None

    @property
    def kv_bytes_per_element(self) -> float:
        return KV_TYPE_BYTES[self.effective_kv_cache_type]

    @property
    def effective_kv_cache_type(self) -> str:
        if self.rules.llama_server_memory:
            return self.kv_cache_type  # v0.33: --cache-type-k/v whenever set, no flash-attention gate
        # v0.12.6 only honoured a quantised KV cache with flash attention on; else f16.
        return self.kv_cache_type if self.flash_attention else "f16"

    @property
    def default_num_ctx(self) -> int:
        """num_ctx when a request and OLLAMA_CONTEXT_LENGTH leave it unset."""
        if self.context_length > 0:
            return self.context_length
        if not self.rules.tiered_default_ctx or self.gpu is None:
            return context.LEGACY_DEFAULT_NUM_CTX
        return context.default_num_ctx(self.gpu.memory_bytes, self.gpu_overhead_bytes)


def _uint(env: Mapping[str, str], name: str, default: int, zero_is_default: bool = True) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SimConfigError(f"{name}={raw!r}: expected a non-negative integer") from None
    if value < 0:
        raise SimConfigError(f"{name}={raw!r}: expected a non-negative integer")
    # The scheduler treats 0 as "automatic" for NUM_PARALLEL and MAX_LOADED_MODELS; a MAX_QUEUE of 0
    # is taken literally (an unbuffered pending channel).
    return value or default if zero_is_default else value


def _bool(env: Mapping[str, str], name: str) -> bool | None:
    raw = env.get(name, "").strip().lower()
    if raw == "":
        return None
    if raw in ("0", "false", "f", "no", "off"):
        return False
    if raw in ("1", "true", "t", "yes", "on"):
        return True
    raise SimConfigError(f"{name}={env[name]!r}: expected a boolean (1/0/true/false)")


def _rate(env: Mapping[str, str], name: str, override: float | None) -> float:
    if override is not None:
        value, where = override, name
    else:
        raw = env.get(name, "").strip()
        if not raw:
            return 0.0
        try:
            value, where = float(raw), f"{name}={raw!r}"
        except ValueError:
            raise SimConfigError(f"{name}={raw!r}: expected a number between 0 and 1") from None
    if not 0.0 <= value <= 1.0:
        raise SimConfigError(f"{where}: expected a number between 0 and 1, got {value}")
    return value


def _seconds(env: Mapping[str, str], name: str, override: float | None, default: float) -> float:
    """A duration from a flag (already bounded by the CLI) or variable `name`: 0 to MAX_SECONDS."""
    if override is not None:
        value, where = override, name
    else:
        raw = env.get(name, "").strip()
        if not raw:
            return default
        try:
            value, where = float(raw), f"{name}={raw!r}"
        except ValueError:
            raise SimConfigError(f"{name}={raw!r}: expected seconds") from None
    if not 0.0 <= value <= MAX_SECONDS:  # nan and inf fail this too
        raise SimConfigError(f"{where}: expected seconds between 0 and {MAX_SECONDS:g} (a week), got {value}")
    return value


def parse_host(raw: str) -> tuple[str, int]:
    """OLLAMA_HOST as envconfig.Host reads it: [scheme://]host[:port], defaults 127.0.0.1:11434."""
    text = raw.strip().strip("\"'")
    if not text:
        return DEFAULT_HOST, DEFAULT_PORT
    if "://" not in text:
        text = f"http://{text}"
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise SimConfigError(f"OLLAMA_HOST={raw!r}: expected [scheme://]host[:port]") from None
    host = parts.hostname or DEFAULT_HOST
    return host, port if port is not None else DEFAULT_PORT


def loopback_host(host: str, where: str, hint: str = "") -> str:
    """`host` if it is a loopback address, else SimConfigError naming where it came from.

    bench sim is a teaching and test target with no authentication: it never listens beyond the
    machine, even when OLLAMA_HOST (often exported for a real `ollama serve`) says 0.0.0.0.
    """
    if not is_loopback(host):
        raise SimConfigError(
            f"{where}: bench sim listens on loopback only (127.0.0.1, ::1 or localhost), not {host!r}{hint}")
    return host


def build_config(
    env: Mapping[str, str],
    *,
    host: str | None = None,
    port: int | None = None,
    gpu: str | None = None,
    gpu_memory: str | None = None,
    seed: int = 0,
    catalog_path: str | Path | None = None,
    speed: float = 1.0,
    faults: FaultConfig | None = None,
    fault_rates: Mapping[str, float | None] | None = None,
    emit_log_path: str | Path | None = None,
    ollama_version: str | None = None,
    engine: str | None = None,
    host_memory: str | None = None,
    llama_server: str | None = None,
    model_files: Sequence[str] = (),
    engine_log_dir: str | Path | None = None,
    calibrated: Mapping[str, Any] | None = None,
) -> SimConfig:
    """Resolve flags over OLLAMA_* / BENCH_SIM_* variables into a SimConfig; bad values raise SimConfigError."""
    env_host, env_port = parse_host(env.get("OLLAMA_HOST", ""))
    raw_keep_alive = env.get("OLLAMA_KEEP_ALIVE", "").strip()
    try:
        default_keep_alive_s = keep_alive_s(raw_keep_alive) if raw_keep_alive else 300.0
    except ValueError:
        raise SimConfigError(f"OLLAMA_KEEP_ALIVE={raw_keep_alive!r}: expected a duration like 5m, 1h30m, 0 or -1") from None
    raw_kv_type = env.get("OLLAMA_KV_CACHE_TYPE", "").strip().lower()
    kv_type = raw_kv_type or "f16"
    if kv_type not in KV_TYPE_BYTES:
        raise SimConfigError(f"OLLAMA_KV_CACHE_TYPE={kv_type!r}: expected one of {', '.join(KV_TYPE_BYTES)}")
    rules = rules_for(ollama_version or env.get("BENCH_SIM_OLLAMA_VERSION", "") or V0_33.version)
    engine_name = (engine or env.get("BENCH_SIM_ENGINE", "") or "simulated").strip().lower()
    if engine_name not in ENGINES:
        raise SimConfigError(f"--engine {engine_name!r}: expected one of {', '.join(ENGINES)}")
    max_queue = _uint(env, "OLLAMA_MAX_QUEUE", 512, zero_is_default=False)
    if speed <= 0:
        raise SimConfigError(f"--speed {speed}: must be > 0")
    catalog = with_engine_models(load_catalog(catalog_path), model_files, engine_name)
    if calibrated is not None:
        # --calibrate RUN_DIR: a profile measured on the user's machine, served as --gpu calibrated.
        if gpu:
            raise SimConfigError(f"--gpu {gpu} with --calibrate: the calibration is the GPU profile; drop --gpu")
        catalog, gpu = _with_calibrated(catalog, calibrated)
    if engine_name == "llama-server" and not gpu and not env.get("BENCH_SIM_GPU", "").strip():
        gpu = "cpu"  # the engine runs on this machine's CPU: Ollama's CPU-only rules apply
    gpu_name = (gpu or env.get("BENCH_SIM_GPU", "") or DEFAULT_GPU).strip().lower()
    profile = catalog.gpus.get(gpu_name)
    if profile is None:
        raise SimConfigError(f"--gpu {gpu_name!r}: unknown GPU; choose one of {', '.join(sorted(catalog.gpus))}")
    if gpu_memory:
        profile = GpuProfile(**{**profile.__dict__, "memory_bytes": parse_bytes(gpu_memory, "--gpu-memory")})
    raw_overhead = env.get("OLLAMA_GPU_OVERHEAD", "").strip()
    gpu_overhead = parse_bytes(raw_overhead, "OLLAMA_GPU_OVERHEAD") if raw_overhead else 0
    if faults is None:
        rates = dict(fault_rates or {})
        faults = FaultConfig(
            error_rate=_rate(env, "BENCH_SIM_FAULT_ERROR_RATE", rates.get("error_rate")),
            cut_rate=_rate(env, "BENCH_SIM_FAULT_CUT_RATE", rates.get("cut_rate")),
            stall_rate=_rate(env, "BENCH_SIM_FAULT_STALL_RATE", rates.get("stall_rate")),
            stall_s=_seconds(env, "BENCH_SIM_FAULT_STALL_S", rates.get("stall_s"), 5.0),
            malformed_rate=_rate(env, "BENCH_SIM_FAULT_MALFORMED_RATE", rates.get("malformed_rate")),
            no_done_rate=_rate(env, "BENCH_SIM_FAULT_NO_DONE_RATE", rates.get("no_done_rate")),
            oom_rate=_rate(env, "BENCH_SIM_FAULT_OOM_RATE", rates.get("oom_rate")),
        )
    raw_host = host_memory or env.get("BENCH_SIM_HOST_MEMORY", "").strip()
    host_memory_bytes = parse_bytes(raw_host, "--host-memory") if raw_host else profile.host_memory_bytes
    return SimConfig(
        host=(loopback_host(host, f"--host {host}") if host else
              loopback_host(env_host, f"OLLAMA_HOST={env.get('OLLAMA_HOST', '').strip()}",
                            "; unset it for bench sim or pass --host 127.0.0.1")),
        port=port if port is not None else env_port,
        num_parallel=_uint(env, "OLLAMA_NUM_PARALLEL", 1),
        # v0.12.6 had no such variable: it always rendered the prompt itself.
        go_template=not rules.llama_server_memory or _bool(env, "OLLAMA_GO_TEMPLATE") is not False,
        max_queue=max_queue,
        keep_alive_s=default_keep_alive_s,
        max_loaded_models=_uint(env, "OLLAMA_MAX_LOADED_MODELS", 0),
        context_length=_uint(env, "OLLAMA_CONTEXT_LENGTH", 0),
        kv_cache_type=kv_type,
        kv_cache_type_set=bool(raw_kv_type),
        flash_attention=_bool(env, "OLLAMA_FLASH_ATTENTION"),
        gpu_overhead_bytes=gpu_overhead,
        host_memory_bytes=host_memory_bytes,
        gpu=profile,
        seed=seed,
        speed=speed,
        catalog=catalog,
        faults=faults,
        emit_log_path=Path(emit_log_path) if emit_log_path else None,
        rules=rules,
        engine=engine_name,
        llama_server_path=llama_server or env.get("BENCH_SIM_LLAMA_SERVER", "").strip() or None,
        model_files=engine_model_files(model_files),
        engine_log_dir=Path(engine_log_dir) if engine_log_dir else None,
    )


def _with_calibrated(catalog: Catalog, calibrated: Mapping[str, Any]) -> tuple[Catalog, str]:
    """The catalog with the calibrated profile, and its name.

    A run measured without a GPU gives memory 0: a machine with no GPU memory, Ollama's CPU-only
    rules, as the engine's own "cpu" profile. A --catalog file may not say 0 (a typo there), so
    the profile is read with a placeholder size and given its 0 afterwards.
    """
    entry = dict(calibrated["gpus"][0])
    no_gpu = str(entry["memory"]).strip() == "0"
    merged = merge_entries(catalog, {"gpus": [{**entry, "memory": "1" if no_gpu else entry["memory"]}]}, "--calibrate")
    name = str(entry["name"])
    if no_gpu:
        profile = GpuProfile(**{**merged.gpus[name].__dict__, "memory_bytes": 0})
        merged = Catalog(models=merged.models, gpus={**merged.gpus, name: profile})
    return merged, name


def engine_model_files(pairs: Sequence[str]) -> dict[str, Path]:
    """--model-file NAME=PATH values; a bad pair is one SimConfigError line."""
    if not pairs:
        return {}
    from bench.engine.models import parse_model_files
    from bench.errors import UsageError

    try:
        return parse_model_files(list(pairs))
    except UsageError as error:
        raise SimConfigError(str(error)) from None


def with_engine_models(catalog: Catalog, model_files: Sequence[str], engine_name: str) -> Catalog:
    """The catalog plus the `bench gguf make` presets (both engines serve them by name) and, for
    --engine llama-server, one entry per --model-file read from the GGUF's own metadata, and a
    "cpu" device profile (no GPU memory: Ollama's CPU-only context and preflight rules)."""
    from bench.engine.models import file_entry, preset_entries
    from bench.errors import UsageError

    if model_files and engine_name != "llama-server":
        raise SimConfigError("--model-file: only with --engine llama-server")
    files = []
    for name, path in engine_model_files(model_files).items():
        try:
            files.append(file_entry(name, path))
        except UsageError as error:
            raise SimConfigError(f"--model-file {name}: {error}") from None
    presets = merge_entries(Catalog(), {"models": preset_entries()}, "bench gguf presets")
    named = merge_entries(Catalog(), {"models": files}, "--model-file")
    # Catalog entries win over presets of the same name; a file the user named wins over both.
    models = {**presets.models, **catalog.models, **named.models}
    # Only Ollama's CPU-only rules use it (the engine's speed is its own); for the simulated backend
    # it is a rough desktop CPU: --calibrate a run of this machine for its real figures.
    cpu = GpuProfile(name="cpu", label="CPU (llama-server)", memory_bytes=0, decode_bandwidth_bytes_per_s=30e9,
                     step_overhead_s=0.0, prefill_flops=1e12, cpu_bandwidth_bytes_per_s=30e9, cpu_flops=1e12,
                     speed_basis="a rough desktop CPU (not measured)")
    return Catalog(models=models, gpus={"cpu": cpu, **catalog.gpus})
