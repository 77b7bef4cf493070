"""llama-server's per-slot prompt cache as Ollama v0.33 reports it (llm/llama_server.go 1713-1728:
prompt_eval_count = cache_n + prompt_n, prompt_eval_duration = prompt_ms)."""

from __future__ import annotations

import ollama

from bench.sim import tokens
from bench.sim.prompt_cache import SlotCache

MODEL = "llama3.1:8b"
LONG_SYSTEM = "You are a careful assistant who answers in full sentences. " * 60  # ~900 tokens


def test_repeated_prompt_reuses_the_cached_prefix(sim) -> None:
    """Completion (cache_prompt: true): the second identical prompt only evaluates its last token."""
    client = ollama.Client(host=sim(speed=20, gpu="rtx4090"))
    messages = [{"role": "system", "content": LONG_SYSTEM}, {"role": "user", "content": "hello"}]
    first = client.chat(model=MODEL, messages=messages, options={"num_predict": 4})
    again = client.chat(model=MODEL, messages=messages, options={"num_predict": 4})
    assert first.prompt_eval_count == again.prompt_eval_count == tokens.count(tokens.render_chat(messages))
    assert again.prompt_eval_duration < first.prompt_eval_duration / 10


def test_a_conversation_turn_pays_only_for_its_new_tokens(sim) -> None:
    """The slot keeps prompt + answer, so the next turn's prompt shares the whole history."""
    client = ollama.Client(host=sim(speed=20, gpu="rtx4090"))
    history = [{"role": "system", "content": LONG_SYSTEM}, {"role": "user", "content": "first question"}]
    first = client.chat(model=MODEL, messages=history, options={"num_predict": 40})
    history += [{"role": "assistant", "content": first.message.content}, {"role": "user", "content": "and then?"}]
    second = client.chat(model=MODEL, messages=history, options={"num_predict": 4})
    assert second.prompt_eval_count > first.prompt_eval_count + 40
    # prefill covers only the new user turn and template markers, not the ~950 tokens before it
    assert second.prompt_eval_duration < first.prompt_eval_duration / 5


def test_a_different_prompt_pays_in_full(sim) -> None:
    client = ollama.Client(host=sim(speed=20, gpu="rtx4090"))
    first = client.generate(model=MODEL, prompt="alpha " * 400, options={"num_predict": 2})
    other = client.generate(model=MODEL, prompt="omega " * 400, options={"num_predict": 2})
    assert other.prompt_eval_duration > first.prompt_eval_duration / 2


def test_slot_choice_prefers_the_longest_common_prefix() -> None:
    """get_available_slot: the idle slot sharing the longest prefix wins over the least recently used."""
    cache = SlotCache(2)
    a, b = [1, 2, 3, 4, 5, 6], [9, 9, 9, 9]
    slot_a, _ = cache.take(a)
    cache.give_back(slot_a, a)
    slot_b, _ = cache.take(b)
    cache.give_back(slot_b, b)
    chosen, cache_n = cache.take([1, 2, 3, 4, 5, 6, 7])
    assert chosen is slot_a and cache_n == 6
    cache.give_back(chosen, [1, 2, 3, 4, 5, 6, 7])
    # nothing similar: the least recently used slot, whatever it holds
    chosen, cache_n = cache.take([42, 43])
    assert chosen is slot_b and cache_n == 0
