"""A runner's device: llama-server's update_slots batches (b10488), planned by bench/sim/device.py."""

from __future__ import annotations

import pytest

from bench.sim.device import Device, SlotWork


def _device(num_batch: int) -> Device:
    # A decode step of 10 ms whatever the batch, prefill 1 ms a token: easy to add up by hand.
    return Device(num_batch, lambda slots, kv_tokens: 0.010, lambda tokens: 0.001 * tokens)


def test_a_long_prompt_is_split_into_num_batch_chunks_and_samples_its_first_token_from_the_last() -> None:
    device = _device(512)
    work = SlotWork(slot=0, prompt_tokens=1000, context_tokens=1000, max_tokens=3)
    device.add(work)
    first = device.plan()
    assert first is not None and first.chunks == ((work, 512),) and first.tokens == ()
    assert first.duration_s == pytest.approx(0.512)
    assert device.apply(first) == []
    second = device.plan()
    assert second is not None and second.chunks == ((work, 488),) and second.tokens == (work,)
    assert second.duration_s == pytest.approx(0.488 + 0.010)  # the first token's step rides along
    assert device.apply(second) == [work]


def test_decode_tokens_take_batch_room_and_get_a_token_between_the_chunks_of_another_prompt() -> None:
    device = _device(512)
    decoder = SlotWork(slot=1, prompt_tokens=1, context_tokens=1, max_tokens=10)
    device.add(decoder)
    device.apply(device.plan())  # type: ignore[arg-type]
    prompt = SlotWork(slot=0, prompt_tokens=1000, context_tokens=1000, max_tokens=1)
    device.add(prompt)
    batches = []
    while prompt.prompt_left:
        batch = device.plan()
        assert batch is not None
        batches.append(([take for _, take in batch.chunks], device.apply(batch)))
    # 511 + 1 decode token fill the first batch; the decoder gets a token from every batch
    assert batches == [([511], [decoder]), ([489], [decoder, prompt])]


def test_prompts_join_a_batch_in_slot_order_not_arrival_order() -> None:
    device = _device(1024)
    late = SlotWork(slot=0, prompt_tokens=700, context_tokens=700, max_tokens=1)
    early = SlotWork(slot=3, prompt_tokens=700, context_tokens=700, max_tokens=1)
    device.add(early)
    device.add(late)
    batch = device.plan()
    assert batch is not None and batch.chunks == ((late, 700), (early, 324))


def test_a_request_removed_mid_batch_gets_no_token_and_a_finished_one_leaves() -> None:
    device = _device(512)
    stays = SlotWork(slot=0, prompt_tokens=10, context_tokens=10, max_tokens=1)
    leaves = SlotWork(slot=1, prompt_tokens=10, context_tokens=10, max_tokens=None)
    device.add(stays)
    device.add(leaves)
    batch = device.plan()
    assert batch is not None
    device.remove(leaves)
    assert device.apply(batch) == [stays]
    assert device.works == [] and device.plan() is None


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
