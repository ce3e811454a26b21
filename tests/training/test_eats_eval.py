"""EATS on MBROLA phone tokens and `eval eats`'s per-phone duration error against exact labels."""
import dataclasses
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from models.audio import write_audio
from models.bundle import load_bundle
from models.eats import row_tokens
from models.inference import load_runtime
from training.commands.export import export_run
from training.loop import Run
from training.objectives.eats import EATSDataConfig, EATSObjective, EATSRunConfig
from training.objectives.eats_eval import compare_durations, duration_errors, evaluate_eats, phone_means_ms

sys.path.insert(0, str(Path(__file__).parent))  # the objective tests' tiny run config
from test_eats_objective import tiny_run_config  # noqa: E402

# each phone has one exact duration (ms) in the fixture, so the phone-mean baseline is exact
PHONE_MS = {"h": 40.0, "@": 60.0, "l": 50.0, "@U": 120.0, "w": 45.0, "3:": 150.0, "d": 35.0, "_": 100.0}
SENTENCES = [["h", "@", "l", "@U", "_"], ["w", "3:", "l", "d", "_"], ["h", "@U", "_", "w", "@", "l", "d", "_"]]


def labelled_corpus(root):
    """Two 'voices' speaking phone sequences with exact durations (tone bursts; `_` silent), MBROLA-style rows."""
    (root / "wavs").mkdir(parents=True)
    rows = []
    for i in range(12):
        phones = SENTENCES[i % 3]
        voice = ["mb-a", "mb-b"][i % 2]
        durations = [PHONE_MS[p] for p in phones]
        chunks = [0.3 * np.sin(2 * np.pi * (150 + 20 * k) * np.arange(int(16 * ms)) / 16000) * (p != "_")
                  for k, (p, ms) in enumerate(zip(phones, durations))]
        audio = np.concatenate(chunks).astype(np.float32)
        uid = f"M{i:03d}"
        write_audio(root / "wavs" / f"{uid}.wav", audio, 16000)
        rows.append({"id": uid, "speaker": voice, "voice": voice, "split": "test" if i >= 9 else "train",
                     "phonemes": "həlˈoʊ.", "normalized": "hello", "pho_phonemes": phones,
                     "durations_ms": durations, "n_samples": len(audio), "sample_rate": 16000,
                     "licence": "test data"})
    (root / "labels.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def test_duration_errors_as_predicted_and_scaled_to_the_total():
    exact = np.array([10.0, 30.0, 60.0])
    assert duration_errors([(exact, exact)])["abs_error_ms"] == 0
    doubled = duration_errors([(2 * exact, exact)])
    assert doubled["abs_error_ms"] == pytest.approx(exact.mean(), abs=0.01)
    assert doubled["abs_error_ms_scaled_to_total"] == 0 and doubled["boundary_abs_error_ms_scaled_to_total"] == 0
    uniform = duration_errors([(np.full(3, 100 / 3), exact)])
    assert uniform["abs_error_ms"] == pytest.approx((70 / 3 + 10 / 3 + 80 / 3) / 3, abs=0.01)
    ends = uniform["boundary_abs_error_ms_scaled_to_total"]  # exact ends 10, 40; uniform 33.3, 66.7
    assert ends == pytest.approx((70 / 3 + 80 / 3) / 2, abs=0.01)


def test_phone_mean_baseline_is_exact_when_every_phone_has_one_duration(tmp_path):
    rows = [json.loads(line) for line in (labelled_corpus(tmp_path) / "labels.jsonl").read_text().splitlines()]
    assert phone_means_ms(rows) == {p: PHONE_MS[p] for p in PHONE_MS}
    predicted = [np.full(len(r["durations_ms"]), 50.0) for r in rows]
    result = compare_durations(rows, predicted, rows)
    assert result["phone_mean_baseline"]["abs_error_ms"] == 0
    assert result["uniform_baseline"]["abs_error_ms"] > 0 and result["eats"]["abs_error_ms"] > 0
    assert result["phones"] == sum(len(r["pho_phonemes"]) for r in rows)


def test_pho_tokens_train_export_and_evaluate_against_exact_durations(tmp_path):
    root = labelled_corpus(tmp_path / "corpus")
    data = EATSDataConfig(root=str(root), tokens="pho", window_frames=24, val_items=2)
    config = dataclasses.replace(tiny_run_config(root), data=data)  # 82 tokens: the pho table's size too
    objective = EATSObjective(config)
    tokens = objective.corpus().items("train")[0][0]
    assert list(tokens) == objective.corpus().symbols.encode(SENTENCES[0])
    Run(objective, tmp_path / "run").fit()
    bundle_dir = export_run(tmp_path / "run", tmp_path / "bundle")
    assert load_bundle(bundle_dir).manifest["feature_config"]["tokens"] == "pho"

    result = evaluate_eats(str(bundle_dir), str(root), wer=False)
    durations = result["durations"]
    assert result["tokens"] == "pho" and durations["utterances"] == 3 and durations["phones"] == 18
    assert durations["phone_mean_baseline"]["abs_error_ms"] == 0
    for method in ("eats", "uniform_baseline"):
        assert durations[method]["abs_error_ms_scaled_to_total"] > 0

    if shutil.which("espeak-ng") and shutil.which("mbrola"):  # text -> MBROLA phones -> phone timings
        _, synth = load_runtime(str(bundle_dir))
        try:
            list(synth.synthesize("Hello world.", voice="mb-b"))
        except Exception as exc:  # the voice data may be missing even with the binary present
            pytest.skip(f"MBROLA frontend unavailable: {exc}")
        assert synth.last_timings and all(t.kind == "phoneme" and t.text != "_" for t in synth.last_timings)


def test_pho_tokens_need_labelled_rows_and_a_known_kind(tmp_path):
    assert row_tokens({"pho_phonemes": ["h", "_"]}, "pho") == ["h", "_"]
    with pytest.raises(ValueError, match="pho_phonemes"):
        row_tokens({"id": "x", "phonemes": "a"}, "pho")
    with pytest.raises(ValueError, match="tokens 'chars'"):
        EATSObjective(EATSRunConfig(data=EATSDataConfig(root=str(tmp_path), tokens="chars")))
