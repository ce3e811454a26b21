"""Reading and scoring a backoff word n-gram LM in ARPA format (as KenLM writes).

Scores are natural logs (ARPA stores log10). A state is the tuple of the
last (order - 1) words; `score(state, word)` returns (log p, next state).
"""
from __future__ import annotations

import gzip
import math
from pathlib import Path

LN10 = math.log(10.0)


class NGramLM:
    def __init__(self, tables: dict[int, dict[tuple[str, ...], tuple[float, float]]]):
        self.order = max(tables)
        self.probs: dict[tuple[str, ...], float] = {}
        self.backoffs: dict[tuple[str, ...], float] = {}
        for grams in tables.values():
            for gram, (logp, backoff) in grams.items():
                self.probs[gram] = logp * LN10
                if backoff:
                    self.backoffs[gram] = backoff * LN10
        self.unk = self.probs.get(("<unk>",), -100.0 * LN10)
        self.vocab = {g[0] for g in tables[1]}
        self._cache: dict[tuple[tuple[str, ...], str], tuple[float, tuple[str, ...]]] = {}

    @classmethod
    def from_arpa(cls, path: str | Path) -> "NGramLM":
        path = Path(path)
        opener = gzip.open if path.suffix == ".gz" else open
        tables: dict[int, dict] = {}
        section = 0
        with opener(path, "rt", encoding="utf-8") as handle:
            for line in handle:
                line = line.strip()
                if not line or line.startswith("ngram ") or line == "\\data\\":
                    continue
                if line.startswith("\\") and line.endswith("-grams:"):
                    section = int(line[1:line.index("-")])
                    tables[section] = {}
                    continue
                if line == "\\end\\":
                    break
                if section:
                    parts = line.split("\t") if "\t" in line else line.split()
                    if "\t" in line:
                        gram = tuple(parts[1].split())
                        backoff = float(parts[2]) if len(parts) > 2 else 0.0
                    else:
                        gram = tuple(parts[1:1 + section])
                        backoff = float(parts[1 + section]) if len(parts) > 1 + section else 0.0
                    tables[section][gram] = (float(parts[0]), backoff)
        if not tables:
            raise ValueError(f"{path}: no n-grams found; is it an ARPA file?")
        return cls(tables)

    def begin(self) -> tuple[str, ...]:
        return ("<s>",)

    def score(self, state: tuple[str, ...], word: str) -> tuple[float, tuple[str, ...]]:
        """log p(word | state) (natural log) and the next state."""
        key = (state, word)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        if word not in self.vocab:
            word = "<unk>"
        logp = 0.0
        context = state
        while True:
            gram = (*context, word)
            if gram in self.probs:
                logp += self.probs[gram]
                break
            if not context:
                logp += self.unk
                break
            logp += self.backoffs.get(context, 0.0)
            context = context[1:]
        # The next state: the longest suffix that can still be a context.
        nxt = (*state, word)[-(self.order - 1):] if self.order > 1 else ()
        while nxt and nxt not in self.backoffs and nxt not in self.probs:
            nxt = nxt[1:]
        result = (logp, nxt)
        if len(self._cache) < 2_000_000:
            self._cache[key] = result
        return result

    def sentence_logprob(self, words: list[str]) -> float:
        state, total = self.begin(), 0.0
        for word in [*words, "</s>"]:
            logp, state = self.score(state, word)
            total += logp
        return total
