"""Prompts: unique per request, deterministic from the seed, calibrated to the server's counts."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from bench.errors import ScenarioError
from bench.workload.prompts import Calibration, PromptSource, calibrate, fit_calibration, read_prompt_file
from bench.records import RequestRecord
from bench.scenario import Distribution, PromptSpec

KEY = ("m", "native", "chat")


def test_prompts_are_unique_per_request_and_start_differently() -> None:
    source = PromptSource(PromptSpec(tokens=[256]), seed=1)
    prompts = [source.prompt_for(KEY, "cell", repeat, index, 256)
               for repeat in range(2) for index in range(50)]
    assert len(set(prompts)) == len(prompts)
    # The nonce is up front: no two prompts share even their first 14 characters.
    assert len({p[:14] for p in prompts}) == len(prompts)


def test_prompts_are_deterministic_from_the_seed() -> None:
    first = PromptSource(PromptSpec(tokens=[64]), seed=7)
    again = PromptSource(PromptSpec(tokens=[64]), seed=7)
    other = PromptSource(PromptSpec(tokens=[64]), seed=8)
    assert first.prompt_for(KEY, "c", 0, 3, 64) == again.prompt_for(KEY, "c", 0, 3, 64)
    assert first.prompt_for(KEY, "c", 0, 3, 64) != other.prompt_for(KEY, "c", 0, 3, 64)


def test_length_follows_the_calibration() -> None:
    source = PromptSource(PromptSpec(tokens=[500]), seed=0)
    source.calibrations[KEY] = Calibration(chars_per_token=3.0, overhead_tokens=10)
    assert len(source.prompt_for(KEY, "c", 0, 0, 500)) == (500 - 10) * 3


def test_distribution_lengths_vary_within_bounds() -> None:
    spec = PromptSpec(tokens=Distribution(distribution="uniform", low=100, high=200))
    source = PromptSource(spec, seed=0)
    lengths = [len(source.prompt_for(KEY, "c", 0, i, None)) for i in range(200)]
    assert min(lengths) >= 100 * 4 and max(lengths) <= 200 * 4
    assert max(lengths) - min(lengths) > 200


def test_jsonl_and_sharegpt_files_are_read(tmp_path: Path) -> None:
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text('{"prompt": "first"}\n\n{"prompt": "second"}\n')
    assert read_prompt_file(jsonl) == ["first", "second"]
    sharegpt = tmp_path / "s.json"
    sharegpt.write_text(json.dumps([{"conversations": [
        {"from": "human", "value": "question?"}, {"from": "gpt", "value": "answer"}]}]))
    assert read_prompt_file(sharegpt) == ["question?"]
    source = PromptSource(PromptSpec(file=str(jsonl)), seed=0)
    prompts = [source.prompt_for(KEY, "c", 0, i, None) for i in range(4)]
    assert prompts[0].endswith("first") and prompts[1].endswith("second")
    assert len(set(prompts)) == 4  # cycling the file still gives unique prompts


def test_bad_prompt_file_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "ok"}\n{"text": "no prompt key"}\n')
    with pytest.raises(ScenarioError, match=r"p\.jsonl:2: expected"):
        read_prompt_file(path)


def test_calibration_recovers_the_servers_tokenizer() -> None:
    # A server that counts ceil(chars / 3.5) + 9 template tokens.
    async def probe(text: str) -> RequestRecord:
        return RequestRecord(cell_id="c", request_index=-1, surface="native", endpoint="chat",
                             model="m", prompt_tokens=-(-len(text) * 2 // 7) + 9)

    calibration = asyncio.run(calibrate(probe, seed=0))
    assert calibration.source == "fitted"
    assert calibration.chars_per_token == pytest.approx(3.5, rel=0.01)
    assert calibration.overhead_tokens == pytest.approx(9, abs=1)
    assert len(calibration.probes) == 2


def test_failed_probe_falls_back_to_the_default_and_says_why() -> None:
    calibration = fit_calibration([{"prompt_chars": 10, "prompt_tokens": None, "error_class": "timeout"},
                                   {"prompt_chars": 100, "prompt_tokens": None, "error_class": "timeout"}])
    assert calibration.chars_per_token == 4.0
    assert calibration.source.startswith("default")
