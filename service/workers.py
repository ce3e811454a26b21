"""The heavy work behind the routes: one thread pool, a batcher per model.

Recognition goes through `Transcriber.transcribe_batch`; synthesis runtimes
that offer `synthesize_batch(list of (text, voice, speed)) -> list of
float32 arrays` (the feed-forward ones) are batched the same way; streaming
synthesis and piano transcription run one request at a time per call, all
on the pool, so the event loop only moves bytes.
"""
from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from service.batching import Batcher, Gate
from service.errors import ApiError
from service.metrics import Metrics
from service.registry import LoadedModel, ModelRegistry
from service.settings import Settings

_END = object()
log = logging.getLogger("sparsewave.service")


def refused(model: LoadedModel, exc: ValueError) -> ApiError:
    """A runtime's ValueError is about its input (text it cannot phonemize,
    audio too short for its frames): 422 with the runtime's words, logged
    with the traceback in case it is a bug instead."""
    log.warning("model %s refused its input: %s", model.name, exc, exc_info=exc)
    return ApiError(422, f"the model {model.name!r} cannot process this input: {str(exc)[:300]}",
                    "unprocessable_input")


class Workers:
    def __init__(self, registry: ModelRegistry, settings: Settings, metrics: Metrics):
        self.settings, self.metrics = settings, metrics
        self.executor = ThreadPoolExecutor(max_workers=settings.threads, thread_name_prefix="sparsewave")
        self.batchers: dict[str, Batcher] = {}
        self.gates: dict[str, Gate] = {}
        for name, model in registry.models.items():
            run = self._batch_fn(model)
            if run is not None:
                self.batchers[name] = Batcher(name, run, self.executor, max_batch=settings.max_batch,
                                              wait_ms=settings.batch_wait_ms, max_queue=settings.max_queue,
                                              on_batch=self._on_batch(name))
            self.gates[name] = Gate(settings.max_queue)

    def _batch_fn(self, model: LoadedModel):
        runtime = model.runtime
        if model.task == "asr":
            return runtime.transcribe_batch
        if model.task == "tts" and hasattr(runtime, "synthesize_batch"):
            return runtime.synthesize_batch
        if model.task == "piano":
            return lambda items: [runtime.transcribe(a) for a in items]
        return None

    def _on_batch(self, name: str):
        def record(size: int, seconds: float) -> None:
            self.metrics.batch_size.labels(name).observe(size)
            self.metrics.batch_seconds.labels(name).observe(seconds)
        return record

    def queue_depths(self) -> dict[str, int]:
        names = set(self.batchers) | set(self.gates)
        # a speech request holds its gate while its sentences sit in the batcher: count it once
        return {n: max(self.batchers[n].pending if n in self.batchers else 0,
                       self.gates[n].pending if n in self.gates else 0) for n in sorted(names)}

    async def run(self, fn, *args):
        """Run `fn(*args)` on the pool."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def batched(self, model: LoadedModel, item, admitted: bool = False):
        try:
            return await self.batchers[model.name].submit(item, admitted=admitted)
        except ValueError as exc:
            raise refused(model, exc) from None

    async def stream(self, model: LoadedModel, text: str, voice: str | None, speed: float):
        """Async iterator of a streaming runtime's float32 chunks, each made on the pool."""
        chunks = model.runtime.synthesize(text, voice, speed)
        while True:
            try:
                chunk = await self.run(next, chunks, _END)
            except ValueError as exc:
                raise refused(model, exc) from None
            if chunk is _END:
                return
            yield np.asarray(chunk, np.float32).reshape(-1)

    async def synthesize_all(self, model: LoadedModel, text: str, voice: str | None, speed: float) -> np.ndarray:
        """One sentence, whole: batched where the runtime allows it."""
        if model.name in self.batchers:
            return np.asarray(await self.batched(model, (text, voice, speed), admitted=True), np.float32).reshape(-1)
        try:
            chunks = await self.run(lambda: [np.asarray(c, np.float32).reshape(-1)
                                             for c in model.runtime.synthesize(text, voice, speed)])
        except ValueError as exc:
            raise refused(model, exc) from None
        return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)

    async def close(self, timeout_s: float = 30.0) -> None:
        """Drain: finish queued and running work, then stop the pool."""
        deadline = time.monotonic() + timeout_s
        while any(g.pending for g in self.gates.values()) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        await asyncio.gather(*(b.drain(max(0.0, deadline - time.monotonic())) for b in self.batchers.values()))
        self.executor.shutdown(wait=True)
