"""Frame-level linguistic features at 200 Hz from MBROLA phones (durations + pitch targets).

Frame t covers [5 t, 5 t + 5) ms; its phone is the one holding the frame's
centre 5 t + 2.5 ms. An utterance of D ms has T = ceil(D / 5) frames and
T * hop samples at the model's rate (hop = sample_rate / 200).

Model input layout, `to_model_input` -> (T, n_symbols + 4 + n_speakers):
    [0, n_symbols)               one-hot phoneme (index into pho_symbols())
    n_symbols + 0                position within the phoneme, 0..1
    n_symbols + 1                phoneme duration in seconds
    n_symbols + 2                ln(f0 / 100 Hz), linearly interpolated in ln f0
                                 between pitch targets (held flat at the ends)
    n_symbols + 3                voicing, 1.0 or 0.0 (from the phoneme class)
    [n_symbols + 4, ... + n_speakers)  one-hot speaker
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from models.text.phonemize import Phone
from models.text.symbols import SymbolTable, pho_symbols

FRAME_RATE_HZ = 200
FRAME_MS = 1000.0 / FRAME_RATE_HZ
N_CONTINUOUS = 4
UNVOICED = frozenset("_ p t k f T s S h tS t_h k_h p_h ?".split())
DEFAULT_LOG_F0 = math.log(120.0)  # for an utterance without any pitch target


def hop_for(sample_rate: int) -> int:
    """Samples per 200 Hz frame; the sample rate must be a multiple of 200."""
    if sample_rate % FRAME_RATE_HZ:
        raise ValueError(f"sample_rate {sample_rate} is not a multiple of {FRAME_RATE_HZ} Hz")
    return sample_rate // FRAME_RATE_HZ


@dataclasses.dataclass
class LinguisticFeatures:
    """Per-frame features of one utterance; every array is (T,)."""

    phoneme: np.ndarray  # int64 index into the symbol table
    position: np.ndarray  # float32, 0..1 within the phoneme
    duration_ms: np.ndarray  # float32, duration of the current phoneme
    log_f0: np.ndarray  # float32, ln(f0 in Hz)
    voiced: np.ndarray  # float32, 1 or 0
    speaker: np.ndarray  # int64
    sample_rate: int

    @property
    def n_frames(self) -> int:
        return len(self.phoneme)

    @property
    def hop_length(self) -> int:
        return hop_for(self.sample_rate)

    @property
    def n_samples(self) -> int:
        return self.n_frames * self.hop_length

    def slice(self, start: int, stop: int) -> "LinguisticFeatures":
        """Frames [start, stop), e.g. for a random training window."""
        f = {k.name: getattr(self, k.name) for k in dataclasses.fields(self) if k.name != "sample_rate"}
        return LinguisticFeatures(**{k: v[start:stop] for k, v in f.items()}, sample_rate=self.sample_rate)


def feature_dim(n_symbols: int, n_speakers: int) -> int:
    return n_symbols + N_CONTINUOUS + n_speakers


def phone_frames(phones: list[Phone] | tuple[Phone, ...]) -> np.ndarray:
    """(T,) index of the phone holding each 5 ms frame centre."""
    ends = np.cumsum([p.duration_ms for p in phones])
    if len(ends) == 0 or ends[-1] <= 0:
        raise ValueError("no phones with positive duration")
    n_frames = math.ceil(ends[-1] / FRAME_MS - 1e-9)
    centres = (np.arange(n_frames) + 0.5) * FRAME_MS
    return np.minimum(np.searchsorted(ends, centres, side="right"), len(phones) - 1)


def pitch_track(phones, centres_ms: np.ndarray) -> np.ndarray:
    """(T,) ln f0 at the given times, interpolated from all pitch targets."""
    times, values, start = [], [], 0.0
    for p in phones:
        for pct, hz in p.pitch:
            if hz > 0:
                times.append(start + pct / 100.0 * p.duration_ms)
                values.append(math.log(hz))
        start += p.duration_ms
    if not times:
        return np.full(len(centres_ms), DEFAULT_LOG_F0, np.float32)
    order = np.argsort(times, kind="stable")
    return np.interp(centres_ms, np.asarray(times)[order], np.asarray(values)[order]).astype(np.float32)


def features_from_phones(phones, speaker: int = 0, sample_rate: int = 16000,
                         symbols: SymbolTable | None = None) -> LinguisticFeatures:
    """MBROLA phones -> LinguisticFeatures with T = ceil(total duration / 5 ms) frames."""
    hop_for(sample_rate)
    symbols = symbols or pho_symbols()
    phones = list(phones)
    idx = phone_frames(phones)
    starts = np.concatenate([[0.0], np.cumsum([p.duration_ms for p in phones])[:-1]])
    durs = np.array([p.duration_ms for p in phones], np.float64)
    centres = (np.arange(len(idx)) + 0.5) * FRAME_MS
    position = np.clip((centres - starts[idx]) / np.maximum(durs[idx], 1e-6), 0.0, 1.0)
    ids = np.array(symbols.encode([p.phoneme for p in phones]), np.int64)
    voiced = np.array([p.phoneme not in UNVOICED for p in phones], np.float32)
    return LinguisticFeatures(
        phoneme=ids[idx], position=position.astype(np.float32), duration_ms=durs[idx].astype(np.float32),
        log_f0=pitch_track(phones, centres), voiced=voiced[idx],
        speaker=np.full(len(idx), int(speaker), np.int64), sample_rate=sample_rate)


def to_model_input(feats: LinguisticFeatures, n_symbols: int, n_speakers: int) -> torch.Tensor:
    """LinguisticFeatures -> (T, n_symbols + 4 + n_speakers) float32, layout in the module docstring."""
    if feats.speaker.size and int(feats.speaker.max()) >= n_speakers:
        raise ValueError(f"speaker {int(feats.speaker.max())} out of range for {n_speakers} speakers")
    t = feats.n_frames
    out = torch.zeros(t, feature_dim(n_symbols, n_speakers))
    rows = torch.arange(t)
    out[rows, torch.from_numpy(feats.phoneme)] = 1.0
    out[:, n_symbols + 0] = torch.from_numpy(feats.position)
    out[:, n_symbols + 1] = torch.from_numpy(feats.duration_ms) / 1000.0
    out[:, n_symbols + 2] = torch.from_numpy(feats.log_f0) - math.log(100.0)
    out[:, n_symbols + 3] = torch.from_numpy(feats.voiced)
    out[rows, n_symbols + N_CONTINUOUS + torch.from_numpy(feats.speaker)] = 1.0
    return out
