"""WaveNet teacher objective: the shared loop on a tiny on-disk corpus, export, bundle."""
import json

import numpy as np
import torch

from models.audio import write_audio
from models.bundle import load_bundle
from models.registry import model_from_bundle
from models.wavenet import WaveNetConfig
from training.config import LoopConfig, OptimConfig
from training.loop import Run
from training.objectives.wavenet import WaveNetDataConfig, WaveNetObjective, WaveNetRunConfig, crop_audio
from training.version import package_version

HOP = 40


def make_corpus(root, n_train: int = 6, n_valid: int = 2):
    """The speech corpus layout (labels.jsonl + wavs/) with tones that switch on and off."""
    (root / "wavs").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n_train + n_valid):
        split, voice = ("train", ("a", "b")[i % 2]) if i < n_train else ("valid", "c")
        n = HOP * int(rng.integers(12, 20))
        t = np.arange(n) / 16000
        gate = np.repeat(rng.random(n // HOP) > 0.4, HOP)
        audio = (0.3 * gate * np.sin(2 * np.pi * (200 + 50 * i) * t)).astype(np.float32)
        uid = f"T{i:03d}"
        write_audio(root / "wavs" / f"{uid}.wav", audio, 16000)
        rows.append({"id": uid, "speaker": voice, "voice": voice, "split": split, "text": "x"})
    (root / "labels.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def teacher_config(root, **loop) -> WaveNetRunConfig:
    return WaveNetRunConfig(
        model=WaveNetConfig(hop_length=HOP, residual_channels=8, skip_channels=8, layers=4, dilation_cycle=4,
                            n_mixtures=2, cond_kind="mel", cond_channels=8, cond_hidden=8, n_speakers=2,
                            speaker_dim=2),
        data=WaveNetDataConfig(root=str(root), crop_frames=4, pad_frames=2),
        optim=OptimConfig(lr=3e-3),
        loop=LoopConfig(**{**dict(max_steps=3, batch_size=2, log_every=1, val_every=3, ckpt_every=3,
                                  progress=False, device="cpu"), **loop}))


def test_teacher_trains_exports_and_generates(tmp_path):
    cfg = teacher_config(make_corpus(tmp_path / "corpus"))
    objective = WaveNetObjective(cfg)
    val = Run(objective, tmp_path / "run").fit()
    assert np.isfinite(val["loss"]) and val["bits_per_sample"] > 0
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if x["split"] == "train"] == [1, 2, 3]

    from training.commands.export import export_run

    out = export_run(tmp_path / "run", tmp_path / "teacher")
    bundle = load_bundle(out)
    assert bundle.model_type == "wavenet"
    assert bundle.manifest["feature_config"]["kind"] == "mel"
    assert bundle.manifest["frontend_config"]["speakers"] == ["a", "b"]
    assert bundle.manifest["package_version"] == package_version()
    teacher = model_from_bundle(bundle)
    audio = teacher.generate(torch.randn(1, 3, 8), torch.tensor([1]), torch.rand(1, 3 * HOP, 2))
    assert audio.shape == (1, 3 * HOP) and audio.abs().max() <= 1


def test_teacher_loss_is_the_mean_negative_log_likelihood(tmp_path):
    cfg = teacher_config(make_corpus(tmp_path / "corpus"))
    objective = WaveNetObjective(cfg)
    data = objective.train_dataset()
    batch = objective.collate([data.get(i, np.random.default_rng(i)) for i in range(2)])
    model = objective.build_modules()["model"]
    losses = objective.losses(model, batch)
    audio = crop_audio(batch["samples"])
    assert audio.shape == (2, 4 * HOP) and batch["cond"].shape == (2, 8, 8)
    want = -model.log_prob(audio, batch["cond"], batch["speaker"], cond_offset=2).mean()
    assert torch.allclose(losses["loss"], want)


def test_pruned_teacher_exports_packed_and_its_step_runs_them(tmp_path):
    import dataclasses

    from kernels.sparse_layers import SparseConv1d
    from models.wavenet import WaveNet
    from training.checkpoint import latest_checkpoint, load_checkpoint
    from training.commands.export import export_run

    cfg = teacher_config(make_corpus(tmp_path / "corpus"))
    cfg = dataclasses.replace(cfg, sparsity=dataclasses.replace(cfg.sparsity, method="gmp", target=0.75, block=(4, 1),
                                                                start_step=0, end_step=3, every=1))
    Run(WaveNetObjective(cfg), tmp_path / "run").fit()
    bundle = load_bundle(export_run(tmp_path / "run", tmp_path / "teacher"))
    assert bundle.manifest["sparsity"]["overall"] >= 0.74 and "stack.dilated.2" in bundle.manifest["sparsity"]["packed"]
    state = load_checkpoint(latest_checkpoint(tmp_path / "run" / "checkpoints"))
    teacher = model_from_bundle(bundle)
    layers = dict(teacher.named_modules())
    for name, mask in state["objective"]["sparsifier"]["masks"].items():  # masks survive the round trip
        layer = layers[name.removesuffix(".weight")]
        assert isinstance(layer, SparseConv1d)
        assert torch.equal(layer.dense_weight().reshape(mask.shape) != 0, mask.bool())
    masked = WaveNet(cfg.model)
    masked.load_state_dict(state["modules"]["model"])
    # the queue step through the packed layers equals the masked model's, step by step
    frames = torch.randn(2, 12, 4 * 2 * 8)
    queues = [teacher.stack.init_queues(2, torch.float32, "cpu"), masked.stack.init_queues(2, torch.float32, "cpu")]
    x = torch.rand(2, 30, 1) * 2 - 1
    with torch.no_grad():
        for t in range(30):
            got = teacher.stack.step(x[:, t], frames[:, t // HOP], queues[0], t)
            want = masked.stack.step(x[:, t], frames[:, t // HOP], queues[1], t)
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
        uniforms = torch.rand(1, 20, 2, generator=torch.Generator().manual_seed(0))
        audio = teacher.generate(torch.randn(1, 2, 8), torch.tensor([0]), uniforms)
    assert audio.shape == (1, 20) and audio.abs().max() <= 1
