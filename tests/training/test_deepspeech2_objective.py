"""Deep Speech 2 training: CTC step, the loop on a tiny corpus, export, bundle round trip, LM."""
import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch

from models.deepspeech2.model import DeepSpeech2Config
from training.config import LoopConfig, OptimConfig
from training.lm import BOS, build_kneser_ney, corpus_sentences, write_arpa
from training.objectives.deepspeech2 import (DeepSpeech2DataConfig, DeepSpeech2DecodeConfig, DeepSpeech2Objective,
                                             DeepSpeech2RunConfig, collate, ctc_loss, read_labels)
from models.deepspeech2.features import asr_feature_config
from models.deepspeech2.model import DeepSpeech2

SENTENCES = ["a cat", "the dog", "go on", "see me", "no way", "a bee", "it is", "we go", "do it", "up top"]


def tiny_model_config(**overrides) -> DeepSpeech2Config:
    base = dict(n_mels=16, conv_channels=(4, 4), conv_kernels=((5, 7), (5, 5)), conv_strides=((2, 2), (1, 1)),
                rnn_layers=1, rnn_hidden=32)
    return DeepSpeech2Config(**{**base, **overrides})


def write_corpus(root, n=12):
    """An LJSpeech-layout corpus of chirps whose pitch depends on the text, with labels.jsonl."""
    (root / "wavs").mkdir(parents=True)
    rows = []
    for i in range(n):
        text = SENTENCES[i % len(SENTENCES)]
        t = np.arange(int(16000 * (0.4 + 0.05 * len(text)))) / 16000
        audio = 0.3 * np.sin(2 * np.pi * (200 + 40 * (i % 7)) * t * (1 + t))
        sf.write(root / "wavs" / f"u{i:03d}.wav", audio.astype(np.float32), 16000)
        split = "train" if i < 8 else ("valid" if i < 10 else "test")
        rows.append({"id": f"u{i:03d}", "text": text.capitalize() + ".", "voice": "sine", "split": split})
    (root / "labels.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (root / "metadata.csv").write_text("\n".join(f"{r['id']}|{r['text']}|{r['text']}" for r in rows) + "\n")
    return root


def run_config(root, lm_path="", **loop) -> DeepSpeech2RunConfig:
    return DeepSpeech2RunConfig(
        model=tiny_model_config(), features=asr_feature_config(n_mels=16),
        data=DeepSpeech2DataConfig(root=str(root)),
        decode=DeepSpeech2DecodeConfig(lm_path=str(lm_path), beam_size=4),
        optim=OptimConfig(lr=3e-3, warmup_steps=0),
        loop=LoopConfig(**{**dict(max_steps=3, batch_size=4, log_every=1, val_every=3, ckpt_every=3,
                                  progress=False, device="cpu"), **loop}))


def test_one_step_lowers_the_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    model = DeepSpeech2(tiny_model_config())
    feats = [torch.randn(60 + 7 * i, 16) for i in range(4)]
    items = [(f, torch.tensor([3 + i, 4, 5 + i])) for i, f in enumerate(feats)]
    batch = collate(items)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    before, _, _ = ctc_loss(model, batch)
    opt.zero_grad()
    before.backward()
    opt.step()
    after, _, _ = ctc_loss(model, batch)
    assert after.item() < before.item()


def test_dataset_reads_the_split_and_sorts_for_sortagrad(tmp_path):
    root = write_corpus(tmp_path / "corpus")
    objective = DeepSpeech2Objective(run_config(root))
    train, val = objective.train_dataset(), objective.val_dataset()
    assert (len(train), len(val)) == (8, 2)
    assert objective.sorta_grad and len(train.lengths) == 8
    feats, labels = train.get(0, np.random.default_rng(0))
    assert feats.shape[1] == 16 and labels.ndim == 1
    assert {r["split"] for r in read_labels(root, "test")} == {"test"}
    import dataclasses

    cfg = run_config(root)
    piped = DeepSpeech2Objective(dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, augment_recipe="pipeline")))
    feats2, labels2 = piped.train_dataset().get(0, np.random.default_rng(0))
    assert feats2.shape[1] == 16 and torch.isfinite(feats2).all() and torch.equal(labels, labels2)


def test_kneser_ney_normalizes_and_reads_packaged_text(tmp_path):
    from models.ngram import NGramLM

    lm = NGramLM.from_arpa(write_arpa(build_kneser_ney(SENTENCES * 2, min_counts=(1, 2, 2)), tmp_path / "x.arpa"))
    for state in [(BOS,), ("a",), ("a", "cat")]:
        assert sum(math.exp(lm.score(state, w)[0]) for w in lm.vocab if w != BOS) == pytest.approx(1.0, abs=1e-4)
    some = corpus_sentences(("test",))  # the smallest split keeps this quick
    if not some:
        pytest.skip("fortunes/wordnet packages not installed")
    rest = corpus_sentences(("test",), exclude=some[:3])
    assert len(rest) == len(some) - 3 and not set(some[:3]) & set(rest)
    assert all(s == " ".join(s.split()) and s.replace(" ", "").replace("'", "").isalpha() for s in some)


@pytest.mark.slow
def test_train_export_and_bundle_round_trip(tmp_path):
    from models.bundle import load_bundle
    from models.inference import load_runtime
    from models.deepspeech2.runtime import DeepSpeech2Transcriber
    from training.loop import Run
    from training.objectives.deepspeech2 import split_audio, tune_bundle

    root = write_corpus(tmp_path / "corpus")
    lm_path = write_arpa(build_kneser_ney(SENTENCES), tmp_path / "lm.arpa")
    objective = DeepSpeech2Objective(run_config(root, lm_path))
    metrics = Run(objective, tmp_path / "run").fit()
    assert {"loss", "cer", "wer"} <= set(metrics)
    from training.commands.export import export_run

    bundle_dir = export_run(tmp_path / "run", tmp_path / "bundle")
    bundle, runtime = load_runtime(bundle_dir)
    assert {"model.onnx", "lm.arpa.gz"} <= set(bundle.manifest["files"])
    audio, _, _ = split_audio(root, "test", sample_rate=16000)
    first = runtime.transcribe_batch(audio)
    again = load_runtime(bundle_dir)[1].transcribe_batch(audio)
    assert [t.text for t in first] == [t.text for t in again]
    assert [t.duration_s for t in first] == pytest.approx([len(a) / 16000 for a in audio])
    onnx = DeepSpeech2Transcriber.from_bundle(load_bundle(bundle_dir), engine="onnx")
    for a, b in zip(runtime.log_probs(audio), onnx.log_probs(audio)):
        np.testing.assert_allclose(a, b, atol=1e-4)
    best, table = tune_bundle(load_bundle(bundle_dir), root, "valid", 0, [0.0, 0.5], [0.0, 1.0])
    assert len(table) == 5 and best in table
    assert "tuned_on" in load_bundle(bundle_dir).manifest["inference_defaults"]


def test_extra_roots_join_training_and_init_bundle_starts_from_its_weights(tmp_path):
    import dataclasses

    from training.commands.export import export_run
    from training.loop import Run

    root, extra = write_corpus(tmp_path / "corpus"), write_corpus(tmp_path / "extra", n=6)
    objective = DeepSpeech2Objective(run_config(root, max_steps=1))
    Run(objective, tmp_path / "run").fit()
    bundle_dir = export_run(tmp_path / "run", tmp_path / "bundle")

    config = run_config(root)
    config = dataclasses.replace(config, init_bundle=str(bundle_dir),
                                 data=dataclasses.replace(config.data, extra_roots=(str(extra),)))
    tuned = DeepSpeech2Objective(config)
    assert len(tuned.train_dataset()) == 8 + 6 and not tuned.sorta_grad
    start = tuned.build_modules()["model"].state_dict()
    from models.bundle import load_bundle
    from models.registry import model_from_bundle

    exported = model_from_bundle(load_bundle(bundle_dir)).state_dict()
    for key, value in exported.items():
        torch.testing.assert_close(start[key], value)
    wider = dataclasses.replace(config, model=tiny_model_config(rnn_hidden=48))
    with pytest.raises(ValueError, match="model config differs"):
        DeepSpeech2Objective(wider).build_modules()
    both = dataclasses.replace(config, init_checkpoint=str(tmp_path / "run" / "checkpoints" / "x.pt"))
    with pytest.raises(ValueError, match="not both"):
        DeepSpeech2Objective(both).build_modules()
