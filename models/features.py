"""Featurization shared by training and serving: log-mel, mu-law, 16-bit coarse/fine.

Log-mel follows librosa exactly (tested to 1e-4):
    S = |STFT(x)|^2, centred frames (zero padding of n_fft // 2 on both sides),
        periodic Hann window of win_length zero-padded to n_fft;
    M = S @ mel filterbank (slaney area norm; slaney or htk mel scale);
    log-mel = ln(max(M, log_floor)).
This equals np.log(np.maximum(librosa.feature.melspectrogram(y=x, sr, n_fft,
hop_length, win_length, n_mels, fmin, fmax, htk, center=True,
pad_mode="constant", power=2.0), log_floor)). A file of N samples gives
1 + N // hop_length frames. The FeatureConfig travels inside model bundles.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
import torchaudio.functional as AF


@dataclasses.dataclass(frozen=True)
class FeatureConfig:
    """Log-mel settings; names as torchaudio.transforms.MelSpectrogram."""

    sample_rate: int = 16000
    n_fft: int = 1024
    hop_length: int = 256
    win_length: int | None = None  # None: n_fft
    n_mels: int = 80
    f_min: float = 0.0
    f_max: float | None = None  # None: sample_rate / 2
    mel_scale: str = "slaney"  # "slaney" (librosa default) or "htk"
    log_floor: float = 1e-5

    def __post_init__(self):
        if self.mel_scale not in ("slaney", "htk"):
            raise ValueError(f"mel_scale must be 'slaney' or 'htk', not {self.mel_scale!r}")
        if self.hop_length <= 0 or self.n_fft <= 0 or self.n_mels <= 0:
            raise ValueError("n_fft, hop_length and n_mels must be positive")

    @property
    def n_frames_per_second(self) -> float:
        return self.sample_rate / self.hop_length

    def n_frames(self, n_samples: int) -> int:
        """Frames that log_mel gives for n_samples samples (centred framing)."""
        return 1 + n_samples // self.hop_length

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FeatureConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown FeatureConfig fields {sorted(unknown)}")
        return cls(**data)


def piano_config() -> FeatureConfig:
    """Onsets and Frames input: 16 kHz, n_fft 2048, hop 512, 229 htk-mel bins from 30 Hz."""
    return FeatureConfig(sample_rate=16000, n_fft=2048, hop_length=512, n_mels=229, f_min=30.0, f_max=8000.0,
                         mel_scale="htk")


_FBANKS: dict[tuple, torch.Tensor] = {}


def mel_filterbank(cfg: FeatureConfig) -> torch.Tensor:
    """(n_fft // 2 + 1, n_mels) float32 filterbank, slaney area-normalized (as librosa)."""
    key = (cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.f_min, cfg.f_max, cfg.mel_scale)
    if key not in _FBANKS:
        f_max = cfg.f_max if cfg.f_max is not None else cfg.sample_rate / 2
        _FBANKS[key] = AF.melscale_fbanks(cfg.n_fft // 2 + 1, cfg.f_min, f_max, cfg.n_mels, cfg.sample_rate,
                                          norm="slaney", mel_scale=cfg.mel_scale).float()
    return _FBANKS[key]


def mel_power(audio: torch.Tensor, cfg: FeatureConfig) -> torch.Tensor:
    """(..., N) float audio -> (..., n_mels, 1 + N // hop_length) mel power."""
    win_length = cfg.win_length or cfg.n_fft
    shape = audio.shape
    flat = audio.reshape(-1, shape[-1]).float()
    window = torch.hann_window(win_length, dtype=flat.dtype, device=flat.device)
    spec = torch.stft(flat, cfg.n_fft, cfg.hop_length, win_length, window=window, center=True,
                      pad_mode="constant", return_complex=True)  # (B, F, T)
    power = spec.real ** 2 + spec.imag ** 2
    fb = mel_filterbank(cfg).to(flat.device)  # (F, n_mels)
    mel = torch.matmul(power.transpose(1, 2), fb).transpose(1, 2)  # (B, n_mels, T)
    return mel.reshape(*shape[:-1], cfg.n_mels, mel.shape[-1])


def log_mel(audio, cfg: FeatureConfig = FeatureConfig()) -> torch.Tensor:
    """(..., N) audio (tensor or array) -> (..., n_mels, T) ln(max(mel power, log_floor)), T = 1 + N // hop."""
    audio = torch.as_tensor(np.asarray(audio, dtype=np.float32) if isinstance(audio, np.ndarray) else audio)
    return torch.log(torch.clamp(mel_power(audio, cfg), min=cfg.log_floor))


# --- mu-law (as torchaudio.functional.mu_law_encoding) ---

def mu_law_encode(audio: torch.Tensor, quantization_channels: int = 256) -> torch.Tensor:
    """(...) float in [-1, 1] -> (...) int64 in [0, quantization_channels)."""
    mu = quantization_channels - 1.0
    x = torch.clamp(torch.as_tensor(audio, dtype=torch.float32), -1.0, 1.0)
    y = torch.sign(x) * torch.log1p(mu * torch.abs(x)) / np.log1p(mu)
    return ((y + 1) / 2 * mu + 0.5).to(torch.int64)


def mu_law_decode(codes: torch.Tensor, quantization_channels: int = 256) -> torch.Tensor:
    """(...) int codes in [0, quantization_channels) -> (...) float32 in [-1, 1]."""
    mu = quantization_channels - 1.0
    y = torch.as_tensor(codes).to(torch.float32) / mu * 2 - 1.0
    return torch.sign(y) * (torch.exp(torch.abs(y) * np.log1p(mu)) - 1.0) / mu


# --- 16-bit coarse/fine split (WaveRNN) ---

def float_to_int16(audio: torch.Tensor) -> torch.Tensor:
    """(...) float in [-1, 1] -> (...) int32 holding signed 16-bit values (round, clip)."""
    x = torch.as_tensor(audio, dtype=torch.float32)
    return torch.clamp(torch.round(x * 32768.0), -32768, 32767).to(torch.int32)


def split_coarse_fine(audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(...) float in [-1, 1] -> coarse, fine: (...) int64 in [0, 256).

    The signed 16-bit sample is offset to unsigned u = s + 32768; coarse is the
    high byte u // 256 and fine the low byte u % 256 (WaveRNN, Sec. 2).
    """
    u = float_to_int16(audio).to(torch.int64) + 32768
    return u // 256, u % 256


def join_coarse_fine(coarse: torch.Tensor, fine: torch.Tensor) -> torch.Tensor:
    """Inverse of split_coarse_fine: (...) coarse, fine -> (...) float32 in [-1, 1)."""
    u = torch.as_tensor(coarse).to(torch.int64) * 256 + torch.as_tensor(fine).to(torch.int64)
    return (u - 32768).to(torch.float32) / 32768.0


def scale_byte(values: torch.Tensor) -> torch.Tensor:
    """(...) int in [0, 256) -> (...) float32 in [-1, 1], the network's view of c and f."""
    return torch.as_tensor(values).to(torch.float32) / 127.5 - 1.0
