"""A runner's device: prompts one batch at a time, and the decode batch waits for each (llama-server)."""

from __future__ import annotations

import pytest

from bench.sim.device import DeviceQueue


def test_prompts_queue_behind_each_other_with_a_decode_step_between_batches() -> None:
    device = DeviceQueue(num_batch=512)
    first_done_s, _ = device.book_prefill(0.0, 0.4, step_wall_s=0.01, prompt_tokens=500)
    second_done_s, _ = device.book_prefill(0.0, 0.4, step_wall_s=0.01, prompt_tokens=500)
    assert first_done_s == pytest.approx(0.4)
    assert second_done_s == pytest.approx(0.4 + 0.01 + 0.4)  # 1000 tokens do not fit one 512 batch


def test_two_prompts_that_fit_one_batch_stall_a_decoder_once() -> None:
    device = DeviceQueue(num_batch=1024)
    _, decoder_index = device.book_prefill(0.0, 0.4, step_wall_s=0.0, prompt_tokens=500)
    second_done_s, _ = device.book_prefill(0.1, 0.4, step_wall_s=0.01, prompt_tokens=500)
    third_done_s, _ = device.book_prefill(0.1, 0.4, step_wall_s=0.01, prompt_tokens=500)  # joins its batch
    assert (second_done_s, third_done_s) == (pytest.approx(0.81), pytest.approx(1.21))
    next_token_s, decoder_index = device.decode_token(0.4, 0.01, decoder_index)
    assert next_token_s == pytest.approx(0.41 + 0.8)  # one step waits for the whole batch
    next_token_s, _ = device.decode_token(next_token_s, 0.01, decoder_index)
    assert next_token_s == pytest.approx(1.22)


def test_a_decoder_is_not_stalled_by_prompts_booked_before_its_own() -> None:
    device = DeviceQueue(num_batch=512)
    device.book_prefill(0.0, 0.4, step_wall_s=0.0, prompt_tokens=500)
    done_s, index = device.book_prefill(0.0, 0.4, step_wall_s=0.0, prompt_tokens=500)
    next_token_s, _ = device.decode_token(done_s, 0.01, index)
    assert next_token_s == pytest.approx(done_s + 0.01)


def test_on_a_gpu_profile_concurrent_prompts_queue_and_bound_throughput() -> None:
    """The quick start's shape (L4, llama3.2:1b, 4096-token prompts, 32 tokens out): prompts share
    the one device, so eight users get at most one prompt's prefill per prompt time, not eight."""
    from bench.sim.catalog import load_catalog
    from bench.sim.closed_loop import Workload, predict
    from bench.sim import roofline

    catalog = load_catalog()
    model, l4 = catalog.resolve("llama3.2:1b"), catalog.gpus["l4"]
    assert model is not None
    one, eight = (predict(model, l4, Workload(4096, 32, c, 40, num_batch=2048)) for c in (1, 8))
    prefill_s = roofline.prefill_s(model, l4, 1.0, 4096, 2048)
    assert eight.ttft_p50_s > 1.5 * one.ttft_p50_s  # beside the batch for free it stayed at one prefill
    # requests/s can never beat the device's prompt rate: 1 / prefill (each request carries 32 tokens)
    assert eight.output_tokens_per_s <= 32 / prefill_s * 1.01
