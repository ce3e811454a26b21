"""CTC decoding: greedy, prefix beam search with a word n-gram LM, word timings.

Beam search maximizes log p_ctc(y|x) + lm_weight * log p_lm(y) +
word_bonus * words(y) (Deep Speech 2, section 7). The LM is applied when a
word ends (a space, or the end of the utterance). Per frame only the
characters whose probability clears `prune_logp` (and the top `max_chars`)
are expanded, which keeps a pure-Python search fast on peaky CTC outputs.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from models.deepspeech2.text import BLANK, CHARS, SPACE
from models.inference import Word
from models.ngram import NGramLM

NEG_INF = -math.inf


def _logaddexp(a: float, b: float) -> float:
    if a == NEG_INF:
        return b
    if b == NEG_INF:
        return a
    if a > b:
        return a + math.log1p(math.exp(b - a))
    return b + math.log1p(math.exp(a - b))


def greedy_labels(log_probs: np.ndarray) -> list[int]:
    """(T, C) -> collapsed labels (best path: argmax per frame, merge repeats, drop blanks)."""
    best = np.asarray(log_probs).argmax(-1)
    keep = np.ones(len(best), dtype=bool)
    keep[1:] = best[1:] != best[:-1]
    return [int(c) for c in best[keep] if c != BLANK]


def labels_to_text(labels: list[int]) -> str:
    return " ".join("".join(CHARS[i - 1] for i in labels if i != BLANK).split())


@dataclasses.dataclass(frozen=True)
class BeamConfig:
    beam_size: int = 16
    lm_weight: float = 0.5  # alpha, on natural-log LM probabilities
    word_bonus: float = 1.0  # beta, per word
    prune_logp: float = -10.0  # skip characters less likely than this in a frame
    max_chars: int = 8  # the most characters tried per frame (flashlight: beam_size_token)


@dataclasses.dataclass
class _Beam:
    p_b: float = NEG_INF  # log prob of the prefix ending in blank
    p_nb: float = NEG_INF  # ... ending in its last character
    lm: float = 0.0  # LM log prob of the completed words
    words: int = 0
    state: tuple = ("<s>",)
    word_start: int = 0  # index in the prefix where the current word began

    def total(self) -> float:
        return _logaddexp(self.p_b, self.p_nb)


def beam_search(log_probs: np.ndarray, lm: NGramLM | None, cfg: BeamConfig) -> list[int]:
    """(T, C) log-probabilities -> the best label sequence."""
    log_probs = np.asarray(log_probs, dtype=np.float64)
    use_lm = lm is not None and cfg.lm_weight != 0.0
    beams: dict[tuple[int, ...], _Beam] = {(): _Beam(p_b=0.0, state=lm.begin() if lm else ())}

    def word_end(prefix: tuple[int, ...], beam: _Beam) -> tuple[float, tuple, int]:
        word = "".join(CHARS[i - 1] for i in prefix[beam.word_start:])
        if not word:
            return beam.lm, beam.state, beam.words
        if not use_lm:
            return beam.lm, beam.state, beam.words + 1
        logp, state = lm.score(beam.state, word)
        return beam.lm + logp, state, beam.words + 1

    def score(beam: _Beam) -> float:
        return beam.total() + cfg.lm_weight * beam.lm + cfg.word_bonus * beam.words

    for frame in log_probs:
        order = np.argsort(frame)[::-1][: cfg.max_chars]
        chars = [int(c) for c in order if frame[c] >= cfg.prune_logp or c == order[0]]
        nxt: dict[tuple[int, ...], _Beam] = {}

        def get(prefix: tuple[int, ...], parent: _Beam) -> _Beam:
            beam = nxt.get(prefix)
            if beam is None:
                beam = nxt[prefix] = dataclasses.replace(parent, p_b=NEG_INF, p_nb=NEG_INF)
            return beam

        for prefix, beam in beams.items():
            total = beam.total()
            last = prefix[-1] if prefix else None
            for c in chars:
                p = float(frame[c])
                if c == BLANK:
                    same = get(prefix, beam)
                    same.p_b = _logaddexp(same.p_b, total + p)
                    continue
                if c == last:
                    same = get(prefix, beam)
                    same.p_nb = _logaddexp(same.p_nb, beam.p_nb + p)
                    from_p = beam.p_b  # a repeat needs a blank between
                else:
                    from_p = total
                if c == SPACE and (last is None or last == SPACE):
                    continue  # no leading or double spaces
                new_prefix = (*prefix, c)
                child = nxt.get(new_prefix)
                if child is None:
                    if c == SPACE:
                        lm_total, state, words = word_end(prefix, beam)
                        child = _Beam(lm=lm_total, words=words, state=state, word_start=len(new_prefix))
                    else:
                        child = dataclasses.replace(beam, p_b=NEG_INF, p_nb=NEG_INF)
                    nxt[new_prefix] = child
                child.p_nb = _logaddexp(child.p_nb, from_p + p)
        ranked = sorted(nxt.items(), key=lambda kv: score(kv[1]), reverse=True)
        beams = dict(ranked[: cfg.beam_size])

    def final(item) -> float:
        prefix, beam = item
        lm_total, state, words = word_end(prefix, beam)
        if use_lm:
            end, _ = lm.score(state, "</s>")
            lm_total += end
        return beam.total() + cfg.lm_weight * lm_total + cfg.word_bonus * words

    best, _ = max(beams.items(), key=final)
    labels = list(best)
    while labels and labels[-1] == SPACE:
        labels.pop()
    return labels


def word_timings(log_probs: np.ndarray, labels: list[int], frame_s: float, duration_s: float) -> list[Word]:
    """Words with start/end times from a CTC forced alignment of `labels`.

    Confidence is the geometric mean of the aligned characters' frame
    probabilities (each character's best frame).
    """
    words: list[Word] = []
    if not labels:
        return words
    emissions = torch.as_tensor(np.asarray(log_probs, dtype=np.float32))[None]
    targets = torch.tensor([labels], dtype=torch.int32)
    if emissions.shape[1] < len(labels) + sum(a == b for a, b in zip(labels[:-1], labels[1:])):
        return words  # too few frames for this text (cannot happen for a CTC decode)
    import torchaudio.functional as AF

    path, scores = AF.forced_align(emissions, targets, blank=BLANK)
    path, scores = path[0].numpy(), scores[0].numpy()
    # Each label's frames: runs of its token in the path, in order.
    spans: list[list[int]] = []
    prev = BLANK
    for t, token in enumerate(path):
        if token != BLANK and (token != prev or not spans):
            spans.append([t])
        elif token != BLANK:
            spans[-1].append(t)
        prev = token
    if len(spans) != len(labels):
        return words
    current: list[int] = []  # label indices of the word being read
    for i, label in enumerate([*labels, SPACE]):
        if label != SPACE:
            current.append(i)
            continue
        if current:
            text = "".join(CHARS[labels[j] - 1] for j in current)
            first, last = spans[current[0]][0], spans[current[-1]][-1]
            conf = float(np.exp(np.mean([scores[spans[j]].max() for j in current])))
            words.append(Word(text, round(first * frame_s, 3), round(min((last + 1) * frame_s, duration_s), 3),
                              round(conf, 4)))
        current = []
    return words
