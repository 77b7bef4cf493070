"""The device of one simulated runner in real time: llama-server's update_slots loop, slept through.

One task per runner runs while any slot has work (a closed runner's requests still finish, as
they did when each slept on its own): it plans a batch (bench/sim/device.py), sleeps for
its cost (jittered once per batch, divided by --speed) and hands each slot that got a token the
batch's end time. A request that arrives meanwhile joins the next batch, as a task posted to
llama-server's queue does. Batches follow one deadline chain while the loop is busy, so a late
wake-up shortens the next sleep instead of slowing the device. Time is the event loop's clock, so
a test can run the same loop in virtual time (tests/virtual_clock.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.sim.device import Device, SlotWork


@dataclass(eq=False)
class Ticket:
    """A request's place on the device: batch end times arrive on `events` (a token, or the prompt
    done for a request that generates nothing)."""

    work: SlotWork
    events: asyncio.Queue[float] = field(default_factory=asyncio.Queue)
    prompt_done_s: float = 0.0  # when its prompt's prefill ended (before its first token's step)


class LiveDevice:
    def __init__(self, device: Device, scaled: Callable[[float], float], jitter: Callable[[], float]) -> None:
        self.device = device
        self._scaled = scaled
        self._jitter = jitter
        self._tickets: dict[int, Ticket] = {}
        self._task: asyncio.Task[None] | None = None

    def submit(self, work: SlotWork) -> Ticket:
        ticket = Ticket(work)
        self._tickets[id(work)] = ticket
        self.device.add(work)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        return ticket

    def withdraw(self, ticket: Ticket) -> None:
        """The request ended or went away: it leaves the device before the next batch."""
        self.device.remove(ticket.work)
        self._tickets.pop(id(ticket.work), None)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        end_s = loop.time()
        while (batch := self.device.plan()) is not None:
            factor = self._jitter()
            end_s += self._scaled(batch.duration_s * factor)
            await asyncio.sleep(max(0.0, end_s - loop.time()))
            prompts_done = [work for work, take in batch.chunks if take == work.prompt_left]
            served = self.device.apply(batch, factor)
            for work in prompts_done:
                ticket = self._tickets.get(id(work))
                if ticket is not None:
                    ticket.prompt_done_s = end_s - self._scaled(batch.step_s * factor)
                    if work.max_tokens == 0:
                        ticket.events.put_nowait(end_s)
            for work in served:
                ticket = self._tickets.get(id(work))
                if ticket is not None:
                    ticket.events.put_nowait(end_s)
