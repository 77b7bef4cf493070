"""The scheduler, modelled on Ollama v0.33's server/sched.go (v0.12.6 differences behind OllamaRules).

- `acquire` is getRunner: a loaded runner that needs no reload is used at once (the fast path:
  never queued, never 503); anything else is sent to the pending channel of capacity MAX_QUEUE,
  or rejected with ErrMaxQueue when it is full.
- `_process_pending` is processPending: one task, strictly serial. A load *blocks* it until the
  backend reports healthy, and only then does the runner enter `loaded`; evictions block it until
  the victim is unloaded (plus the VRAM-recovery poll). Go's channel hands a send straight to a
  parked receiver; `_submit` mirrors that, so a cold burst of N at MAX_QUEUE = Q serves Q + 1.
- `release` is processCompleted's finished event: the keep_alive timer starts when idle.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Coroutine
from dataclasses import replace
from typing import Any

from bench.sim import context, memory, roofline
from bench.sim.backend import Backend, LoadFailed, LoadOutOfMemory, LoadRequest, Runner
from bench.sim.catalog import ModelSpec
from bench.sim.config import SimConfig
from bench.sim.runners import (MAX_QUEUE_MESSAGE, LoadedModel, QueueFullError, RunnerState, ScheduleError,
                               ScheduleRequest)

DEFAULT_MODELS_PER_GPU = 3  # sched.go defaultModelsPerGPU: automatic OLLAMA_MAX_LOADED_MODELS per GPU

__all__ = ["MAX_QUEUE_MESSAGE", "LoadedModel", "QueueFullError", "RunnerState", "ScheduleError", "ScheduleRequest",
           "Scheduler"]

class Scheduler:
    """Owns the loaded runners and the pending queue; every method runs on the server's loop."""

    def __init__(self, config: SimConfig, backend: Backend) -> None:
        self.config = config
        self.rules = config.rules
        self.backend = backend
        self.loaded: dict[str, LoadedModel] = {}
        self._queue: deque[ScheduleRequest] = deque()
        self._receiver_parked = False
        self._handoff: ScheduleRequest | None = None
        self._wakeup: asyncio.Event | None = None
        self._unloaded_signal: asyncio.Event | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.rejected_total = 0
        self.loads_total = 0
        self.load_log: list[dict[str, Any]] = []  # every load: model, num_ctx, num_batch, outcome

    # ---- time ---------------------------------------------------------------------------------
    def scaled(self, simulated_s: float) -> float:
        return simulated_s / self.config.speed

    # ---- getRunner ----------------------------------------------------------------------------
    async def acquire(self, request: ScheduleRequest) -> LoadedModel:
        """A ref-counted loaded runner; raises QueueFullError (503) or ScheduleError (500)."""
        self._ensure_loop()
        loaded = self.loaded.get(request.model.name)
        if loaded is not None and loaded.state is RunnerState.LOADING:
            # v0.12.6 async loads: needsReload waits on the runner's lock until the load is done.
            await loaded.ready.wait()
            loaded = self.loaded.get(request.model.name)
        if loaded is not None and loaded.state is RunnerState.READY and not self.needs_reload(loaded, request):
            self._use_loaded(loaded, request, asyncio.get_running_loop().create_future())
            return loaded
        future: asyncio.Future[LoadedModel] = asyncio.get_running_loop().create_future()
        request.future = future
        self._submit(request)
        try:
            result = await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled() and future.exception() is None:
                self.release(future.result())
            future.cancel()
            raise
        if result.state is RunnerState.LOADING:
            try:
                await result.ready.wait()
            except asyncio.CancelledError:
                self.release(result)
                raise
            if result.load_error is not None:
                self.release(result)
                raise ScheduleError(result.load_error)
        return result

    def _submit(self, request: ScheduleRequest) -> None:
        if self._receiver_parked:
            self._receiver_parked = False
            self._handoff = request
            assert self._wakeup is not None
            self._wakeup.set()
        elif len(self._queue) < self.config.max_queue:
            self._queue.append(request)
        else:
            self.rejected_total += 1
            raise QueueFullError()

    # ---- needsReload / useLoadedRunner --------------------------------------------------------
    def resolve_context_shift(self, shift: bool | None, model: ModelSpec) -> bool:
        """resolveContextShift (sched.go 129-147): default on except the deepseek2 family."""
        if shift is not None:
            return shift
        return model.family != "deepseek2"

    def needs_reload(self, loaded: LoadedModel, request: ScheduleRequest) -> bool:
        """needsReload (sched.go 1381-1431)."""
        if loaded.state is not RunnerState.READY:
            return True
        existing, wanted = loaded.options, request.options
        if self.rules.reload_normalises_options:
            wanted = replace(wanted, num_ctx=context.effective_context(wanted.num_ctx, loaded.model.context_length))
            if loaded.num_ctx_auto and request.num_ctx_auto:
                wanted = replace(wanted, num_ctx=existing.num_ctx)
            if loaded.num_batch_auto and request.num_batch_auto:
                wanted = replace(wanted, num_batch=existing.num_batch)
            if wanted.use_mmap is None:
                wanted = replace(wanted, use_mmap=existing.use_mmap)
            if self.rules.shift_is_launch_option and loaded.context_shift != self.resolve_context_shift(request.shift, request.model):
                return True
        else:
            # v0.12.6 compared the raw options the runner was started with.
            existing = replace(existing, num_ctx=loaded.requested_num_ctx)
        if wanted.num_gpu < 0:
            existing, wanted = replace(existing, num_gpu=-1), replace(wanted, num_gpu=-1)
        return existing != wanted

    def _use_loaded(self, loaded: LoadedModel, request: ScheduleRequest, future: asyncio.Future[LoadedModel]) -> None:
        """useLoadedRunner (sched.go 476-493): a set keep_alive replaces the runner's, nil keeps it."""
        loaded.ref_count += 1
        if loaded.expire_timer is not None:
            loaded.expire_timer.cancel()
            loaded.expire_timer = None
        if request.keep_alive_s is not None:
            loaded.keep_alive_s = request.keep_alive_s
        if not future.done():
            future.set_result(loaded)

    # ---- processPending -----------------------------------------------------------------------
    def _ensure_loop(self) -> None:
        if self._loop_task is None:
            self._wakeup = asyncio.Event()
            self._unloaded_signal = asyncio.Event()
            # Ollama starts processPending with the server, parked on the channel: the first
            # request of a burst is handed straight to it and does not take a queue place.
            self._receiver_parked = True
            self._loop_task = asyncio.get_running_loop().create_task(self._process_pending())

    async def _process_pending(self) -> None:
        assert self._wakeup is not None
        while True:
            if self._handoff is not None:
                request, self._handoff = self._handoff, None
            elif self._queue:
                request = self._queue.popleft()
            else:
                self._wakeup.clear()
                self._receiver_parked = True
                await self._wakeup.wait()
                continue
            if request.future is None or request.future.done():
                continue  # the client went away while pending
            try:
                await self._schedule(request)
            except Exception as error:  # noqa: BLE001 - a bug must not kill the scheduler loop
                if request.future is not None and not request.future.done():
                    request.future.set_exception(ScheduleError(str(error)))

    def max_runners(self) -> int:
        return self.config.max_loaded_models or DEFAULT_MODELS_PER_GPU * 1

    async def _schedule(self, request: ScheduleRequest) -> None:
        assert request.future is not None and self._unloaded_signal is not None
        while not request.future.done():
            loaded = self.loaded.get(request.model.name)
            victim: LoadedModel | None = None
            if loaded is not None:
                if loaded.state is RunnerState.LOADING:
                    await loaded.ready.wait()
                    continue
                if not self.needs_reload(loaded, request):
                    self._use_loaded(loaded, request, request.future)
                    return
                victim = loaded
            elif len(self.loaded) >= self.max_runners():
                victim = self.find_runner_to_unload()
            else:
                if not self.loaded:
                    if await self._load(request, require_full=False):
                        continue
                    return
                if not await self._load(request, require_full=True):
                    return
                if request.oom_retry_attempted:
                    await self._evict_all_and_wait()
                    continue
                victim = self.find_runner_to_unload()
            if victim is None:
                await asyncio.sleep(0)
                continue
            self._unloaded_signal.clear()
            self._expire(victim)
            await self._unloaded_signal.wait()

    def find_runner_to_unload(self) -> LoadedModel | None:
        """findRunnerToUnload (sched.go 1664-1693): shortest keep_alive first, then model path; idle first."""
        candidates = [m for m in self.loaded.values() if m.state is not RunnerState.GONE]
        if not candidates:
            return None
        candidates.sort(key=lambda m: (m.keep_alive_s, m.model.digest))
        for candidate in candidates:
            if candidate.ref_count == 0:
                return candidate
        return candidates[0]

    async def _evict_all_and_wait(self) -> None:
        """evictAllAndWait (sched.go 1590-1630): expire everything, wait until nothing is loaded."""
        assert self._unloaded_signal is not None
        while self.loaded:
            self._unloaded_signal.clear()
            for loaded in list(self.loaded.values()):
                self._expire(loaded)
            await self._unloaded_signal.wait()

    # ---- load ---------------------------------------------------------------------------------
    def num_parallel_for(self, model: ModelSpec) -> int:
        """sched.go load 497-510: embeddings and some families run one slot."""
        if model.embedding_only or model.family in self.rules.serial_families:
            return 1
        return max(1, self.config.num_parallel)

    def gpu_total_bytes(self) -> int:
        assert self.config.gpu is not None
        return self.config.gpu.memory_bytes

    def gpu_free_bytes(self) -> int:
        """updateFreeSpace: total minus what loaded runners hold (the simulated GPU runs nothing else)."""
        used = sum(m.vram_bytes for m in self.loaded.values())
        free = self.gpu_total_bytes() - used
        if not self.rules.llama_server_memory:
            free -= self.config.gpu_overhead_bytes  # v0.12.6 reserved OLLAMA_GPU_OVERHEAD in its fit
        return max(0, free)

    def _flash_attention(self) -> str:
        if self.config.flash_attention is None:
            return "auto" if self.rules.llama_server_memory else "off"
        return "on" if self.config.flash_attention else "off"

    def _launch_request(self, request: ScheduleRequest, num_parallel: int, require_full: bool) -> tuple[LoadRequest, bool]:
        """Resolve options for a load; the bool says the preflight wants an eviction first."""
        model = request.model
        num_ctx = context.effective_context(request.options.num_ctx, model.context_length)
        if not self.rules.llama_server_memory:
            num_ctx = request.options.num_ctx  # v0.12.6 clamped later, in the runner
            num_ctx = min(num_ctx, model.context_length)
        ctx_tokens = num_ctx * num_parallel
        predicted = memory.predict_server_vram(model, ctx_tokens)
        available = self.gpu_free_bytes()
        options = request.options
        flash = self._flash_attention()
        if self.rules.llama_server_memory and request.num_batch_auto and not model.embedding_only:
            batch = context.automatic_generation_batch(
                ctx_tokens, predicted, available, flash == "off", self.gpu_total_bytes()
            )
            options = replace(options, num_batch=batch)
            request.options = options
        if not self.rules.llama_server_memory:
            options = replace(options, num_batch=min(options.num_batch, num_ctx))
        surcharge = 0 if model.embedding_only else context.generation_batch_surcharge(options.num_batch)
        kv_type = self.config.kv_cache_type if self.config.kv_cache_type_set else None
        launch = LoadRequest(
            model=model, num_ctx=num_ctx, num_parallel=num_parallel, num_batch=options.num_batch,
            flash_attention=flash, kv_cache_type=kv_type,
            context_shift=self.resolve_context_shift(request.shift, model), num_keep=4,
            num_gpu=options.num_gpu, num_thread=options.num_thread, use_mmap=options.use_mmap,
            embedding=model.embedding_only, gpu_free_bytes=available, host_free_bytes=self.config.host_memory_bytes,
            # Catalog models carry a Go TEMPLATE, embedding models none (llamaServerConfigForModel).
            disable_jinja=self.config.go_template and not model.embedding_only,
        )
        # sched.go 547: no preflight without a GPU (a CPU-only machine: the llama-server engine here).
        if not require_full or not self.loaded or 0 < options.num_gpu < model.block_count + 1 or self.gpu_total_bytes() == 0:
            return launch, False
        if self.rules.llama_server_memory:
            return launch, predicted + surcharge > available * 80 // 100
        layout = memory.legacy_layout(launch)
        return launch, layout.gpu_layers < layout.total_layers

    async def _load(self, request: ScheduleRequest, require_full: bool) -> bool:
        """Scheduler.load (sched.go 495-755); True means "evict or retry, then try again"."""
        assert request.future is not None
        model = request.model
        num_parallel = self.num_parallel_for(model)
        launch, need_evict = self._launch_request(request, num_parallel, require_full)
        if need_evict:
            return True
        keep_alive_s = request.keep_alive_s if request.keep_alive_s is not None else self.config.keep_alive_s
        loaded = LoadedModel(
            model=model, options=request.options, num_parallel=num_parallel, keep_alive_s=keep_alive_s,
            num_ctx_auto=request.num_ctx_auto, num_batch_auto=request.num_batch_auto,
            context_shift=launch.context_shift, slots=asyncio.Semaphore(num_parallel),
            requested_num_ctx=request.options.num_ctx,
        )
        if model.architecture in self.rules.async_load_archs:
            self._start_async_load(loaded, launch, request)
            return False
        self.loads_total += 1
        try:
            runner = await self._load_for(request, launch)
        except LoadOutOfMemory as error:
            self.load_log.append({"model": model.name, "num_ctx": launch.num_ctx, "num_batch": launch.num_batch, "outcome": "oom"})
            return self._after_oom(request, error)
        except (LoadFailed, asyncio.CancelledError) as error:
            if not request.future.done():
                request.future.set_exception(ScheduleError(str(error) or "llama runner process has terminated"))
            return False
        self._install(loaded, runner, request)
        return False

    def _after_oom(self, request: ScheduleRequest, error: Exception) -> bool:
        assert request.future is not None
        if not request.oom_retry_attempted and self.rules.llama_server_memory:
            # reduceAutoNumCtxForLoadOOM (sched.go 757-783): one step down, automatic contexts only.
            if request.num_ctx_auto:
                effective = context.effective_context(request.options.num_ctx, request.model.context_length)
                lower = context.next_lower_auto_num_ctx(effective)
                if lower is not None and lower < request.options.num_ctx:
                    request.options = replace(request.options, num_ctx=lower)
                    request.oom_retry_attempted = True
                    return True
            if self.loaded:
                request.oom_retry_attempted = True
                return True
        if not request.future.done():
            request.future.set_exception(ScheduleError(f"llama runner process has terminated: {error}"))
        return False

    async def _load_for(self, request: ScheduleRequest, launch: LoadRequest) -> Runner:
        """Load, tied to the first requester: if it leaves, the half-started runner is killed."""
        assert request.future is not None
        load_task = asyncio.ensure_future(self.backend.load(launch))
        gone = asyncio.Event()
        request.future.add_done_callback(lambda _: gone.set())
        gone_task = asyncio.ensure_future(gone.wait())
        try:
            await asyncio.wait({load_task, gone_task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone_task.cancel()
        if not load_task.done():
            load_task.cancel()
            raise asyncio.CancelledError()
        return load_task.result()

    def _install(self, loaded: LoadedModel, runner: Runner, request: ScheduleRequest) -> None:
        assert request.future is not None
        loaded.runner = runner
        loaded.options = replace(loaded.options, num_ctx=runner.memory.context_length, num_batch=runner.memory.num_batch)
        loaded.state = RunnerState.READY
        loaded.ready_at_s = time.monotonic()
        loaded.ready.set()
        self.load_log.append({
            "model": loaded.model.name, "num_ctx": runner.memory.context_length, "num_batch": runner.memory.num_batch,
            "num_parallel": loaded.num_parallel, "outcome": "loaded",
        })
        self.loaded[loaded.model.name] = loaded
        if request.future.done():  # the requester left as the load finished: idle at once
            loaded.ref_count = 1
            self.release(loaded)
            return
        loaded.ref_count += 1
        request.future.set_result(loaded)

    def _start_async_load(self, loaded: LoadedModel, launch: LoadRequest, request: ScheduleRequest) -> None:
        """v0.12.6 Ollama-engine runners: listed (and locked) while weights load in the background."""
        assert request.future is not None
        loaded.state = RunnerState.LOADING
        loaded.ref_count = 1
        self.loaded[loaded.model.name] = loaded
        self.loads_total += 1
        request.future.set_result(loaded)

        async def finish() -> None:
            try:
                runner = await self.backend.load(launch)
            except (LoadOutOfMemory, LoadFailed) as error:
                loaded.load_error = f"llama runner process has terminated: {error}"
                loaded.state = RunnerState.GONE
                self.loaded.pop(loaded.model.name, None)
                loaded.ready.set()
                return
            loaded.runner = runner
            loaded.options = replace(loaded.options, num_ctx=runner.memory.context_length)
            loaded.state = RunnerState.READY
            loaded.ready_at_s = time.monotonic()
            loaded.ready.set()

        self._spawn(finish())

    # ---- processCompleted ---------------------------------------------------------------------
    def release(self, loaded: LoadedModel) -> None:
        """A request is done with the runner; start its keep_alive countdown when idle."""
        loaded.ref_count -= 1
        if loaded.ref_count > 0 or loaded.state is not RunnerState.READY:
            return
        if loaded.keep_alive_s <= 0:
            self._on_expired(loaded)
        elif math.isinf(loaded.keep_alive_s):
            loaded.expires_at_epoch_s = None
        else:
            delay_s = self.scaled(loaded.keep_alive_s)
            loaded.expires_at_epoch_s = time.time() + delay_s
            loaded.expire_timer = asyncio.get_running_loop().call_later(delay_s, self._on_timer, loaded)

    def expire_model(self, model: ModelSpec) -> None:
        """keep_alive 0 with no prompt (routes.go expireRunner): unload now, or once idle."""
        loaded = self.loaded.get(model.name)
        if loaded is not None:
            self._expire(loaded)

    def expire_all_for_runtime_oom(self) -> None:
        """expireRunnersForRuntimeOOM (sched.go 1632-1661): every loaded runner unloads when idle."""
        for loaded in list(self.loaded.values()):
            self._expire(loaded)

    def _expire(self, loaded: LoadedModel) -> None:
        if loaded.expire_timer is not None:
            loaded.expire_timer.cancel()
            loaded.expire_timer = None
        loaded.keep_alive_s = 0.0
        if loaded.ref_count <= 0:
            self._on_expired(loaded)

    def _on_timer(self, loaded: LoadedModel) -> None:
        loaded.expire_timer = None
        self._on_expired(loaded)

    def _on_expired(self, loaded: LoadedModel) -> None:
        if loaded.ref_count > 0 or loaded.state is not RunnerState.READY:
            return  # busy: the last release expires it (keep_alive is 0 by now)
        if self.loaded.get(loaded.model.name) is not loaded:
            return
        loaded.state = RunnerState.UNLOADING
        self._spawn(self._unload(loaded))

    async def _unload(self, loaded: LoadedModel) -> None:
        """Kill the runner, drop it, then wait for the GPU's free memory to show it (waitForVRAMRecovery)."""
        if loaded.runner is not None:
            await loaded.runner.close()
        if self.loaded.get(loaded.model.name) is loaded:
            del self.loaded[loaded.model.name]
        if loaded.vram_bytes > 0:
            await asyncio.sleep(self.scaled(roofline.VRAM_RECOVERY_POLL_S))
        loaded.state = RunnerState.GONE
        loaded.unloaded.set()
        if self._unloaded_signal is not None:
            self._unloaded_signal.set()

    async def close_runners(self) -> None:
        """Server shutdown: stop every runner (a real engine's child processes exit with the server)."""
        for loaded in list(self.loaded.values()):
            if loaded.runner is not None:
                await loaded.runner.close()

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
