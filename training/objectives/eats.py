"""EATS training (Donahue et al. 2020): aligner + GAN-TTS decoder against random-window
discriminators and a mel-spectrogram discriminator, with the length loss and the
soft-DTW spectrogram prediction loss.

Each step the aligner runs on the whole token sequence; a random window of
`window_frames` 200 Hz frames of its aligned output (the same offset as a
window of the real audio) is decoded to audio. The losses:

- discriminators (`steps.step("disc", ...)`): hinge loss of the GAN-TTS
  random-window ensemble (models/gan_discriminators.py; the conditional half,
  if built, sees the speaker as one-hot frames: the real audio has no aligned
  features) plus the mel-spectrogram discriminator;
- generator (`steps.step("gen", ...)`): -D(G(z)) summed over the ensemble,
  + length_weight * 0.5 (L - sum l)^2 (L the utterance's true length in frames),
  + dtw_weight * soft-DTW of L1 log-mel frame costs between the generated and
  the real window (warp penalty, temperature), divided by the window's frames.

`adv_start_step` trains on the length and soft-DTW losses alone at first (not
in the paper; a CPU-length run needs it). EATS needs no duration labels, so
it trains on any voice of the corpus (`sparsewave data speech`).
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from models.eats import (EATS, EATSConfig, MelDiscriminator, MelDiscriminatorConfig, export_onnx, row_tokens,
                         soft_log_mel, token_symbols)
from models.gan_discriminators import DiscriminatorConfig, RandomWindowDiscriminators, hinge_d_loss, hinge_g_loss
from models.text import FrontendConfig
from training.checkpoint import load_checkpoint
from training.config import LoopConfig, OptimConfig
from training.objectives.gan_tts import _inner  # unwraps DDP
from training.objectives.tts_corpus import CorpusTTSObjective, TTSCorpus
from training.soft_dtw import soft_dtw_loss
from training.sparsity import SparsityConfig


@dataclasses.dataclass(frozen=True)
class EATSDataConfig:
    root: str = "data/eats_speech"
    train_split: str = "train"
    voices: tuple[str, ...] = ()  # speaker names (empty: all train voices, sorted); ids follow this order
    window_frames: int = 400  # 2 s at 200 Hz (the paper's)
    max_items: int = 0  # 0: all
    val_items: int = 16  # last utterances of the train split, held out
    # ipa: the corpus's espeak-ng IPA (`phonemes`), what inference from text uses; pho: the MBROLA
    # phones of a labelled corpus (`pho_phonemes`), so the learned durations can be compared with the
    # exact ones (never trained on: the aligner still learns them by itself)
    tokens: str = "ipa"


@dataclasses.dataclass(frozen=True)
class EATSLossConfig:
    length_weight: float = 0.1
    dtw_weight: float = 1.0
    dtw_gamma: float = 0.01  # soft-DTW temperature
    dtw_warp: float = 1.0  # penalty of non-diagonal moves
    energy_weight: float = 10.0  # the frame log-energy feature next to the log-mel bins (not in the paper)
    adv_start_step: int = 0  # before it: length and soft-DTW losses only


@dataclasses.dataclass(frozen=True)
class EATSRunConfig:
    model: EATSConfig = EATSConfig()
    disc: DiscriminatorConfig = DiscriminatorConfig(conditional=False)
    mel_disc: MelDiscriminatorConfig = MelDiscriminatorConfig()
    data: EATSDataConfig = EATSDataConfig()
    loss: EATSLossConfig = EATSLossConfig()
    optim: OptimConfig = OptimConfig(lr=1e-4, betas=(0.0, 0.999), grad_clip=0.0)
    loop: LoopConfig = LoopConfig(max_steps=20000, batch_size=8, log_every=25, val_every=500, ckpt_every=500)
    # sparse EATS (issue 13): prune the decoder's convolutions (GAN-TTS's layers) in (4, 1) blocks;
    # export packs them for kernels/conv.py. The aligner runs on tokens, not frames: it stays dense.
    sparsity: SparsityConfig = SparsityConfig(include=(r"decoder\.(pre|blocks\.\d+\.(conv\d|skip))\.weight",),
                                              block=(4, 1), min_size=1024)
    init_checkpoint: str = ""  # a run checkpoint (.pt) whose module weights start this run (fine-tuning)


class WindowDataset:
    """Utterances (token ids (N,), audio, speaker). `get(index, rng)` -> (tokens (N,), real window
    (window_frames * hop,), offset in frames, true length in frames, speaker); the window starts at a
    random frame (0 without rng) and is zero-padded past the end of the utterance."""

    def __init__(self, items: list[tuple[np.ndarray, np.ndarray, int]], hop: int, window_frames: int):
        self.items, self.hop, self.window = items, hop, window_frames

    def __len__(self) -> int:
        return len(self.items)

    def get(self, index: int, rng: np.random.Generator | None):
        ids, audio, speaker = self.items[index]
        n_frames = math.ceil(len(audio) / self.hop)
        offset = int(rng.integers(0, max(0, n_frames - self.window) + 1)) if rng is not None else 0
        clip = audio[offset * self.hop:(offset + self.window) * self.hop]
        clip = np.pad(clip, (0, self.window * self.hop - len(clip)))
        return (torch.from_numpy(ids), torch.from_numpy(np.ascontiguousarray(clip, np.float32)),
                torch.tensor(offset), torch.tensor(len(audio) / self.hop, dtype=torch.float32),
                torch.tensor(speaker))

    def __getitem__(self, index: int):
        return self.get(index, None)


def collate(items):
    """Pads token ids with 0 -> tokens (B, N_max), real (B, W * hop), offsets (B,), lengths (B,), speakers (B,)."""
    tokens = nn.utils.rnn.pad_sequence([it[0] for it in items], batch_first=True, padding_value=0)
    return (tokens, *(torch.stack([it[k] for it in items]) for k in range(1, 5)))


class Corpus(TTSCorpus):
    """The speech corpus as EATS items: the tokens the corpus stores (`data.tokens`: the IPA of
    `phonemes`, the frontend's `ipa_tokens` of the normalized text, or the MBROLA phones), the
    audio at the model's rate and a speaker id. With IPA tokens any voice works: no duration
    labels are needed."""
    hint = "--voices flite-kal16 ..."

    def usable(self, row: dict) -> bool:
        return self.data.tokens != "pho" or bool(row.get("pho_phonemes"))

    def check_model(self) -> None:
        model = self.model
        if model.n_speakers != len(self.voices) and not (model.n_speakers == 0 and len(self.voices) == 1):
            raise ValueError(f"{len(self.voices)} voices ({', '.join(self.voices)}) need "
                             f"model.n_speakers={len(self.voices)}")
        self.symbols = token_symbols(self.data.tokens)
        if model.n_tokens != len(self.symbols):
            raise ValueError(f"model.n_tokens must be {len(self.symbols)} (the {self.data.tokens} symbol table)")

    def load(self, row: dict) -> tuple[np.ndarray, np.ndarray, int]:
        ids = np.array(self.symbols.encode(row_tokens(row, self.data.tokens)), np.int64)
        return ids, self.audio(row).astype(np.float32), self.voices.index(row["speaker"])

    def frontend_config(self) -> dict[str, Any]:
        return {"voices": self.voices, "symbols": self.symbols.to_dict(), "frontend": FrontendConfig().to_dict()}


class EATSObjective(CorpusTTSObjective):
    name = "eats"
    config_cls = EATSRunConfig
    model_type = "eats"
    task = "tts"
    corpus_cls = Corpus

    @property
    def feature_extra(self) -> dict[str, Any]:
        return {"tokens": self.config.data.tokens}

    def __init__(self, config: EATSRunConfig):
        super().__init__(config)
        model, disc = config.model, config.disc
        token_symbols(config.data.tokens)  # refuses an unknown token kind before the corpus is read
        if disc.sample_rate != model.sample_rate or config.mel_disc.sample_rate != model.sample_rate:
            raise ValueError(f"disc.sample_rate and mel_disc.sample_rate must equal model.sample_rate "
                             f"{model.sample_rate}")
        if disc.conditional and disc.cond_channels != max(1, model.n_speakers):
            raise ValueError(f"conditional discriminators see the speaker one-hot: disc.cond_channels must be "
                             f"{max(1, model.n_speakers)} (or disc.conditional: false)")
        if max(disc.window_frames) > config.data.window_frames:
            raise ValueError(f"data.window_frames {config.data.window_frames} is shorter than the largest "
                             f"discriminator window ({max(disc.window_frames)} frames)")

    def build_modules(self):
        modules = {"model": EATS(self.config.model), "disc": RandomWindowDiscriminators(self.config.disc),
                   "mel_disc": MelDiscriminator(self.config.mel_disc)}
        if self.config.init_checkpoint:
            state = load_checkpoint(self.config.init_checkpoint)["modules"]
            for name, module in modules.items():
                module.load_state_dict(state[name])
        return modules  # Objective.build() adds the Sparsifier when `sparsity` prunes

    def optimizer_groups(self, modules):
        return {"gen": list(modules["model"].parameters()),
                "disc": list(modules["disc"].parameters()) + list(modules["mel_disc"].parameters())}

    # --- data -------------------------------------------------------------------
    def train_dataset(self):
        return WindowDataset(self.corpus().items(self.config.data.train_split, self.config.data.max_items),
                             self.config.model.hop_length, self.config.data.window_frames)

    def val_dataset(self):
        return WindowDataset(self.corpus().items("valid"), self.config.model.hop_length,
                             self.config.data.window_frames)

    def collate(self, items):
        return collate(items)

    # --- losses -----------------------------------------------------------------
    def generate(self, modules, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Fake windows (B, W * hop) and token lengths (B, N) from a fresh noise vector."""
        tokens, real, offsets, _, speaker = batch
        noise = torch.randn(tokens.shape[0], self.config.model.noise_dim, device=real.device)
        speaker = speaker if self.config.model.n_speakers > 0 else None
        return modules["model"](tokens, noise, speaker, offsets, self.config.data.window_frames)

    def frames(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, N) -> (B, frames, n_mels + 1): log-mel and the frame's log energy (weighted), which
        sees what mel filters miss: without it a generator learns "silence" as a saturated DC offset."""
        mel = self.config.mel_disc.features
        n_fft = mel.n_fft
        power = F.avg_pool1d(F.pad(audio.unsqueeze(1) ** 2, (n_fft // 2, n_fft // 2)), n_fft, mel.hop_length)
        energy = self.config.loss.energy_weight * torch.log(power + mel.log_floor)
        return torch.cat([soft_log_mel(audio, mel), energy], dim=1).transpose(1, 2)

    def prediction_losses(self, fake, lengths, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(length loss, soft-DTW spectrogram loss)."""
        _, real, _, total, _ = batch
        length = 0.5 * ((total - lengths.sum(dim=1)) ** 2).mean()
        spec = soft_dtw_loss(self.frames(fake), self.frames(real), self.config.loss.dtw_gamma,
                             self.config.loss.dtw_warp)
        return length, spec

    def scores(self, modules, audio, batch, offsets) -> dict[str, torch.Tensor]:
        """The ensemble's scores plus the mel discriminator's ("mel")."""
        cond = None
        if self.config.disc.conditional:
            speaker = batch[4]
            frames = audio.shape[1] // self.config.model.hop_length
            onehot = F.one_hot(speaker, max(1, self.config.model.n_speakers)).to(audio.dtype)
            cond = onehot.unsqueeze(-1).expand(-1, -1, frames)
        return {**modules["disc"](audio, cond, offsets), "mel": modules["mel_disc"](audio)}

    def train_step(self, modules, batch, step, steps):
        cfg = self.config.loss
        fake, lengths = self.generate(modules, batch)
        length, spec = self.prediction_losses(fake, lengths, batch)
        logs = {"length": length.item(), "dtw": spec.item(),
                "length_error_s": float((batch[3] - lengths.detach().sum(1)).abs().mean()) / 200}
        prediction = cfg.length_weight * length + cfg.dtw_weight * spec
        if step < cfg.adv_start_step:
            steps.step("gen", prediction)
            return {"loss": prediction.item(), **logs}
        real = batch[1]
        offsets = _inner(modules["disc"]).sample_offsets(real.shape[0], real.shape[1])
        d_real = self.scores(modules, real, batch, offsets)
        d_fake = self.scores(modules, fake.detach(), batch, offsets)
        d_loss = hinge_d_loss(d_real, d_fake)
        steps.step("disc", d_loss)
        discs = [_inner(modules["disc"]), _inner(modules["mel_disc"])]
        for d in discs:  # no discriminator gradients from the generator's loss
            d.requires_grad_(False)
        try:
            adv = hinge_g_loss(self.scores(modules, fake, batch, offsets))
        finally:
            for d in discs:
                d.requires_grad_(True)
        loss = adv + prediction
        steps.step("gen", loss)
        return {"loss": loss.item(), "d_loss": d_loss.item(), "g_adv": adv.item(), **logs,
                "d_real": float(torch.stack([v.detach().mean() for v in d_real.values()]).mean()),
                "d_fake": float(torch.stack([v.detach().mean() for v in d_fake.values()]).mean())}

    @torch.no_grad()
    def val_step(self, modules, batch):
        tokens, real, offsets, total, speaker = batch
        model = modules["model"]
        g = torch.Generator().manual_seed(0)
        noise = torch.randn(tokens.shape[0], self.config.model.noise_dim, generator=g).to(real.device)
        fake, lengths = model(tokens, noise, speaker if self.config.model.n_speakers > 0 else None, offsets,
                              self.config.data.window_frames)
        length, spec = self.prediction_losses(fake, lengths, batch)
        return {"loss": spec.item(), "dtw": spec.item(), "length": length.item(),
                "length_error_s": float((total - lengths.sum(1)).abs().mean()) / 200}

    def example_audio(self, model, example, device):
        tokens, _, _, _, speaker = example
        noise = torch.randn(1, self.config.model.noise_dim, generator=torch.Generator().manual_seed(0))
        return model.infer(tokens[None].to(device), noise.to(device), speaker[None].to(device),
                           torch.ones(1, device=device))[0]

    # --- export -----------------------------------------------------------------
    def export_assets(self, model, tmp: Path) -> dict[str, Path]:
        return {"model.onnx": export_onnx(model.cpu(), tmp / "model.onnx")}
