"""Random-window discriminators of GAN-TTS (Binkowski et al. 2019).

An ensemble of discriminators, each looking at one random window of the
waveform: for every window size (the paper's 240, 480, 960, 1920 and 3600
samples at 24 kHz are 2, 4, 8, 16 and 30 frames of 200 Hz conditioning, so
`window_frames` scales them to any rate: 160 ... 2400 samples at 16 kHz)
one unconditional and one conditional discriminator.

Each window is first reshaped (B, 1, w) -> (B, k, w / k) with k = w / w_min,
so every discriminator sees a similar temporal length whatever its window.
DBlocks (residual: avg-pool downsampling, ReLU, dilated conv 1 then 2)
reduce it; a conditional discriminator downsamples exactly to the 200 Hz
frame rate, adds the conditioning (a 1x1 conv of it) midway, and continues
at that rate. Each ends in a mean over time and a linear layer: one score
per window. Orthogonal init; optional spectral norm.

Used by GAN-TTS and EATS (issue 8): `forward(audio, cond=None)` takes the
waveform (B, T) and, for the conditional half, the conditioning
(B, cond_channels, T / hop) at 200 Hz; without it only the unconditional
half runs.
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn
from torch.nn import functional as F

FRAME_RATE_HZ = 200


@dataclasses.dataclass(frozen=True)
class DiscriminatorConfig:
    sample_rate: int = 16000
    cond_channels: int = 64  # channels of the conditioning the conditional half sees
    window_frames: tuple[int, ...] = (2, 4, 8, 16, 30)  # 240 ... 3600 samples at 24 kHz
    channels: int = 32  # first DBlock's width; doubles per downsampling block
    max_channels: int = 256
    post_blocks: int = 2  # DBlocks at the final rate, no downsampling
    spectral_norm: bool = True
    conditional: bool = True  # build the conditional half
    unconditional: bool = True

    @property
    def hop_length(self) -> int:
        return self.sample_rate // FRAME_RATE_HZ

    @property
    def windows(self) -> tuple[int, ...]:
        """Window sizes in samples."""
        return tuple(f * self.hop_length for f in self.window_frames)


def _factorize(n: int) -> list[int]:
    """Prime factors, largest first (the DBlock downsampling factors)."""
    out, p = [], 2
    while n > 1:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    return sorted(out, reverse=True)


def _conv(cin: int, cout: int, kernel: int, dilation: int, sn: bool) -> nn.Module:
    conv = nn.Conv1d(cin, cout, kernel, padding=dilation * (kernel - 1) // 2, dilation=dilation)
    nn.init.orthogonal_(conv.weight)
    nn.init.zeros_(conv.bias)
    return nn.utils.parametrizations.spectral_norm(conv) if sn else conv


class DBlock(nn.Module):
    """(B, cin, T) -> (B, cout, T / factor); with `cond_channels`, adds a 1x1 conv of
    the conditioning (B, cond_channels, T / factor) after the first conv."""

    def __init__(self, cin: int, cout: int, factor: int, sn: bool, cond_channels: int = 0):
        super().__init__()
        self.factor = factor
        self.conv1 = _conv(cin, cout, 3, 1, sn)
        self.conv2 = _conv(cout, cout, 3, 2, sn)
        self.skip = _conv(cin, cout, 1, 1, sn) if cin != cout else nn.Identity()
        self.cond = _conv(cond_channels, cout, 1, 1, sn) if cond_channels else None

    def _down(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.factor == 1 else F.avg_pool1d(x, self.factor)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv1(F.relu(self._down(x)))
        if self.cond is not None:
            h = h + self.cond(cond)
        h = self.conv2(F.relu(h))
        return h + self._down(self.skip(x))


class WindowDiscriminator(nn.Module):
    """One discriminator: window (B, w) [+ cond (B, C, w / hop)] -> score (B,)."""

    def __init__(self, config: DiscriminatorConfig, window: int, conditional: bool):
        super().__init__()
        hop, w_min = config.hop_length, min(config.windows)
        k = window // w_min
        if conditional:
            # the reshaped length must be a whole number of samples per frame
            k = max(d for d in range(1, k + 1) if hop % d == 0)
            factors = _factorize(hop // k)  # down to exactly 200 Hz
        else:
            factors = _factorize(w_min)[:2]  # the paper's (5, 3) at 24 kHz; (5, 2) at 16 kHz
        self.window, self.k, self.conditional = window, k, conditional
        sn, width = config.spectral_norm, config.channels
        blocks, cin = [DBlock(k, width, 1, sn)], width
        for i, factor in enumerate(factors):
            cout = min(cin * 2, config.max_channels)
            last = conditional and i == len(factors) - 1
            blocks.append(DBlock(cin, cout, factor, sn, cond_channels=config.cond_channels if last else 0))
            cin = cout
        for _ in range(config.post_blocks):
            blocks.append(DBlock(cin, cin, 1, sn))
        self.blocks = nn.ModuleList(blocks)
        self.out = nn.Linear(cin, 1)
        nn.init.orthogonal_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, audio: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        b, w = audio.shape
        x = audio.reshape(b, w // self.k, self.k).transpose(1, 2)  # (B, k, w / k)
        for block in self.blocks:
            x = block(x, cond if block.cond is not None else None)
        return self.out(x.mean(dim=-1)).squeeze(-1)


class RandomWindowDiscriminators(nn.Module):
    """The ensemble. forward(audio (B, T), cond (B, C, T / hop) | None, offsets=None)
    -> scores {name: (B,)}, names like "u160" (unconditional, 160-sample window) and "c160"."""

    def __init__(self, config: DiscriminatorConfig):
        super().__init__()
        self.config = config
        self.discs = nn.ModuleDict()
        for window in config.windows:
            if config.unconditional:
                self.discs[f"u{window}"] = WindowDiscriminator(config, window, conditional=False)
            if config.conditional:
                self.discs[f"c{window}"] = WindowDiscriminator(config, window, conditional=True)

    def sample_offsets(self, batch: int, n_samples: int, generator: torch.Generator | None = None
                       ) -> dict[str, torch.Tensor]:
        """One random window start per discriminator and item, frame-aligned (so the
        conditioning can be cut at the same place): {name: (B,) sample offsets}."""
        hop, n_frames = self.config.hop_length, n_samples // self.config.hop_length
        out = {}
        for name, disc in self.discs.items():
            span = n_frames - disc.window // hop
            if span < 0:
                raise ValueError(f"audio of {n_samples} samples is shorter than the {disc.window}-sample window")
            out[name] = torch.randint(0, span + 1, (batch,), generator=generator) * hop
        return out

    def forward(self, audio: torch.Tensor, cond: torch.Tensor | None = None,
                offsets: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Use the same `offsets` for real and generated audio of one step, if wanted."""
        if offsets is None:
            offsets = self.sample_offsets(audio.shape[0], audio.shape[1])
        hop, scores = self.config.hop_length, {}
        for name, disc in self.discs.items():
            if disc.conditional and cond is None:
                continue
            start = offsets[name].to(audio.device)
            idx = start[:, None] + torch.arange(disc.window, device=audio.device)
            window = torch.gather(audio, 1, idx)
            c = None
            if disc.conditional:
                fidx = (start // hop)[:, None] + torch.arange(disc.window // hop, device=audio.device)
                c = torch.gather(cond, 2, fidx[:, None, :].expand(-1, cond.shape[1], -1))
            scores[name] = disc(window, c)
        return scores


def hinge_d_loss(real: dict[str, torch.Tensor], fake: dict[str, torch.Tensor]) -> torch.Tensor:
    """Discriminator hinge loss, summed over the ensemble: E relu(1 - D(x)) + E relu(1 + D(G(z)))."""
    return sum(F.relu(1 - real[k]).mean() + F.relu(1 + fake[k]).mean() for k in real)


def hinge_g_loss(fake: dict[str, torch.Tensor]) -> torch.Tensor:
    """Generator hinge loss: -E D(G(z)), summed over the ensemble."""
    return sum(-v.mean() for v in fake.values())
