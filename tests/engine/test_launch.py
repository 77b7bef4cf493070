"""llama-server's command line is the one Ollama v0.33 builds (llm/llama_server.go startLlamaServer)."""

from __future__ import annotations

from pathlib import Path

from bench.engine.chat import chat_body
from bench.engine.completion import (
    EngineTimings,
    SamplingOptions,
    bounded_num_predict,
    completion_body,
    done_reason,
)
from bench.engine.launch import (
    LaunchSettings,
    automatic_generation_batch,
    llama_server_args,
)


def test_default_launch_matches_ollama_argument_for_argument() -> None:
    settings = LaunchSettings(Path("/m/model.gguf"), num_ctx=4096, num_parallel=2)
    assert llama_server_args(settings, 41234) == [
        "--model", "/m/model.gguf", "--port", "41234", "--host", "127.0.0.1", "--no-webui", "--offline",
        "-c", "8192", "-np", "2", "--log-verbosity", "4", "--no-log-prefix", "--no-log-timestamps",
        "--load-mode", "none", "--flash-attn", "auto", "-b", "512", "-ub", "512", "--context-shift", "--keep", "4",
    ]  # fmt: skip


def test_cache_type_flash_attention_threads_and_layers_reach_the_command_line() -> None:
    # The environment is parsed once, by the simulator's config (bench/sim/config.py).
    settings = LaunchSettings(Path("m.gguf"), 2048, kv_cache_type="q8_0", flash_attention="off",
                              num_thread=2, num_gpu=0)
    args = llama_server_args(settings, 1)
    assert args[args.index("--cache-type-k") + 1] == "q8_0" and args[args.index("--cache-type-v") + 1] == "q8_0"
    assert args[args.index("--flash-attn") + 1] == "off"
    assert args[args.index("-ngl") + 1] == "0" and args[args.index("-t") + 1] == "2"
    assert "--cache-type-k" not in llama_server_args(LaunchSettings(Path("m"), 2048), 1)


def test_embedding_models_get_a_batch_capped_by_the_context() -> None:
    args = llama_server_args(LaunchSettings(Path("m"), 256, embedding=True, num_batch=2048), 1)
    assert args[args.index("--embedding") + 1:args.index("--embedding") + 5] == ["-b", "256", "-ub", "256"]


def test_generation_batch_grows_with_the_total_context_on_cpu() -> None:
    assert [automatic_generation_batch(c) for c in (2048, 4096, 4097, 32768, 32769)] == [512, 512, 1024, 1024, 2048]


def test_completion_body_and_open_ended_generation_bound() -> None:
    body = completion_body("hi", SamplingOptions.from_options({"num_predict": 7, "stop": "x", "junk": 1}), 2048)
    assert body["stream"] is True and body["cache_prompt"] is True and body["n_predict"] == 7
    assert body["stop"] == ["x"] and body["n_keep"] == 4 and body["min_p"] == 0.0
    assert bounded_num_predict(-1, 2048) == 20480 and bounded_num_predict(10**9, 2048) == 20480


def test_timings_map_to_native_durations_like_ollama() -> None:
    timings = EngineTimings.from_json(
        {"cache_n": 30, "prompt_n": 12, "prompt_ms": 4.5, "predicted_n": 16, "predicted_ms": 210.25}
    )
    assert timings.prompt_eval_count == 42  # cached tokens count as evaluated
    assert timings.prompt_eval_duration_ns == 4_500_000 and timings.eval_duration_ns == 210_250_000
    assert timings.eval_count == 16
    assert done_reason("limit") == "length" and done_reason("eos") == "stop" and done_reason(None) == "stop"


def test_go_rendered_models_launch_with_jinja_off_as_ollama_does() -> None:
    args = llama_server_args(LaunchSettings(Path("m"), 2048, disable_jinja=True), 1)
    at = args.index("--no-log-timestamps") + 1
    assert args[at:at + 3] == ["--no-jinja", "--chat-template", "chatml"]
    assert "--no-jinja" not in llama_server_args(LaunchSettings(Path("m"), 2048), 1)


def test_native_chat_body_sends_every_option_and_maps_format() -> None:
    messages = [{"role": "user", "content": "hi"}]
    body = chat_body(messages, SamplingOptions.from_options({"num_predict": -1}), 1024)
    assert body["messages"] == messages and body["stream"] is True and body["cache_prompt"] is True
    assert body["n_predict"] == 10240 and body["stop"] is None and body["n_keep"] == 4  # no omitempty
    assert "response_format" not in body
    assert chat_body(messages, SamplingOptions(), 1024, "json")["response_format"] == {"type": "json_object"}
    schema = {"type": "object"}
    assert chat_body(messages, SamplingOptions(), 1024, schema)["response_format"] == {
        "type": "json_schema", "json_schema": {"name": "schema", "schema": schema}}
