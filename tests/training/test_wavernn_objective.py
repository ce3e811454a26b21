"""WaveRNN objective: crops from a corpus in the speech layout, one step
lowers the loss, the sparse schedule reaches its target in 16x1 blocks,
export -> runtime -> audio."""
import dataclasses
import json
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

from models.bundle import load_bundle
from models.wavernn import WaveRNNConfig
from training.objectives.wavernn import WaveRNNDataConfig, WaveRNNObjective, WaveRNNRunConfig, linguistic_channels
from training.sparsity import SparsityConfig

PHONES = ["_", "h", "@", "l", "@U", "w", "r=", "l", "d", "_"]


def write_corpus(root, n=6, sr=16000):
    (root / "wavs").mkdir(parents=True)
    rng = np.random.default_rng(0)
    with open(root / "labels.jsonl", "w") as handle:
        for i in range(n):
            durs = [float(d) for d in rng.integers(40, 120, len(PHONES))]
            n_samples = int(sum(durs) * sr / 1000)
            t = np.arange(n_samples) / sr
            audio = 0.3 * np.sin(2 * np.pi * (110 + 20 * i) * t) + 0.01 * rng.standard_normal(n_samples)
            sf.write(root / "wavs" / f"u{i}.wav", audio.astype(np.float32), sr, subtype="PCM_16")
            split = "valid" if i == n - 1 else "train"
            label = {"id": f"u{i}", "voice": f"mb-us{1 + i % 2}", "split": split, "pho_phonemes": PHONES,
                     "durations_ms": durs, "pitch": [[[50, 120 + 5 * i]] for _ in PHONES]}
            handle.write(json.dumps(label) + "\n")


def tiny_run(root, **sparsity) -> WaveRNNRunConfig:
    model = WaveRNNConfig(hidden_size=32, cond_channels=linguistic_channels(), cond_hidden=8, cond_layers=1,
                          cond_kernel=3, n_speakers=2, speaker_dim=4)
    sp = SparsityConfig(**{"method": "none", "include": ("weight_hh", r"o[1-4]\.weight"), "block": (16, 1),
                           "min_size": 64, **sparsity})
    return WaveRNNRunConfig(model=model, data=WaveRNNDataConfig(root=str(root), crop_frames=4, pad_frames=2),
                            sparsity=sp)


def batch_of(objective, n=4):
    data = objective.train_dataset()
    items = [data.get(i % len(data), np.random.default_rng(i)) for i in range(n)]
    return objective.collate(items)


def test_crops_and_one_step_lowers_the_loss(tmp_path):
    write_corpus(tmp_path)
    obj = WaveRNNObjective(tiny_run(tmp_path))
    assert obj.speakers() == {"mb-us1": 0, "mb-us2": 1}
    batch = batch_of(obj)
    assert batch["samples"].shape == (4, 4 * 80 + 1)
    assert batch["cond"].shape == (4, 4 + 2 * 2, linguistic_channels())
    model = obj.build_modules()["model"]
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    before = obj.losses(model, batch)["loss"]
    opt.zero_grad()
    before.backward()
    opt.step()
    assert obj.losses(model, batch)["loss"].item() < before.item()
    assert len(obj.val_dataset()) == 1


def test_sparse_schedule_reaches_target_in_16x1_blocks(tmp_path):
    write_corpus(tmp_path)
    obj = WaveRNNObjective(tiny_run(tmp_path, method="gmp", target=0.9, start_step=2, end_step=10, every=2))
    model = obj.build()["model"]
    sparsity = [obj.after_step({"model": model}, step)["sparsity/overall"] for step in range(1, 12)]
    assert sparsity[0] == 0.0 and all(a <= b for a, b in zip(sparsity, sparsity[1:]))
    assert sparsity[-1] == pytest.approx(0.9, abs=0.01)
    for name in model.SPARSE:
        w = dict(model.named_parameters())[name].detach()
        blocks = (w.reshape(w.shape[0] // 16, 16, w.shape[1]) != 0)
        assert torch.equal(blocks.any(1), blocks.all(1)), name  # each 16x1 block all zero or all kept
    report = obj.sparsity_report({"model": model})
    assert report["method"] == "gmp" and report["block"] == [16, 1]


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="the text frontend needs espeak-ng")
def test_export_and_synthesize(tmp_path):
    from models.inference import load_runtime
    from models.text import FrontendError

    write_corpus(tmp_path / "corpus")
    obj = WaveRNNObjective(tiny_run(tmp_path / "corpus", method="gmp", target=0.75, start_step=0, end_step=1))
    modules = obj.build()
    obj.after_step(modules, 1)
    obj.export(modules, str(tmp_path / "bundle"), {"test": True}, "0+test")
    manifest = load_bundle(tmp_path / "bundle").manifest
    assert manifest["sparsity"]["overall"] == pytest.approx(0.75, abs=0.02)
    assert "MBROLA" in manifest["licence"]
    try:
        _, synth = load_runtime(tmp_path / "bundle")
        chunks = list(synth.synthesize("Hi there. Bye now.", voice="mb-us2"))
    except (FrontendError, RuntimeError) as exc:  # no MBROLA voice installed
        pytest.skip(str(exc))
    assert synth.streaming and synth.voices == ["mb-us1", "mb-us2"]
    # Streams chunk_s pieces within each sentence: two sentences, several pieces.
    assert len(chunks) > 2 and max(len(c) for c in chunks) <= int(synth.chunk_s * synth.sample_rate)
    assert all(c.dtype == np.float32 and len(c) > 0 and np.abs(c).max() <= 1.0 for c in chunks)
    total_s = sum(len(c) for c in chunks) / synth.sample_rate
    again = np.concatenate(list(synth.synthesize("Hi there. Bye now.", voice="mb-us2")))
    np.testing.assert_array_equal(again, np.concatenate(chunks))  # a request's audio does not depend on earlier ones
    assert 0 < synth.last_timings[-1].end_s <= total_s + 1e-6
    assert dataclasses.is_dataclass(synth.model.config)
