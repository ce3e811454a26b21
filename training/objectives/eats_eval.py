"""`sparsewave eval eats`: intelligibility and durations of an EATS bundle on a corpus's held-out split.

- WER by pocketsphinx of the bundle's speech next to the WER on the corpus's reference audio of
  the same sentences (training/objectives/wavernn.py `evaluate_intelligibility`, shared by TTS);
- total duration: the aligner's sum of token lengths against the reference audio's length (also
  their correlation over utterances, and the error left after one global tempo factor);
- per-token durations, for a bundle whose tokens are the corpus's MBROLA phones (`data.tokens:
  pho`) on a corpus with exact labels (`durations_ms`): the aligner's length of each phone against
  its exact duration, as is and scaled to the true total length, next to two baselines: each
  phone's mean duration over the corpus's train split, and the true total split uniformly.
  The reference voice may be another speaker than the model's (a held-out voice): then this says
  how close the learned timing is to that voice's.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from models.eats import row_tokens
from training.data.readers import read_labels


def phone_means_ms(rows: list[dict]) -> dict[str, float]:
    """Each MBROLA phone's mean exact duration (ms) over labelled rows."""
    sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for row in rows:
        for phone, ms in zip(row["pho_phonemes"], row["durations_ms"]):
            sums[phone][0] += ms
            sums[phone][1] += 1
    return {p: total / n for p, (total, n) in sums.items()}


def duration_errors(pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """(predicted ms (N,), exact ms (N,)) per utterance -> mean absolute error per token (ms) as
    predicted and after scaling each utterance to its exact total, the mean absolute error of the
    token boundaries after that scaling, and the correlation of scaled and exact durations."""
    raw, scaled, bounds, pred_all, exact_all = [], [], [], [], []
    for pred, exact in pairs:
        fit = pred * exact.sum() / max(pred.sum(), 1e-9)
        raw.append(np.abs(pred - exact))
        scaled.append(np.abs(fit - exact))
        bounds.append(np.abs(np.cumsum(fit) - np.cumsum(exact))[:-1])  # the last end is exact by scaling
        pred_all.append(fit)
        exact_all.append(exact)
    pred_all, exact_all = np.concatenate(pred_all), np.concatenate(exact_all)
    corr = np.corrcoef(pred_all, exact_all)[0, 1] if pred_all.std() > 0 else float("nan")
    return {"abs_error_ms": round(float(np.concatenate(raw).mean()), 2),
            "abs_error_ms_scaled_to_total": round(float(np.concatenate(scaled).mean()), 2),
            "boundary_abs_error_ms_scaled_to_total": round(float(np.concatenate(bounds).mean()), 2),
            "corr_scaled": round(float(corr), 4)}


def compare_durations(rows: list[dict], predicted_ms: list[np.ndarray], train_rows: list[dict]) -> dict:
    """The aligner's per-phone durations against the rows' exact labels, next to the baselines."""
    means = phone_means_ms(train_rows)
    fallback = float(np.mean(list(means.values())))
    exact = [np.asarray(r["durations_ms"], np.float64) for r in rows]
    by_phone = [np.array([means.get(p, fallback) for p in r["pho_phonemes"]]) for r in rows]
    uniform = [np.full(len(e), e.sum() / len(e)) for e in exact]
    return {"utterances": len(rows), "phones": int(sum(len(e) for e in exact)),
            "exact_mean_ms": round(float(np.concatenate(exact).mean()), 2),
            "eats": duration_errors(list(zip(predicted_ms, exact))),
            "phone_mean_baseline": duration_errors(list(zip(by_phone, exact))),
            "uniform_baseline": duration_errors(list(zip(uniform, exact)))}


def _tempo_error(totals: np.ndarray) -> float:
    """Mean |relative error| of predicted totals scaled by one factor (sum real / sum predicted)."""
    scaled = totals[:, 0] * totals[:, 1].sum() / max(totals[:, 0].sum(), 1e-9)
    return float(np.mean(np.abs(scaled - totals[:, 1]) / totals[:, 1]))


def evaluate_eats(bundle: str, data_root: str, split: str = "test", n_items: int = 20, wer: bool = True) -> dict:
    from models.inference import load_runtime
    from training.objectives.wavernn import evaluate_intelligibility

    _, synth = load_runtime(bundle)
    rows = read_labels(data_root, split)[:n_items]
    if not rows:
        raise ValueError(f"{data_root}: no {split} utterances")
    kind = synth.token_kind
    labelled = kind == "pho" and all(r.get("durations_ms") for r in rows)
    totals, predicted_ms = [], []
    for i, row in enumerate(rows):
        _, lengths = synth.generate(synth.symbols.encode(row_tokens(row, kind)), i % len(synth.voices))
        totals.append((float(lengths.sum()) / 200, row["n_samples"] / row["sample_rate"]))
        predicted_ms.append(np.asarray(lengths, np.float64) * 5.0)  # 200 Hz frames -> ms
    totals = np.array(totals)
    rel = (totals[:, 0] - totals[:, 1]) / totals[:, 1]
    result = {
        "split": split, "items": len(rows), "tokens": kind,
        "voices_reference": sorted({r["speaker"] for r in rows}),
        "total_duration_abs_error_s": round(float(np.abs(totals[:, 0] - totals[:, 1]).mean()), 4),
        "total_duration_rel_error_mean": round(float(rel.mean()), 4),
        "total_duration_rel_error_abs_mean": round(float(np.abs(rel).mean()), 4),
        # the reference may be another speaker: correlation and the error after one global tempo factor
        "total_duration_corr": round(float(np.corrcoef(totals.T)[0, 1]), 4) if len(rows) > 2 else None,
        "total_duration_rel_error_after_tempo": round(_tempo_error(totals), 4),
    }
    if labelled:
        train = [r for r in read_labels(data_root, "train") if r.get("durations_ms")]
        result["durations"] = compare_durations(rows, predicted_ms, train)
    else:
        result["durations"] = ("not measured: needs exact labels (durations_ms) and a bundle trained on "
                               "the corpus's MBROLA phones (data.tokens: pho)")
    if wer:
        result.update(evaluate_intelligibility(bundle, data_root, n_items=n_items, split=split))
    return result
