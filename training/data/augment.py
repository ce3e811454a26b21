"""Data augmentation for recognition; every function is deterministic given its numpy Generator.

All audio is (N,) float32 mono.
"""
from __future__ import annotations

import numpy as np

from models.audio import resample


def _power(x: np.ndarray) -> float:
    return float(np.mean(np.square(x, dtype=np.float64)))


def white_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.standard_normal(n).astype(np.float32)


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """1/f noise: white noise shaped by 1/sqrt(f) in the frequency domain."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spec), dtype=np.float64)
    f[0] = 1.0
    out = np.fft.irfft(spec / np.sqrt(f), n)
    return (out / (np.std(out) + 1e-12)).astype(np.float32)


def babble_noise(n: int, others: list[np.ndarray], rng: np.random.Generator, n_talkers: int = 4) -> np.ndarray:
    """Sum of n_talkers random excerpts of other utterances (tiled when short), each at unit power."""
    if not others:
        raise ValueError("babble needs other utterances")
    out = np.zeros(n, np.float32)
    for _ in range(n_talkers):
        src = others[int(rng.integers(len(others)))]
        src = np.tile(src, int(np.ceil(n / max(len(src), 1))) + 1)
        start = int(rng.integers(0, len(src) - n + 1))
        piece = src[start:start + n]
        out += piece / np.sqrt(_power(piece) + 1e-12)
    return out


def add_noise(audio: np.ndarray, snr_db: float, rng: np.random.Generator, kind: str = "white",
              others: list[np.ndarray] | None = None) -> np.ndarray:
    """audio + noise scaled so that 10 log10(P_audio / P_noise) = snr_db; kind: white, pink or babble."""
    n = len(audio)
    if kind == "white":
        noise = white_noise(n, rng)
    elif kind == "pink":
        noise = pink_noise(n, rng)
    elif kind == "babble":
        noise = babble_noise(n, others or [], rng)
    else:
        raise ValueError(f"unknown noise kind {kind!r}; choose white, pink or babble")
    scale = np.sqrt(_power(audio) / (_power(noise) * 10 ** (snr_db / 10) + 1e-20))
    return (audio + scale * noise).astype(np.float32)


def speed_perturb(audio: np.ndarray, factor: float, sample_rate: int = 16000) -> np.ndarray:
    """Play `factor` times faster (tempo and pitch, as Kaldi's speed perturbation): N -> about N / factor."""
    if factor <= 0:
        raise ValueError("speed factor must be positive")
    # resampling to sample_rate / factor and playing at sample_rate speeds it up by factor
    return resample(audio, sample_rate, int(round(sample_rate / factor)))


def impulse_response(sample_rate: int, rt60_s: float, rng: np.random.Generator,
                     direct_to_reverb_db: float = 3.0) -> np.ndarray:
    """A room impulse response: a unit direct path then exponentially decaying noise (60 dB in rt60_s)."""
    n = max(2, int(rt60_s * sample_rate))
    t = np.arange(n) / sample_rate
    tail = rng.standard_normal(n) * np.exp(-6.9078 * t / rt60_s)  # ln(1000) = 6.9078: -60 dB at rt60
    tail[0] = 0.0
    tail *= np.sqrt(10 ** (-direct_to_reverb_db / 10) / (np.sum(tail ** 2) + 1e-20))
    tail[0] = 1.0
    return tail.astype(np.float32)


def reverb(audio: np.ndarray, sample_rate: int, rng: np.random.Generator, rt60_s: float | None = None) -> np.ndarray:
    """Convolve with a synthetic room (rt60 drawn from 0.2-0.8 s if not given); same length and peak."""
    from scipy.signal import fftconvolve

    rt60 = float(rng.uniform(0.2, 0.8)) if rt60_s is None else rt60_s
    wet = fftconvolve(audio, impulse_response(sample_rate, rt60, rng))[: len(audio)]
    peak_in, peak_out = float(np.abs(audio).max()), float(np.abs(wet).max())
    return (wet * (peak_in / peak_out if peak_out > 0 else 1.0)).astype(np.float32)


def gain(audio: np.ndarray, gain_db: float) -> np.ndarray:
    return (audio * 10 ** (gain_db / 20)).astype(np.float32)


def random_augment(audio: np.ndarray, sample_rate: int, rng: np.random.Generator,
                   others: list[np.ndarray] | None = None) -> np.ndarray:
    """A typical recipe: speed 0.9/1.0/1.1, reverb half the time, noise at 5-30 dB SNR, gain -6..+6 dB."""
    out = speed_perturb(audio, float(rng.choice([0.9, 1.0, 1.1])), sample_rate)
    if rng.random() < 0.5:
        out = reverb(out, sample_rate, rng)
    kinds = ["white", "pink"] + (["babble"] if others else [])
    out = add_noise(out, float(rng.uniform(5, 30)), rng, kinds[int(rng.integers(len(kinds)))], others)
    return np.clip(gain(out, float(rng.uniform(-6, 6))), -1.0, 1.0)
