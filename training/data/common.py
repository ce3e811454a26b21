"""Shared pieces of the corpus builders: a parallel map with a progress bar, split sizes, summaries."""
from __future__ import annotations

import multiprocessing
import time
from collections import Counter
from typing import Callable, Iterable

from tqdm import tqdm

SPLITS = ("train", "valid", "test")
HELD_OUT_FRACTION = 0.05  # of the utterances/clips, for each of valid and test


def split_sizes(total: int, splits: Iterable[str]) -> dict[str, int]:
    """Utterances per split: 5% each to valid and test (at least 1 when total >= 3), the rest to train.

    Only splits in `splits` (those with a voice or a soundfont) get any.
    """
    splits = [s for s in SPLITS if s in set(splits)]
    sizes = {s: 0 for s in splits}
    held = [s for s in splits if s != "train"]
    for s in held:
        sizes[s] = max(1 if total >= 3 else 0, round(total * HELD_OUT_FRACTION))
    rest = total - sum(sizes.values())
    if "train" in sizes:
        sizes["train"] = rest
    elif held:
        sizes[held[0]] += rest
    return sizes


def parallel_map(fn: Callable, items: list, jobs: int, desc: str) -> list:
    """fn over items on `jobs` processes (in-process for jobs <= 1), with a tqdm bar; results in input order."""
    results = [None] * len(items)
    bar = tqdm(total=len(items), desc=desc, unit="item", dynamic_ncols=True)
    if jobs <= 1:
        for i, item in enumerate(items):
            results[i] = fn(item)
            bar.update()
    else:
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(jobs) as pool:
            for i, res in pool.imap_unordered(_indexed, [(fn, i, item) for i, item in enumerate(items)]):
                results[i] = res
                bar.update()
    bar.close()
    return results


def _indexed(args):
    fn, i, item = args
    return i, fn(item)


class Summary:
    """Counts kept and dropped items by reason and split, and seconds of audio per wall-clock second."""

    def __init__(self):
        self.start = time.perf_counter()
        self.kept: Counter = Counter()
        self.dropped: Counter = Counter()
        self.seconds: Counter = Counter()

    def keep(self, split: str, seconds: float) -> None:
        self.kept[split] += 1
        self.seconds[split] += seconds

    def drop(self, reason: str) -> None:
        self.dropped[reason] += 1

    def as_dict(self) -> dict:
        wall = time.perf_counter() - self.start
        audio = sum(self.seconds.values())
        return {"kept": dict(self.kept), "dropped": dict(self.dropped), "audio_seconds": round(audio, 1),
                "seconds_per_split": {k: round(v, 1) for k, v in self.seconds.items()},
                "wall_seconds": round(wall, 1), "audio_seconds_per_wall_second": round(audio / max(wall, 1e-9), 2)}

    def lines(self) -> list[str]:
        d = self.as_dict()
        out = [f"kept {sum(self.kept.values())}: " + ", ".join(f"{k} {v}" for k, v in sorted(self.kept.items())),
               f"dropped {sum(self.dropped.values())}: " + (", ".join(f"{k} {v}" for k, v in
                                                                   sorted(self.dropped.items())) or "none"),
               f"{d['audio_seconds']} s of audio in {d['wall_seconds']} s "
               f"({d['audio_seconds_per_wall_second']} s of audio per second)"]
        return out
