"""`bench sim`: serve the simulated Ollama (parse flags, call bench.sim.server.serve, print)."""

from __future__ import annotations

import os

import click

from bench.cli import params

from bench.errors import BenchError


class SimError(BenchError):
    """A bad simulator flag or OLLAMA_* value (shown as one line, exit 2)."""


@click.command("sim")
@click.option("--host", default=None, help="Address to bind (default from OLLAMA_HOST, else 127.0.0.1).")
@click.option("--port", type=params.LISTEN_PORT, default=None,
              help="Port, 0 for any free one (default from OLLAMA_HOST, else 11434).")
@click.option("--gpu", "gpu", default=None, help="GPU profile: h100, a100-80gb, l40s, rtx4090 (default), l4, rtx4080, m2-ultra.")
@click.option("--gpu-memory", default=None, help="Override the profile's memory, e.g. 24GiB.")
@click.option("--seed", type=params.SEED, default=0, show_default=True, help="Seed for text, jitter and faults.")
@click.option("--catalog", "catalog_path", type=click.Path(dir_okay=False), default=None, help="YAML file extending the model/GPU catalog.")
@click.option("--speed", type=params.SPEED, default=1.0, show_default=True, help="Divide every simulated duration by this factor.")
@click.option("--fault-error-rate", type=params.FRACTION, default=None, help="Fraction of requests answered 500.")
@click.option("--fault-cut-rate", type=params.FRACTION, default=None, help="Fraction of streams cut mid-way (no done line).")
@click.option("--fault-stall-rate", type=params.FRACTION, default=None, help="Fraction of streams that stall once.")
@click.option("--fault-stall-s", type=params.SECONDS_OR_ZERO, default=None, help="Stall length in wall seconds (default 5).")
@click.option("--fault-malformed-rate", type=params.FRACTION, default=None, help="Fraction of streams with one garbage line.")
@click.option("--fault-no-done-rate", type=params.FRACTION, default=None, help="Fraction of streams that end without a done line / [DONE].")
@click.option("--fault-oom-rate", type=params.FRACTION, default=None, help="Fraction of requests failing with a runtime out-of-memory (every model then expires).")
@click.option("--ollama-version", default=None, help="Ollama release to behave as: 0.33.0 (default) or 0.12.6 [env BENCH_SIM_OLLAMA_VERSION].")
@click.option("--engine", default=None, help="What serves loaded models: simulated (default) or llama-server [env BENCH_SIM_ENGINE].")
@click.option("--llama-server", "llama_server", default=None, help="llama-server binary for --engine llama-server (default: PATH, then the engine extra) [env BENCH_SIM_LLAMA_SERVER].")
@click.option("--model-file", "model_files", multiple=True, metavar="NAME=PATH", help="Serve a GGUF file as model NAME (--engine llama-server; repeatable). Presets from `bench gguf presets` are served by name without it.")
@click.option("--engine-log-dir", type=click.Path(file_okay=False), default=None, help="Keep each llama-server's log here (default: a temporary file per runner).")
@click.option("--host-memory", default=None, help="System RAM of the simulated machine, e.g. 64GiB (default from the GPU profile).")
@click.option("--calibrate", "calibrate_dir", type=click.Path(file_okay=False), default=None,
              help="Serve a GPU profile measured from RUN_DIR: a run at concurrency 1 on a real server "
                   "(its own prefill and decode rates); then explore NUM_PARALLEL, num_ctx, keep_alive here.")
@click.option("--speed-table", is_flag=True,
              help="Print the published llama.cpp measurements beside what each GPU profile simulates, and exit.")
@click.option("--emit-log", type=click.Path(dir_okay=False), default=None, help="Append a JSONL line per streamed chunk (request id, index, monotonic time).")
@click.option("--log-level", type=click.Choice(["critical", "error", "warning", "info", "debug"]), default="warning", show_default=True)
def sim(
    host: str | None, port: int | None, gpu: str | None, gpu_memory: str | None, seed: int, catalog_path: str | None,
    speed: float, fault_error_rate: float | None, fault_cut_rate: float | None, fault_stall_rate: float | None,
    fault_stall_s: float | None, fault_malformed_rate: float | None, fault_no_done_rate: float | None,
    fault_oom_rate: float | None, ollama_version: str | None, engine: str | None, llama_server: str | None,
    model_files: tuple[str, ...], engine_log_dir: str | None, host_memory: str | None,
    calibrate_dir: str | None, speed_table: bool, emit_log: str | None, log_level: str,
) -> None:
    """Serve a simulated Ollama (native + OpenAI APIs) with a roofline timing model."""
    from bench.sim.config import build_config
    from bench.sim.config_errors import SimConfigError
    from bench.sim.server import serve

    if speed_table:
        _print_speed_table(catalog_path)
        return
    calibrated = _calibration(calibrate_dir, catalog_path) if calibrate_dir else None
    try:
        config = build_config(
            os.environ, host=host, port=port, gpu=gpu, gpu_memory=gpu_memory, seed=seed, catalog_path=catalog_path,
            speed=speed, emit_log_path=emit_log, ollama_version=ollama_version, engine=engine, host_memory=host_memory,
            llama_server=llama_server, model_files=model_files, engine_log_dir=engine_log_dir, calibrated=calibrated,
            fault_rates={
                "error_rate": fault_error_rate, "cut_rate": fault_cut_rate, "stall_rate": fault_stall_rate,
                "stall_s": fault_stall_s, "malformed_rate": fault_malformed_rate,
                "no_done_rate": fault_no_done_rate, "oom_rate": fault_oom_rate,
            },
        )
    except SimConfigError as error:
        raise SimError(str(error)) from None

    def announce(base_url: str) -> None:
        assert config.gpu is not None
        click.echo(
            f"bench sim listening on {base_url} (Ollama {config.rules.version}, engine {config.engine}, "
            f"gpu {config.gpu.label} {config.gpu.memory_bytes / 2**30:.1f} GiB, default num_ctx {config.default_num_ctx}, "
            f"NUM_PARALLEL={config.num_parallel}, MAX_QUEUE={config.max_queue}, speed x{config.speed:g}; "
            f"{config.gpu.speed_basis})",
            err=True,
        )

    _check_writable("--emit-log", emit_log)
    try:
        serve(config, log_level=log_level, on_ready=announce)
    except OSError as error:
        if error.filename:  # a file the server opens (a log, a model), not the listening socket
            raise SimError(f"{error.filename}: {error.strerror}") from None
        raise SimError(f"cannot listen on {config.host}:{config.port}: {error.strerror}") from None


def _check_writable(flag: str, path: str | None) -> None:
    """The server opens its log after binding: a bad path is the flag's fault, not the port's.

    Checked as every output is (bench.records.atomic): a FIFO would block the open for ever, a
    device or a run's records are not the log's to append to; then opened once to prove it."""
    if path is None:
        return
    from bench.records.atomic import check_output_file

    check_output_file(path, flag)  # the name as given: '' is an empty name, not the directory "."
    try:
        with open(path, "a", encoding="utf-8"):
            pass
    except OSError as error:
        raise SimError(f"{flag} {path}: cannot write ({error.strerror})") from None


def _print_speed_table(catalog_path: str | None) -> None:
    from bench.sim.catalog import load_catalog
    from bench.sim.config_errors import SimConfigError
    from bench.sim.speed_table import markdown_table, speed_rows

    try:
        click.echo(markdown_table(speed_rows(load_catalog(catalog_path))))
    except SimConfigError as error:
        raise SimError(str(error)) from None


def _calibration(run_dir: str, catalog_path: str | None) -> dict[str, object]:
    """--calibrate: the run's concurrency-1 rates as a `gpus:` catalog document (printed as it is made)."""
    from bench.analysis.speed_calibration import ModelShape, calibrated_catalog
    from bench.sim import roofline
    from bench.sim.catalog import load_catalog
    from bench.sim.config import with_engine_models
    from bench.sim.config_errors import SimConfigError

    try:
        catalog = with_engine_models(load_catalog(catalog_path), (), "simulated")
    except SimConfigError as error:
        raise SimError(str(error)) from None

    def known_shape(name: str) -> ModelShape | None:
        spec = catalog.resolve(name)
        if spec is None:
            return None
        return ModelShape(spec.name, spec.size_bytes, spec.parameter_count, roofline.kv_bytes_per_token(spec, 2.0))

    calibration, document = calibrated_catalog(run_dir, known_shape, roofline.TOKEN_OVERHEAD_S)
    click.echo(calibration.summary(), err=True)
    return document


def register(group: click.Group) -> None:
    group.add_command(sim)
