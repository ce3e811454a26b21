"""Word n-gram language models for CTC beam search, written as ARPA files.

KenLM's `lmplz` is not on PyPI, so this builds an interpolated Kneser-Ney
n-gram (one absolute discount per order,
D = n1 / (n1 + 2 n2)) in plain Python, prunes rare high-order n-grams,
renormalizes the backoff weights after pruning, and writes the KenLM-readable
ARPA text format. The text comes from packaged sources: Debian fortunes and
the quoted examples of WordNet, as training/data/sentences.py extracts them.
"""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterable

from models.deepspeech2.text import normalize_transcript

BOS, EOS, UNK = "<s>", "</s>", "<unk>"


def corpus_sentences(splits: tuple[str, ...] = ("train",), exclude: Iterable[str] = ()) -> list[str]:
    """Sentences of fortunes and WordNet (training/data/sentences.py) in the given sentence splits,
    spelled out (models.text) and normalized to the recognizer's alphabet, de-duplicated, minus `exclude`.

    The splits are fixed by each sentence's hash, so the default (train only)
    never holds a sentence that a `sparsewave data speech` corpus speaks in
    its valid or test split.
    """
    from models.text import FrontendError, normalize_text
    from training.data.sentences import all_sentences

    banned = {normalize_transcript(s) for s in exclude}
    by_split = all_sentences()
    seen: set[str] = set()
    out = []
    for split in splits:
        for raw in by_split.get(split, []):
            try:
                text = normalize_transcript(normalize_text(raw))
            except (FrontendError, ValueError):
                continue
            if text and text not in seen and text not in banned:
                seen.add(text)
                out.append(text)
    return out


def _discounts(counts: dict[tuple[str, ...], int]) -> float:
    n1 = sum(1 for c in counts.values() if c == 1)
    n2 = sum(1 for c in counts.values() if c == 2)
    return n1 / (n1 + 2 * n2) if n1 and n2 else 0.5


def build_kneser_ney(sentences: Iterable[str], order: int = 3, min_counts: tuple[int, ...] = (1, 1, 2)
                     ) -> dict[int, dict[tuple[str, ...], tuple[float, float]]]:
    """Interpolated Kneser-Ney; returns {n: {ngram: (log10 prob, log10 backoff)}}.

    `min_counts[n-1]` drops n-grams seen fewer times (n >= 2); their mass goes
    to the backoff, which is renormalized so every distribution sums to one.
    """
    raw: list[Counter] = [Counter() for _ in range(order + 1)]
    for sentence in sentences:
        words = [BOS, *sentence.split(), EOS]
        for n in range(1, order + 1):
            for i in range(len(words) - n + 1):
                raw[n][tuple(words[i:i + n])] += 1
    # Counts used at each order: raw counts at the top order and for n-grams
    # starting with <s>; continuation counts (distinct left words) below.
    counts: list[dict] = [{} for _ in range(order + 1)]
    counts[order] = dict(raw[order])
    for n in range(1, order):
        cont: Counter = Counter()
        for gram in raw[n + 1]:
            cont[gram[1:]] += 1
        counts[n] = {g: (raw[n][g] if g[0] == BOS else cont.get(g, 0)) for g in raw[n]}
        counts[n] = {g: c for g, c in counts[n].items() if c > 0 or g == (BOS,)}
    counts[1].setdefault((UNK,), 0)
    probs: list[dict[tuple[str, ...], float]] = [{} for _ in range(order + 1)]
    vocab = [g for g in counts[1] if g != (BOS,)]
    total = sum(counts[1][g] for g in vocab)
    d = _discounts(counts[1])
    uniform = 1.0 / len(vocab)
    seen = sum(1 for g in vocab if counts[1][g] > 0)
    for g in vocab:  # unigrams interpolate with the uniform distribution
        probs[1][g] = max(counts[1][g] - d, 0) / total + d * seen / total * uniform
    for n in range(2, order + 1):
        d = _discounts(counts[n])
        context_total: Counter = Counter()
        context_types: Counter = Counter()
        for g, c in counts[n].items():
            context_total[g[:-1]] += c
            context_types[g[:-1]] += 1
        keep = min_counts[n - 1] if n - 1 < len(min_counts) else 1
        for g, c in counts[n].items():
            if raw[n][g] < keep and n > 1:
                continue
            h = g[:-1]
            gamma = d * context_types[h] / context_total[h]
            probs[n][g] = max(c - d, 0) / context_total[h] + gamma * _lower(probs, g[1:])
        # Pruned n-grams may leave contexts whose own prefix is missing.
        probs[n] = {g: p for g, p in probs[n].items() if n == 2 or g[:-1] in probs[n - 1]}
    return _with_backoffs(probs, order)


def _lower(probs, gram: tuple[str, ...]) -> float:
    """Backed-off probability from the orders already built (no backoff weights yet: interpolation)."""
    n = len(gram)
    if gram in probs[n]:
        return probs[n][gram]
    return _lower(probs, gram[1:]) if n > 1 else probs[1][(UNK,)]


def _with_backoffs(probs, order: int):
    """Backoff weight of each context h: (1 - sum p(w|h)) / (1 - sum p_lower(w|h'))."""
    seen_mass: dict[tuple[str, ...], float] = defaultdict(float)
    lower_mass: dict[tuple[str, ...], float] = defaultdict(float)
    for n in range(2, order + 1):
        for g, p in probs[n].items():
            seen_mass[g[:-1]] += p
            lower_mass[g[:-1]] += _lower(probs, g[1:])
    out: dict[int, dict] = {}
    for n in range(1, order + 1):
        table = {}
        for g, p in probs[n].items():
            backoff = 0.0
            if n < order and g in seen_mass:
                num, den = max(1.0 - seen_mass[g], 1e-12), max(1.0 - lower_mass[g], 1e-12)
                backoff = math.log10(num / den)
            table[g] = (math.log10(p) if p > 0 else -99.0, backoff)
        out[n] = table
    # <s> is only ever a context: no probability of its own, just a backoff.
    backoff = 0.0
    if (BOS,) in seen_mass:
        backoff = math.log10(max(1.0 - seen_mass[(BOS,)], 1e-12) / max(1.0 - lower_mass[(BOS,)], 1e-12))
    out[1][(BOS,)] = (-99.0, backoff)
    return out


def write_arpa(tables: dict[int, dict[tuple[str, ...], tuple[float, float]]], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    order = max(tables)
    with open(path, "w") as out:
        out.write("\\data\\\n")
        for n in range(1, order + 1):
            out.write(f"ngram {n}={len(tables[n])}\n")
        for n in range(1, order + 1):
            out.write(f"\n\\{n}-grams:\n")
            for gram, (logp, backoff) in sorted(tables[n].items()):
                line = f"{logp:.5f}\t{' '.join(gram)}"
                if n < order and backoff != 0.0:
                    line += f"\t{backoff:.5f}"
                out.write(line + "\n")
        out.write("\n\\end\\\n")
    return path
