"""GAN-TTS training: generator against the random-window discriminators.

Each step takes random 2 s clips (400 frames of 200 Hz features and the
matching audio), generates audio from the features, a noise vector and the
speaker, then updates the discriminators with the hinge loss
(`steps.step("disc", ...)`) and the generator with -D(G(z))
(`steps.step("gen", ...)`). Two optimizers through the shared loop, both
from the run's `optim` section (the paper: Adam, lr 1e-4, betas (0, 0.999)).

`stft_weight` adds a multi-resolution STFT loss to the generator (Parallel
WaveGAN's); the paper has none, so it defaults to 0, but short CPU runs
learn much faster with it (the shipped config says which it used).
"""
from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from models.audio import normalize_loudness, resample
from models.gan_discriminators import DiscriminatorConfig, RandomWindowDiscriminators, hinge_d_loss, hinge_g_loss
from models.gan_tts import GanTTSConfig, GanTTSGenerator, conditioning, export_onnx, phones_from_label
from models.text import FrontendConfig, pho_symbols
from training.checkpoint import load_checkpoint
from training.config import LoopConfig, OptimConfig
from training.objectives.tts_corpus import CorpusTTSObjective, TTSCorpus
from training.sparsity import SparsityConfig


@dataclasses.dataclass(frozen=True)
class GanTTSDataConfig:
    root: str = "data/speech"
    train_split: str = "train"
    voices: tuple[str, ...] = ()  # speaker names (empty: all labelled train voices, sorted); ids follow this order
    clip_frames: int = 400  # 2 s at 200 Hz
    max_items: int = 0  # 0: all
    val_items: int = 32  # last utterances of the train split, held out


@dataclasses.dataclass(frozen=True)
class GanTTSLossConfig:
    stft_weight: float = 0.0  # 0: the paper's pure adversarial objective
    stft_ffts: tuple[int, ...] = (512, 1024, 2048)  # STFT sizes (hop n_fft / 4)
    adv_start_step: int = 0  # before it, the generator learns from the STFT loss alone (Parallel WaveGAN)


@dataclasses.dataclass(frozen=True)
class GanTTSRunConfig:
    model: GanTTSConfig = GanTTSConfig()
    disc: DiscriminatorConfig = DiscriminatorConfig()
    data: GanTTSDataConfig = GanTTSDataConfig()
    loss: GanTTSLossConfig = GanTTSLossConfig()
    optim: OptimConfig = OptimConfig(lr=1e-4, betas=(0.0, 0.999), grad_clip=0.0)
    loop: LoopConfig = LoopConfig(max_steps=20000, batch_size=8, log_every=25, val_every=500, ckpt_every=500)
    # sparse GAN-TTS (issue 13): prune the generator's convolutions in (4, 1) blocks
    # (rows = output channels); export packs them for kernels/conv.py
    sparsity: SparsityConfig = SparsityConfig(include=(r"(pre|blocks\.\d+\.(conv\d|skip))\.weight",),
                                              block=(4, 1), min_size=1024)
    init_checkpoint: str = ""  # a run checkpoint (.pt) whose module weights start this run (fine-tuning)


class ClipDataset:
    """Utterances of 200 Hz features (C, T), audio (T * hop,) and a speaker id;
    `get(index, rng)` cuts a random clip of `clip_frames` (zero-padded if shorter)."""

    def __init__(self, items: list[tuple[np.ndarray, np.ndarray, int]], hop: int, clip_frames: int):
        self.items, self.hop, self.clip_frames = items, hop, clip_frames

    def __len__(self) -> int:
        return len(self.items)

    def get(self, index: int, rng: np.random.Generator | None):
        feats, audio, speaker = self.items[index]
        n = self.clip_frames
        start = int(rng.integers(0, feats.shape[1] - n + 1)) if rng is not None and feats.shape[1] > n else 0
        f = feats[:, start:start + n]
        a = audio[start * self.hop:(start + n) * self.hop]
        if f.shape[1] < n:  # short utterance: pad with silence and zero features
            f = np.pad(f, ((0, 0), (0, n - f.shape[1])))
        a = np.pad(a, (0, n * self.hop - len(a)))
        return torch.from_numpy(np.ascontiguousarray(f, np.float32)), torch.from_numpy(
            np.ascontiguousarray(a, np.float32)), torch.tensor(speaker)

    def __getitem__(self, index: int):
        return self.get(index, None)


class Corpus(TTSCorpus):
    """The speech corpus as GAN-TTS items: 200 Hz features from the exact MBROLA labels, the
    audio at the model's rate, and a speaker id per voice. Only voices with duration and pitch
    labels (MBROLA) can be used: the others have no alignment. Validation holds out the last
    `val_items` utterances of the train split (same voices, unseen sentences): held-out voices
    have no speaker id."""
    hint = "--voices mb-us1 mb-us2 ..."

    def usable(self, row: dict) -> bool:
        return bool(row.get("durations_ms"))

    def check_model(self) -> None:
        expected = len(pho_symbols()) + 4 + len(self.voices)
        if self.model.in_channels != expected or self.model.n_speakers != len(self.voices):
            raise ValueError(f"{len(self.voices)} voices ({', '.join(self.voices)}) need model.in_channels="
                             f"{expected} and model.n_speakers={len(self.voices)}")
        self.prosody = {r["speaker"]: r["voice"] for r in self.rows}

    def load(self, row: dict) -> tuple[np.ndarray, np.ndarray, int]:
        speaker = self.voices.index(row["speaker"])
        feats = conditioning(phones_from_label(row), speaker, len(self.voices), self.model.sample_rate)
        audio, n = self.audio(row), feats.shape[1] * self.model.hop_length
        return feats, np.pad(audio[:n], (0, max(0, n - len(audio)))).astype(np.float32), speaker

    def frontend_config(self) -> dict[str, Any]:
        return {"voices": self.voices, "prosody_voices": self.prosody, "symbols": pho_symbols().to_dict(),
                "frontend": FrontendConfig().to_dict()}


def stft_loss(fake: torch.Tensor, real: torch.Tensor, ffts: tuple[int, ...]) -> torch.Tensor:
    """Multi-resolution spectral convergence + log-magnitude L1 (B, T), (B, T) -> scalar."""
    total = fake.new_zeros(())
    for n_fft in ffts:
        window = torch.hann_window(n_fft, device=fake.device)
        mags = [torch.stft(x, n_fft, n_fft // 4, window=window, return_complex=True).abs().clamp_min(1e-5)
                for x in (fake, real)]
        total = total + torch.norm(mags[1] - mags[0]) / torch.norm(mags[1]).clamp_min(1e-5)
        total = total + F.l1_loss(mags[0].log(), mags[1].log())
    return total / len(ffts)


def _inner(module: nn.Module) -> nn.Module:
    return getattr(module, "module", module)  # DDP wraps modules


class GanTTSObjective(CorpusTTSObjective):
    name = "gan-tts"
    config_cls = GanTTSRunConfig
    model_type = "gan-tts"
    task = "tts"
    corpus_cls = Corpus

    def __init__(self, config: GanTTSRunConfig):
        super().__init__(config)
        if config.disc.sample_rate != config.model.sample_rate:
            raise ValueError(f"disc.sample_rate {config.disc.sample_rate} != model.sample_rate "
                             f"{config.model.sample_rate}")
        if config.disc.cond_channels != config.model.in_channels:
            raise ValueError(f"disc.cond_channels {config.disc.cond_channels} != model.in_channels "
                             f"{config.model.in_channels}: the conditional discriminators see the features")
        if config.loss.adv_start_step > 0 and config.loss.stft_weight <= 0:
            raise ValueError("loss.adv_start_step needs loss.stft_weight > 0 (the warm-up trains on it)")

    def build_modules(self):
        modules = {"model": GanTTSGenerator(self.config.model), "disc": RandomWindowDiscriminators(self.config.disc)}
        if self.config.init_checkpoint:
            state = load_checkpoint(self.config.init_checkpoint)["modules"]
            for name, module in modules.items():
                module.load_state_dict(state[name])
        return modules  # Objective.build() adds the Sparsifier when `sparsity` prunes

    def optimizer_groups(self, modules):
        return {"gen": list(modules["model"].parameters()), "disc": list(modules["disc"].parameters())}

    # --- data -------------------------------------------------------------------
    def train_dataset(self):
        return ClipDataset(self.corpus().items(self.config.data.train_split, self.config.data.max_items),
                           self.config.model.hop_length, self.config.data.clip_frames)

    def val_dataset(self):
        return ClipDataset(self.corpus().items("valid"),
                           self.config.model.hop_length, self.config.data.clip_frames)

    # --- steps ------------------------------------------------------------------
    def losses(self, modules, batch) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
        """(disc loss, fake audio, logs); the generator loss needs the updated disc."""
        feats, real, speaker = batch
        gen, disc = modules["model"], modules["disc"]
        noise = torch.randn(feats.shape[0], self.config.model.noise_dim, device=feats.device)
        fake = gen(feats, noise, speaker)
        self._offsets = _inner(disc).sample_offsets(real.shape[0], real.shape[1])
        d_real = disc(real, feats, self._offsets)
        d_fake = disc(fake.detach(), feats, self._offsets)
        d_loss = hinge_d_loss(d_real, d_fake)
        logs = {"d_real": float(torch.stack([v.detach().mean() for v in d_real.values()]).mean()),
                "d_fake": float(torch.stack([v.detach().mean() for v in d_fake.values()]).mean())}
        return d_loss, fake, logs

    def generator_loss(self, modules, batch, fake) -> tuple[torch.Tensor, dict[str, float]]:
        feats, real, _ = batch
        disc = modules["disc"]
        _inner(disc).requires_grad_(False)  # no discriminator gradients from the generator's loss
        try:
            adv = hinge_g_loss(disc(fake, feats, self._offsets))
        finally:
            _inner(disc).requires_grad_(True)
        logs = {"g_adv": adv.item()}
        loss = adv
        if self.config.loss.stft_weight > 0:
            spec = stft_loss(fake, real, self.config.loss.stft_ffts)
            loss = loss + self.config.loss.stft_weight * spec
            logs["stft"] = spec.item()
        return loss, logs

    def train_step(self, modules, batch, step, steps):
        if step < self.config.loss.adv_start_step:  # spectral warm-up: no discriminator yet
            feats, real, speaker = batch
            noise = torch.randn(feats.shape[0], self.config.model.noise_dim, device=feats.device)
            spec = stft_loss(modules["model"](feats, noise, speaker), real, self.config.loss.stft_ffts)
            steps.step("gen", self.config.loss.stft_weight * spec)
            return {"loss": spec.item(), "stft": spec.item()}
        d_loss, fake, logs = self.losses(modules, batch)
        steps.step("disc", d_loss)
        g_loss, g_logs = self.generator_loss(modules, batch, fake)
        steps.step("gen", g_loss)
        return {"loss": g_loss.item(), "d_loss": d_loss.item(), "g_loss": g_loss.item(), **logs, **g_logs}

    @torch.no_grad()
    def val_step(self, modules, batch):
        feats, real, speaker = batch
        gen = modules["model"]
        fake = gen.generate(feats, speaker, seed=0)
        d_loss, _, logs = self.losses(modules, batch)
        return {"loss": stft_loss(fake, real, self.config.loss.stft_ffts).item(), "d_loss": d_loss.item(), **logs}

    def example_audio(self, model, example, device):
        feats, _, speaker = example
        return model.generate(feats[None].to(device), speaker[None].to(device), seed=0)

    @property
    def feature_extra(self) -> dict[str, Any]:
        return {"in_channels": self.config.model.in_channels}

    # --- export: CorpusTTSObjective.export (packed layers when sparse, else this ONNX graph) ------
    def export_assets(self, model, tmp: Path) -> dict[str, Path]:
        return {"model.onnx": export_onnx(model, tmp / "model.onnx")}


# --- evaluation: `sparsewave eval fdsd` (training/objectives/tts_eval.py) ------------
def reference_pairs(synth, texts: list[str]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Each held-out text rendered by MBROLA in one of the bundle's voices (round robin),
    trimmed and normalized as the corpus is, and the generator's audio from the very same
    labels: (real, generated), both at the model's rate."""
    from training.data.speech import trim_phones
    from training.data.voices import BY_NAME, synthesize

    real, fake = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i, text in enumerate(texts):
            speaker = i % len(synth.voices)
            audio, sr, phones = synthesize(BY_NAME[synth.voices[speaker]], text, Path(tmp) / str(i))
            audio = resample(audio, sr, synth.sample_rate) if sr != synth.sample_rate else audio
            kept, cut_start, _ = trim_phones(phones)
            feats = conditioning(kept, speaker, len(synth.voices), synth.sample_rate, synth.symbols)
            start, n = int(round(cut_start * synth.sample_rate / 1000)), feats.shape[1] * synth.config.hop_length
            clip = audio[start:start + n]
            real.append(normalize_loudness(np.pad(clip, (0, n - len(clip)))).astype(np.float32))
            fake.append(synth.generate(feats, speaker).astype(np.float32))
    return real, fake
