"""GAN-TTS objective: two optimizers through the shared loop, clips, export."""
import numpy as np
import torch

from models.bundle import load_bundle
from models.gan_discriminators import DiscriminatorConfig
from models.gan_tts import GanTTSConfig, onnx_session, run_onnx
from models.registry import model_from_bundle
from training.config import LoopConfig, OptimConfig
from training.loop import Run, Steps
from training.objectives.gan_tts import ClipDataset, GanTTSDataConfig, GanTTSLossConfig, GanTTSObjective, \
    GanTTSRunConfig

HOP = 80


def tiny_run_config(**loop) -> GanTTSRunConfig:
    return GanTTSRunConfig(
        model=GanTTSConfig(in_channels=5, noise_dim=4, n_speakers=2, speaker_dim=2, channels=(8, 8, 6, 6, 4, 4, 4)),
        disc=DiscriminatorConfig(cond_channels=5, channels=4, max_channels=8, post_blocks=1),
        data=GanTTSDataConfig(clip_frames=40, val_items=2),
        loss=GanTTSLossConfig(stft_weight=1.0, stft_ffts=(128, 256)),
        optim=OptimConfig(lr=1e-3, betas=(0.0, 0.999), grad_clip=0.0),
        loop=LoopConfig(**{**dict(max_steps=3, batch_size=2, log_every=1, val_every=3, ckpt_every=3,
                                  progress=False, device="cpu"), **loop}),
    )


def utterances(n: int, seed: int) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """Real-shaped items: features that switch a tone on and off, and that tone."""
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        frames = int(rng.integers(30, 70))
        on = (rng.random(frames) > 0.5).astype(np.float32)
        feats = np.stack([on, 1 - on, *rng.standard_normal((3, frames)).astype(np.float32)])
        t = np.arange(frames * HOP) / 16000
        audio = (0.3 * np.repeat(on, HOP) * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
        items.append((feats, audio, i % 2))
    return items


class MemoryCorpus:
    def __init__(self):
        self.splits = {"train": utterances(6, 0), "valid": utterances(2, 1)}

    def items(self, split, limit=0):
        items = self.splits[split]
        return items[:limit] if limit else items

    def frontend_config(self):
        return {"voices": ["a", "b"]}

    def licence(self):
        return "test data"


class MemoryObjective(GanTTSObjective):
    def corpus(self):
        return MemoryCorpus()


def test_clips_are_aligned_and_padded():
    items = utterances(3, 2)
    data = ClipDataset(items, HOP, clip_frames=40)
    for index in range(3):
        feats, audio, speaker = data.get(index, np.random.default_rng(index))
        assert feats.shape == (5, 40) and audio.shape == (40 * HOP,)
        # the clip's audio is the tone exactly where its features say "on"
        on = np.repeat(feats[0].numpy(), HOP) > 0
        assert np.all(audio.numpy()[~on] == 0)
        assert int(speaker) == items[index][2]


def test_train_step_updates_both_optimizers():
    torch.manual_seed(0)
    objective = MemoryObjective(tiny_run_config())
    modules = objective.build_modules()
    groups = objective.optimizer_groups(modules)
    assert set(groups) == {"gen", "disc"}
    optimizers = {k: torch.optim.Adam(v, lr=1e-3) for k, v in groups.items()}
    schedulers = {k: torch.optim.lr_scheduler.LambdaLR(o, lambda s: 1.0) for k, o in optimizers.items()}
    steps = Steps(optimizers, schedulers, {}, grad_clip=0.0)
    data = objective.train_dataset()
    batch = objective.collate([data.get(i, np.random.default_rng(i)) for i in range(2)])
    before = {k: [p.detach().clone() for p in v] for k, v in groups.items()}
    logs = objective.train_step(modules, batch, 0, steps)
    assert {"loss", "d_loss", "g_adv", "stft"} <= set(logs)
    assert all(np.isfinite(v) for v in logs.values())
    for name, params in groups.items():
        assert any(not torch.equal(a, b) for a, b in zip(before[name], params)), name
    assert all(p.requires_grad for p in modules["disc"].parameters())


def test_shared_loop_trains_and_exports_an_onnx_bundle(tmp_path):
    objective = MemoryObjective(tiny_run_config())
    metrics = Run(objective, tmp_path / "run").fit()
    assert np.isfinite(metrics["loss"])
    state = torch.load(next((tmp_path / "run" / "checkpoints").glob("*.pt")), weights_only=True)
    assert set(state["optimizers"]) == {"gen", "disc"}
    modules = objective.build_modules()
    for name, module in modules.items():
        module.load_state_dict(state["modules"][name])
    objective.export(modules, str(tmp_path / "bundle"), {"test": True}, "0+test")
    bundle = load_bundle(tmp_path / "bundle")
    assert bundle.manifest["frontend_config"]["voices"] == ["a", "b"]
    model = model_from_bundle(bundle)
    feats = np.random.default_rng(0).standard_normal((1, 5, 17)).astype(np.float32)
    noise = np.ones((1, 4), np.float32)
    got = run_onnx(onnx_session(bundle.onnx_path, threads=1), feats, noise, np.array([1]))
    with torch.no_grad():
        want = model(torch.from_numpy(feats), torch.from_numpy(noise), torch.tensor([1])).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)
