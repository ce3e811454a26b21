"""Batch Dispatch (Deep Speech 2, section 7): gather concurrent requests to
one model into a batch within a short wait window, run it off the event loop.

A `Batcher` owns one model's queue. `submit(item)` returns the item's
result once its batch has run; a full queue raises `QueueFull` (the route
answers 429 with Retry-After). The batch function runs in the app's thread
pool (torch releases the GIL), one batch at a time per model: while one
batch runs, the next one fills up, so batches grow with the load. Dispatch
is eager: what queued during a batch runs as soon as it ends; only a
request that finds the model idle waits up to `wait_ms` for company.
"""
from __future__ import annotations

import asyncio
import math
import time
from concurrent.futures import Executor
from typing import Any, Callable


class QueueFull(Exception):
    def __init__(self, retry_after_s: int):
        super().__init__(f"queue full; retry after {retry_after_s} s")
        self.retry_after_s = retry_after_s


class Batcher:
    def __init__(self, name: str, run_batch: Callable[[list[Any]], list[Any]], executor: Executor, *,
                 max_batch: int, wait_ms: float, max_queue: int, on_batch: Callable[[int, float], None] | None = None):
        self.name, self.run_batch, self.executor = name, run_batch, executor
        self.max_batch, self.wait_s, self.max_queue = max(1, max_batch), max(0.0, wait_ms) / 1000, max_queue
        self.on_batch = on_batch
        self.queue: asyncio.Queue = asyncio.Queue()
        self.pending = 0  # queued + running
        self.last_batch_s = 0.05
        self.backlog = False  # requests queued while the last batch ran: the next one goes without waiting
        self.task: asyncio.Task | None = None

    def retry_after_s(self) -> int:
        return max(1, math.ceil(self.pending / self.max_batch * self.last_batch_s))

    async def submit(self, item: Any, admitted: bool = False) -> Any:
        """`admitted`: the request already passed admission (later sentences of one text)."""
        if not admitted and self.pending >= self.max_queue:
            raise QueueFull(self.retry_after_s())
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._loop(), name=f"batcher-{self.name}")
        future = asyncio.get_running_loop().create_future()
        self.pending += 1
        try:
            await self.queue.put((item, future))
            return await asyncio.shield(future)  # a client that leaves does not break its batch
        finally:
            self.pending -= 1

    async def _gather(self) -> list[tuple[Any, asyncio.Future]]:
        # Eager, as in the paper: requests that queued while the last batch ran go at once. The wait
        # window is only for a model that was idle, to gather requests that arrive together.
        eager = self.backlog
        batch = [await self.queue.get()]
        deadline = time.monotonic() + self.wait_s
        while len(batch) < self.max_batch:
            if not self.queue.empty():
                batch.append(self.queue.get_nowait())
                continue
            if eager:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self.queue.get(), left))
            except asyncio.TimeoutError:
                break
        return batch

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._gather()
            items = [item for item, _ in batch]
            start = time.perf_counter()
            results = await loop.run_in_executor(self.executor, self._run_guarded, items)
            self.last_batch_s = time.perf_counter() - start
            self.backlog = not self.queue.empty()
            if self.on_batch is not None:
                self.on_batch(len(items), self.last_batch_s)
            for (_, future), result in zip(batch, results):
                if future.done():
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    def _run_guarded(self, items: list[Any]) -> list[Any]:
        """Results, or an exception per item; when a batch fails, its items
        run one by one so that one bad item does not fail the others."""
        try:
            results = self.run_batch(items)
            if len(results) != len(items):
                raise RuntimeError(f"{self.name}: batch of {len(items)} gave {len(results)} results")
            return list(results)
        except Exception as exc:
            if len(items) == 1:
                return [exc]
        out = []
        for item in items:
            try:
                out.append(self.run_batch([item])[0])
            except Exception as exc:
                out.append(exc)
        return out

    async def drain(self, timeout_s: float = 30.0) -> None:
        """Let queued and running batches finish, then stop the loop."""
        deadline = time.monotonic() + timeout_s
        while self.pending and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except (asyncio.CancelledError, Exception):
                pass
            self.task = None


class Gate:
    """Admission for work that is not batched (streamed synthesis): at most
    `max_queue` in flight per model, else QueueFull."""

    def __init__(self, max_queue: int, expected_s: float = 1.0):
        self.max_queue, self.pending, self.expected_s = max_queue, 0, expected_s

    def enter(self) -> None:
        if self.pending >= self.max_queue:
            raise QueueFull(max(1, math.ceil(self.expected_s)))
        self.pending += 1

    def leave(self) -> None:
        self.pending -= 1
