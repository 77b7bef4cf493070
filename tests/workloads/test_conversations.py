"""Conversations: each turn resends the history with the server's replies; users keep their own."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from pathlib import Path

import pytest

from bench.clients.base import RequestSpec, chat_messages
from bench.workload.conversations import ConversationMaker, read_conversation_file, render_transcript
from bench.errors import ScenarioError
from bench.load.cell import CellLoad, run_cell_load
from bench.workload.specs import CellRequests
from bench.load.clock import Clock
from bench.load.control import StopControl
from bench.workload.prompts import PromptSource
from bench.records import RequestRecord
from bench.scenario import ConversationSpec, PromptSpec, SecondsDistribution

KEY = ("m", "native", "chat")
TEMPLATE = RequestSpec(cell_id="cell", request_index=0, surface="native", endpoint="chat",
                       model="m", prompt="", max_tokens=8)


def maker(turns: int = 3, cache: str = "reuse", shared: int | None = None,
          template: RequestSpec = TEMPLATE, **spec: object) -> ConversationMaker:
    return ConversationMaker(
        prompts=PromptSource(PromptSpec(tokens=[20]), seed=1),
        spec=ConversationSpec(turns=turns, **spec),  # type: ignore[arg-type]
        template=template, key=KEY, turns=turns, prompt_tokens=20,
        shared_prefix_tokens=shared, cache=cache,
    )


def reply_to(spec: RequestSpec) -> RequestRecord:
    record = RequestRecord(cell_id=spec.cell_id, request_index=spec.request_index,
                           surface=spec.surface, endpoint=spec.endpoint, model=spec.model,
                           conversation_id=spec.conversation_id, turn=spec.turn)
    record.output_text = f"reply to turn {spec.turn}" if spec.keep_reply else None
    return record


def test_each_turn_resends_the_history_with_the_servers_replies() -> None:
    conversation = maker(turns=3).start(0, 0, "measure")
    specs = []
    while not conversation.finished:
        spec = conversation.next_spec(len(specs), "measure", 0.0)
        specs.append(spec)
        conversation.observe(reply_to(spec))
    assert [s.turn for s in specs] == [1, 2, 3]
    assert [len(s.history) for s in specs] == [0, 2, 4]
    third = chat_messages(specs[2])
    assert [m["role"] for m in third] == ["user", "assistant", "user", "assistant", "user"]
    assert third[1]["content"] == "reply to turn 1" and third[3]["content"] == "reply to turn 2"
    # Under reuse, turn k's messages start with turn k-1's messages exactly (a cacheable prefix).
    second = chat_messages(specs[1])
    assert third[:3] == second
    assert len({s.conversation_id for s in specs}) == 1


def test_defeat_puts_a_unique_token_first_so_no_two_turns_share_a_prefix() -> None:
    conversation = maker(turns=3, cache="defeat", shared=50).start(0, 0, "measure")
    firsts = []
    while not conversation.finished:
        spec = conversation.next_spec(conversation.sent, "measure", 0.0)
        firsts.append(chat_messages(spec)[0]["content"][:14])
        conversation.observe(reply_to(spec))
    assert len(set(firsts)) == 3

    reuse = maker(turns=3, cache="reuse", shared=50)
    systems = {chat_messages(reuse.start(0, i, "measure").next_spec(0, "measure", 0.0))[0]["content"]
               for i in range(3)}
    assert len(systems) == 1, "every conversation shares the same system prompt"


def test_reply_text_is_dropped_from_the_record_unless_stored() -> None:
    conversation = maker(turns=2).start(0, 0, "measure")
    spec = conversation.next_spec(0, "measure", 0.0)
    record = reply_to(spec)
    conversation.observe(record)
    assert record.output_text is None
    assert conversation.history[-1] == ("assistant", "reply to turn 1")


def test_a_failed_turn_ends_the_conversation() -> None:
    conversation = maker(turns=3).start(0, 0, "measure")
    record = reply_to(conversation.next_spec(0, "measure", 0.0))
    record.error_class = "server_error"
    assert conversation.observe(record) is False


def test_generate_endpoints_get_the_history_as_one_transcript() -> None:
    template = RequestSpec(cell_id="cell", request_index=0, surface="native", endpoint="generate",
                           model="m", prompt="")
    conversation = maker(turns=2, template=template).start(0, 0, "measure")
    first = conversation.next_spec(0, "measure", 0.0)
    conversation.observe(reply_to(first))
    second = conversation.next_spec(1, "measure", 0.0)
    assert second.history == () and "Assistant: reply to turn 1" in second.prompt
    assert second.prompt.endswith("Assistant:")
    assert render_transcript(None, [], "hi") == "User: hi\nAssistant:"


def test_sharegpt_and_messages_files_give_multi_turn_conversations(tmp_path: Path) -> None:
    path = tmp_path / "chats.jsonl"
    path.write_text("\n".join(json.dumps(item) for item in [
        {"conversations": [{"from": "system", "value": "be brief"},
                           {"from": "human", "value": "q1"}, {"from": "gpt", "value": "a1"},
                           {"from": "human", "value": "q2"}, {"from": "gpt", "value": "a2"}]},
        {"messages": [{"role": "user", "content": "only"}]},
    ]))
    first, second = read_conversation_file(path)
    assert first.user_turns == ("q1", "q2") and first.reference_replies == ("a1", "a2")
    assert first.system == "be brief"
    assert second.user_turns == ("only",) and second.reference_replies == (None,)

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"conversations": []}\n{"nope": 1}\n')
    with pytest.raises(ScenarioError, match=r"bad.jsonl:2: expected"):
        read_conversation_file(bad)


def test_a_file_conversation_is_replayed_turn_by_turn(tmp_path: Path) -> None:
    path = tmp_path / "chats.json"
    path.write_text(json.dumps([{"conversations": [
        {"from": "human", "value": "q1"}, {"from": "gpt", "value": "a1"},
        {"from": "human", "value": "q2"}]}]))
    source = maker(turns=1)
    source.turns = None
    source.file_conversations = read_conversation_file(path)
    conversation = source.start(0, 0, "measure")
    assert conversation.turns == 2
    first = conversation.next_spec(0, "measure", 0.0)
    assert first.prompt.endswith("q1")
    conversation.observe(reply_to(first))
    assert conversation.next_spec(1, "measure", 0.0).prompt == "q2"


class EchoServer:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.sent: list[RequestSpec] = []

    async def send(self, spec: RequestSpec) -> RequestRecord:
        self.sent.append(spec)
        record = reply_to(spec)
        record.sent_s = self.clock.now_s()
        await asyncio.sleep(0.002)
        record.end_s = self.clock.now_s()
        return record


def drive(load: CellLoad, source: ConversationMaker) -> tuple[EchoServer, list[RequestRecord]]:
    records: list[RequestRecord] = []

    async def main() -> EchoServer:
        clock = Clock()
        server = EchoServer(clock)
        requests = CellRequests(lambda *a: pytest.fail("single-turn spec asked"), start_conversation=source.start)
        await run_cell_load(load, requests, server.send, records.append, clock, StopControl())
        return server

    return asyncio.run(main()), records


def test_virtual_users_stick_to_their_conversations_under_concurrency() -> None:
    server, records = drive(CellLoad(concurrency=3, requests=12, warmup_requests=0),
                            maker(turns=4))
    assert len(records) == 12
    by_conversation: dict[str, list[RequestSpec]] = defaultdict(list)
    for spec in server.sent:
        by_conversation[spec.conversation_id].append(spec)  # type: ignore[index]
    assert len(by_conversation) == 3  # three users, four turns each
    for specs in by_conversation.values():
        assert [s.turn for s in specs] == [1, 2, 3, 4]
        # Each turn's history is exactly the previous turn's history + its user message + reply.
        for before, after in zip(specs, specs[1:]):
            assert after.history == before.history + (("user", before.prompt),
                                                      ("assistant", f"reply to turn {before.turn}"))
    assert {r.conversation_id for r in records} == set(by_conversation)


def test_think_time_separates_a_users_turns() -> None:
    source = maker(turns=2, think_time_s=SecondsDistribution(distribution="uniform", low=0.05,
                                                             high=0.05))
    _, records = drive(CellLoad(concurrency=1, requests=2, warmup_requests=0), source)
    first, second = sorted(records, key=lambda r: r.turn or 0)
    assert second.sent_s - first.end_s >= 0.045  # type: ignore[operator]
