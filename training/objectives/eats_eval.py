"""`sparsewave eval eats`: intelligibility and durations of an EATS bundle on a corpus's held-out split.

- WER by pocketsphinx of the bundle's speech next to the WER on the corpus's reference audio of
  the same sentences (training/objectives/wavernn.py `evaluate_intelligibility`, shared by TTS);
- total duration: the aligner's sum of token lengths against the reference audio's length (also
  their correlation over utterances, and the error left after one global tempo factor);
- where the corpus has exact MBROLA labels (`durations_ms`): clause pauses. The IPA tokens carry
  the punctuation and the .pho labels the pauses (`_`) it causes, so when their counts match, the
  predicted start of each punctuation token is compared with the exact start of its pause; the
  same figure for token lengths spread uniformly over the exact total is the baseline. MBROLA
  voices are other speakers than the model's, so this measures how close the learned timing is
  to another voice's, not an error against the model's own voice.
"""
from __future__ import annotations

import numpy as np

from training.data.readers import read_labels

PAUSE_PUNCT = frozenset(",.;:!?")


def pause_starts_pho(durations_ms: list[float], phonemes: list[str]) -> list[float]:
    """Start times (s) of the pauses inside an utterance (not the leading or trailing silence)."""
    starts = np.concatenate([[0.0], np.cumsum(durations_ms)[:-1]]) / 1000
    return [float(starts[i]) for i, p in enumerate(phonemes) if p == "_" and 0 < i < len(phonemes) - 1]


def pause_starts_tokens(tokens: list[str], lengths_frames: np.ndarray) -> list[float]:
    """Start times (s) of the punctuation tokens before the final one."""
    starts = (np.cumsum(lengths_frames) - lengths_frames) / 200
    idx = [i for i, t in enumerate(tokens) if t in PAUSE_PUNCT]
    idx = [i for i in idx if any(t.isalpha() for t in tokens[i + 1:])]  # inside the utterance
    return [float(starts[i]) for i in idx]


def _tempo_error(totals: np.ndarray) -> float:
    """Mean |relative error| of predicted totals scaled by one factor (sum real / sum predicted)."""
    scaled = totals[:, 0] * totals[:, 1].sum() / max(totals[:, 0].sum(), 1e-9)
    return float(np.mean(np.abs(scaled - totals[:, 1]) / totals[:, 1]))


def evaluate_eats(bundle: str, data_root: str, split: str = "test", n_items: int = 20) -> dict:
    from models.inference import load_runtime
    from training.objectives.wavernn import evaluate_intelligibility

    _, synth = load_runtime(bundle)
    rows = read_labels(data_root, split)[:n_items]
    if not rows:
        raise ValueError(f"{data_root}: no {split} utterances")
    totals, total_err, total_rel, pause_err, pause_base, matched, compared = [], [], [], [], [], 0, 0
    for i, row in enumerate(rows):
        tokens = list(row["phonemes"])
        _, lengths = synth.generate(synth.symbols.encode(tokens), i % len(synth.voices))
        predicted, real = float(lengths.sum()) / 200, row["n_samples"] / row["sample_rate"]
        totals.append((predicted, real))
        total_err.append(abs(predicted - real))
        total_rel.append((predicted - real) / real)
        if row.get("durations_ms"):
            exact = pause_starts_pho(row["durations_ms"], row["pho_phonemes"])
            got = pause_starts_tokens(tokens, lengths)
            uniform = pause_starts_tokens(tokens, np.full(len(tokens), real * 200 / len(tokens)))
            compared += 1
            if exact and len(exact) == len(got):
                matched += 1
                pause_err += [abs(a - b) for a, b in zip(got, exact)]
                pause_base += [abs(a - b) for a, b in zip(uniform, exact)]
    result = {
        "split": split, "items": len(rows), "voices_reference": sorted({r["speaker"] for r in rows}),
        "total_duration_abs_error_s": round(float(np.mean(total_err)), 4),
        "total_duration_rel_error_mean": round(float(np.mean(total_rel)), 4),
        "total_duration_rel_error_abs_mean": round(float(np.mean(np.abs(total_rel))), 4),
        # the reference may be another speaker: correlation and the error after one global tempo factor
        "total_duration_corr": round(float(np.corrcoef(np.array(totals).T)[0, 1]), 4) if len(rows) > 2 else None,
        "total_duration_rel_error_after_tempo": round(_tempo_error(np.array(totals)), 4),
        **evaluate_intelligibility(bundle, data_root, n_items=n_items, split=split),
    }
    if compared:
        result["pauses"] = {
            "utterances_with_labels": compared, "utterances_matched": matched, "pauses": len(pause_err),
            "start_abs_error_ms": round(1000 * float(np.mean(pause_err)), 1) if pause_err else None,
            "uniform_baseline_abs_error_ms": round(1000 * float(np.mean(pause_base)), 1) if pause_base else None}
    return result
