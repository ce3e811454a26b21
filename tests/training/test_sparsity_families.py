"""Sparsity from the config of a family with no sparsity code of its own (Deep Speech 2):
the shared loop builds the Sparsifier, the masks go into checkpoints, export
keeps the pruned blocks and the bundle's manifest reports them per layer."""
import json

import numpy as np
import pytest
import soundfile as sf
import torch

from kernels.linear import block_scores, expand_blocks
from models.bundle import load_bundle
from models.registry import model_from_bundle
from training import checkpoint as ckpt
from training.commands.export import export_run
from training.config import load_config
from training.loop import Run
from training.objectives.deepspeech2 import DeepSpeech2Objective, DeepSpeech2RunConfig

PRUNED = tuple(f"rnns.0.weight_{m}_l0{d}" for m in ("ih", "hh") for d in ("", "_reverse"))  # bidirectional GRU


def write_corpus(root, texts=("a cat", "the dog", "go on", "see me", "no way", "we go")):
    """Chirps with labels.jsonl in the speech layout; the last one is the valid split."""
    (root / "wavs").mkdir(parents=True)
    rows = []
    for i, text in enumerate(texts):
        t = np.arange(int(16000 * (0.4 + 0.05 * len(text)))) / 16000
        audio = (0.3 * np.sin(2 * np.pi * (200 + 40 * i) * t)).astype(np.float32)
        sf.write(root / "wavs" / f"u{i}.wav", audio, 16000)
        split = "valid" if i == len(texts) - 1 else "train"
        rows.append({"id": f"u{i}", "text": text, "voice": "sine", "split": split})
    (root / "labels.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def _blocks_whole(w: torch.Tensor, block=(16, 1)) -> bool:
    """Every 16x1 block is all zero or all non-zero."""
    kept = expand_blocks(block_scores(w, block) > 0, block, tuple(w.shape))
    return torch.equal(kept, w != 0)


def test_deepspeech2_prunes_from_its_config_and_exports_the_masks(tmp_path):
    root = write_corpus(tmp_path / "corpus")
    cfg = load_config(DeepSpeech2RunConfig, None, [
        f"data.root={root}", "data.augment=false", "model.n_mels=16", "features.n_mels=16",
        "model.conv_channels=[4,4]", "model.conv_kernels=[[5,7],[5,5]]", "model.conv_strides=[[2,2],[1,1]]",
        "model.rnn_layers=1", "model.rnn_hidden=32", "decode.onnx=false", "decode.decoder=greedy",
        "optim.warmup_steps=0", "loop.max_steps=6", "loop.batch_size=4", "loop.val_every=6", "loop.ckpt_every=6",
        "loop.log_every=1", "loop.progress=false", "loop.device=cpu",
        r"sparsity.include=['rnns\..*\.weight_.*']", "sparsity.method=gmp", "sparsity.block=[16,1]",
        "sparsity.target=0.75", "sparsity.start_step=1", "sparsity.end_step=4", "sparsity.every=1"])
    objective = DeepSpeech2Objective(cfg)
    run = Run(objective, tmp_path / "run")
    run.fit()
    assert sorted(objective.sparsifier.params) == sorted(PRUNED)
    params = dict(run.modules["model"].named_parameters())
    for name in PRUNED:
        w = params[name].detach()
        assert (w == 0).float().mean().item() == pytest.approx(0.75, abs=1e-6), name
        assert _blocks_whole(w), name
    state = ckpt.load_checkpoint(ckpt.latest_checkpoint(tmp_path / "run" / "checkpoints"))
    masks = state["objective"]["sparsifier"]["masks"]
    assert all(torch.equal(masks[n].bool(), params[n].detach() != 0) for n in PRUNED)

    bundle = load_bundle(export_run(tmp_path / "run", tmp_path / "bundle"))
    report = bundle.manifest["sparsity"]
    assert report["method"] == "gmp" and report["block"] == [16, 1]
    assert report["overall"] == pytest.approx(0.75) and sorted(report["layers"]) == sorted(PRUNED)
    exported = dict(model_from_bundle(bundle).named_parameters())
    for name in PRUNED:
        assert torch.equal(exported[name].detach() != 0, params[name].detach() != 0), name


def test_wavernn_bundle_stores_the_rigl_masks_packed_and_samples_from_them(tmp_path):
    from models.wavernn import WaveRNN
    from models.wavernn_fused import FusedWaveRNN
    from training.objectives.wavernn import WaveRNNObjective, WaveRNNRunConfig

    cfg = load_config(WaveRNNRunConfig, None, [
        "model.hidden_size=64", "model.cond_channels=8", "model.cond_hidden=8", "model.cond_layers=1",
        "model.n_speakers=2", "model.speaker_dim=4", "data.voices=[a, b]", "sparsity.method=rigl",
        "sparsity.target=0.75", "sparsity.min_size=256", r"sparsity.include=['weight_hh', 'o[1-4]\.weight']"])
    objective = WaveRNNObjective(cfg)
    modules = objective.build()
    objective.after_step(modules, 1)
    bundle = load_bundle(objective.export(modules, str(tmp_path / "bundle"), {"test": True}, "0+test"))
    assert bundle.manifest["sparsity"]["method"] == "rigl"
    assert bundle.manifest["sparsity"]["overall"] == pytest.approx(0.75, abs=0.01)
    masks = objective.sparsifier.masks
    for name in WaveRNN.SPARSE:  # packed: exactly the kept 16x1 blocks, no dense copy
        assert name not in bundle.tensors
        kept = int((block_scores(masks[name].float(), (16, 1)) > 0).sum())
        assert bundle.tensors[name + ".bsr_indices"].numel() == kept, name
    loaded = model_from_bundle(bundle)
    sampler = FusedWaveRNN(loaded, sparse=True)
    assert sampler.density == pytest.approx(0.25, abs=0.01)
    cond, spk = torch.randn(1, 3, 8), torch.tensor([1])
    u = torch.rand(1, 160, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    np.testing.assert_array_equal(sampler.generate(cond, spk, u.numpy()), loaded.generate(cond, spk, u).numpy())
