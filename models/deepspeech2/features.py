"""The recognizer's log-mel: models/features.py's `log_mel`, plus its streaming form.

`log_mel` frames are centred with zero padding of n_fft // 2, so frame i
covers samples [i * hop - n_fft / 2, i * hop + n_fft / 2): it is complete
once those samples have arrived, and a zero-padded batch gives every item
the very frames it gets alone. `LogMel.frames_valid` computes the same
frames from a buffer (used by streaming).
"""
from __future__ import annotations

import torch

from models.features import FeatureConfig, log_mel, mel_filterbank


def asr_feature_config(**overrides) -> FeatureConfig:
    """16 kHz, 25 ms windows, 10 ms hop, 80 slaney mel bins from 20 Hz to 7.6 kHz."""
    base = dict(sample_rate=16000, n_fft=400, hop_length=160, n_mels=80, f_min=20.0, f_max=7600.0,
                log_floor=1e-6)
    return FeatureConfig(**{**base, **overrides})


class LogMel(torch.nn.Module):
    """(B, N) float audio -> (B, 1 + N // hop, n_mels) log-mel."""

    def __init__(self, cfg: FeatureConfig | None = None):
        super().__init__()
        self.cfg = cfg or asr_feature_config()
        win = self.cfg.win_length or self.cfg.n_fft
        self.register_buffer("window", torch.hann_window(win), persistent=False)

    def n_frames(self, n_samples: int) -> int:
        return self.cfg.n_frames(n_samples)

    def frames_valid(self, buffer: torch.Tensor) -> torch.Tensor:
        """(B, M) samples -> (B, 1 + (M - n_fft) // hop, n_mels): the frames lying wholly inside."""
        cfg = self.cfg
        spec = torch.stft(buffer, cfg.n_fft, cfg.hop_length, cfg.win_length or cfg.n_fft, window=self.window,
                          center=False, return_complex=True)  # (B, F, T)
        power = spec.real ** 2 + spec.imag ** 2
        mel = power.transpose(1, 2) @ mel_filterbank(cfg)
        return torch.log(torch.clamp(mel, min=cfg.log_floor))

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return log_mel(audio, self.cfg).transpose(-1, -2)

