"""The heavy work behind the routes: one thread pool, a batcher per model.

Recognition goes through `Transcriber.transcribe_batch` (word timings only
for the requests whose response shows them); synthesis runtimes
that offer `synthesize_batch(list of (text, voice, speed)) -> list of
float32 arrays` (the feed-forward ones) are batched the same way when
`Settings.batch_synthesis` is on; streaming
synthesis and piano transcription run one request at a time per call, all
on the pool, so the event loop only moves bytes.
"""
from __future__ import annotations

import asyncio
import copy
import dataclasses
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


def input_error(exc: BaseException) -> bool:
    """Whether a runtime's exception is about its input: a ValueError (audio
    too short for its frames, a bad voice, the text frontend's NothingToSpeak).
    Other FrontendErrors (espeak-ng or an MBROLA voice missing) are the
    server's fault and stay 5xx."""
    return isinstance(exc, ValueError)


def refused(model: LoadedModel, exc: Exception) -> ApiError:
    """A runtime's input error: 422 with the runtime's words, logged with the
    traceback in case it is a bug instead."""
    log.warning("model %s refused its input: %s", model.name, exc, exc_info=exc)
    return ApiError(422, f"the model {model.name!r} cannot process this input: {str(exc)[:300]}",
                    "unprocessable_input")


class Workers:
    def __init__(self, registry: ModelRegistry, settings: Settings, metrics: Metrics):
        self.settings, self.metrics = settings, metrics
        self.executor = ThreadPoolExecutor(max_workers=settings.threads, thread_name_prefix="sparsewave")
        self.batchers: dict[str, Batcher] = {}
        self.gates: dict[str, Gate] = {}
        self.timings: dict[str, bool] = {}  # model -> whether its runtime set last_timings (learned on first use)
        for name, model in registry.models.items():
            run = self._batch_fn(model)
            if run is not None:
                self.batchers[name] = Batcher(name, run, self.executor, max_batch=settings.max_batch,
                                              wait_ms=settings.batch_wait_ms, max_queue=settings.max_queue,
                                              on_batch=self._on_batch(name))
            self.gates[name] = Gate(settings.max_queue)

    def _batch_fn(self, model: LoadedModel):
        runtime = model.runtime
        if model.task == "asr":  # items: (audio, whether the response needs word timings)
            return lambda items: runtime.transcribe_batch([a for a, _ in items], words=[w for _, w in items])
        if model.task == "tts" and self.settings.batch_synthesis and hasattr(runtime, "synthesize_batch"):
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
        except Exception as exc:
            if input_error(exc):
                raise refused(model, exc) from None
            raise

    async def stream(self, model: LoadedModel, text: str, voice: str | None, speed: float):
        """Async iterator of a streaming runtime's float32 chunks, each made on the pool."""
        chunks = model.runtime.synthesize(text, voice, speed)
        while True:
            try:
                chunk = await self.run(next, chunks, _END)
            except Exception as exc:
                if input_error(exc):
                    raise refused(model, exc) from None
                raise
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
        except Exception as exc:
            if input_error(exc):
                raise refused(model, exc) from None
            raise
        return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)

    async def synthesize_timed(self, model: LoadedModel, sentences: list[str], voice: str | None, speed: float):
        """The whole utterance and its timings (list of models.inference.Timing,
        seconds from its start), or (audio, None) when the runtime sets no
        `last_timings`. Each request synthesizes on a shallow copy of the
        runtime, so that `last_timings` of concurrent requests cannot mix."""
        def run():
            view = copy.copy(model.runtime)
            pieces, timings, offset_s = [], [], 0.0
            for sentence in sentences:
                view.last_timings = None
                chunks = [np.asarray(c, np.float32).reshape(-1) for c in view.synthesize(sentence, voice, speed)]
                if view.last_timings is None:
                    return None, None
                timings += [dataclasses.replace(t, start_s=round(t.start_s + offset_s, 4),
                                                end_s=round(t.end_s + offset_s, 4)) for t in view.last_timings]
                pieces += chunks
                offset_s += sum(len(c) for c in chunks) / model.runtime.sample_rate
            return (np.concatenate(pieces) if pieces else np.zeros(0, np.float32)), timings

        try:
            return await self.run(run)
        except Exception as exc:
            if input_error(exc):
                raise refused(model, exc) from None
            raise

    async def close(self, timeout_s: float = 30.0) -> None:
        """Drain: finish queued and running work, then stop the pool."""
        deadline = time.monotonic() + timeout_s
        while any(g.pending for g in self.gates.values()) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        await asyncio.gather(*(b.drain(max(0.0, deadline - time.monotonic())) for b in self.batchers.values()))
        self.executor.shutdown(wait=True)
