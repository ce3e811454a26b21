"""`sparsewave eval wavernn`: resynthesis of held-out utterances from their own
features (log-mel copy-synthesis, or exact labels), scored against the
time-aligned reference."""
import json

import numpy as np
import pytest
import soundfile as sf
import torch

from models.bundle import save_bundle
from models.config import config_to_dict
from models.registry import bundle_tensors
from models.wavernn import WaveRNN, WaveRNNConfig
from training.objectives.wavernn import evaluate_resynthesis, linguistic_channels, resynthesis_scores

SR = 16000
PHONES = ["_", "h", "@", "l", "@U", "_"]


def write_corpus(root, n=2):
    (root / "wavs").mkdir(parents=True)
    rng = np.random.default_rng(0)
    with open(root / "labels.jsonl", "w") as handle:
        for i in range(n):
            durs = [80.0] * len(PHONES)
            t = np.arange(int(sum(durs) * SR / 1000)) / SR
            audio = 0.3 * np.sin(2 * np.pi * (150 + 40 * i) * t) + 0.01 * rng.standard_normal(len(t))
            sf.write(root / "wavs" / f"u{i}.wav", audio.astype(np.float32), SR, subtype="PCM_16")
            label = {"id": f"u{i}", "voice": "mb-us3", "split": "test", "normalized": "hello", "text": "hello",
                     "pho_phonemes": PHONES, "durations_ms": durs, "pitch": [[[50, 120]] for _ in PHONES]}
            handle.write(json.dumps(label) + "\n")


def tiny_bundle(path, **overrides):
    cfg = WaveRNNConfig(**{**dict(hidden_size=32, cond_hidden=8, cond_layers=1, cond_kernel=3, speaker_dim=4,
                                  cond_channels=linguistic_channels()), **overrides})
    torch.manual_seed(0)
    save_bundle(path, model_type="wavernn", model_config=config_to_dict(cfg), tensors=bundle_tensors(WaveRNN(cfg)),
                task="tts")
    return path


def test_scores_are_zero_distance_for_the_reference_itself():
    t = np.arange(SR) / SR
    ref = (0.3 * np.sin(2 * np.pi * 200 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    noise = np.random.default_rng(0).standard_normal(SR).astype(np.float32) * ref.std()
    same, other = resynthesis_scores(ref, ref, SR), resynthesis_scores(ref, noise, SR)
    assert same["logmel_l1"] == 0.0 and other["logmel_l1"] > 1.0
    if "stoi" in same:  # pystoi is optional
        assert same["stoi"] > 0.99 > other["stoi"]


@pytest.mark.parametrize("kind", ["mel", "linguistic"])
def test_resynthesis_of_held_out_utterances(tmp_path, kind):
    write_corpus(tmp_path / "corpus")
    overrides = {"cond_kind": "mel", "cond_channels": 20} if kind == "mel" else {}
    bundle = tiny_bundle(tmp_path / "bundle", **overrides)
    result = evaluate_resynthesis(str(bundle), str(tmp_path / "corpus"), limit=2)
    assert result["items"] == 2 and result["voices"] == ["mb-us3"]
    assert result["seconds"] == pytest.approx(2 * 0.48)  # whole utterances (mel: the frames' span)
    assert result["logmel_l1_resynthesized"] > 0 and result["logmel_l1_noise"] > 0
    assert result["wer_pocketsphinx_resynthesized"] >= 0 and result["wer_pocketsphinx_reference"] >= 0
    assert evaluate_resynthesis(str(bundle), str(tmp_path / "corpus"), limit=2) == result  # seeded


def test_resynthesis_names_a_corpus_without_usable_utterances(tmp_path):
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "labels.jsonl").write_text(json.dumps({"id": "a", "split": "train"}) + "\n")
    with pytest.raises(ValueError, match="no test utterances"):
        evaluate_resynthesis(str(tiny_bundle(tmp_path / "bundle")), str(tmp_path / "corpus"))
