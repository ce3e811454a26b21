"""Audio inputs for the service tests, made by the tiny models or by hand."""
from __future__ import annotations

import io

import numpy as np
import soundfile as sf
import soxr
from tiny_service_models import Tones, TonesConfig, TonesSynthesizer

RATE = 16000


def speech(text: str, rate: int = RATE) -> np.ndarray:
    """What the tiny tone voice says for `text`, at `rate`."""
    wave = np.concatenate(list(TonesSynthesizer(Tones(TonesConfig(streaming=False))).synthesize(text)))
    return wave if rate == RATE else soxr.resample(wave, RATE, rate).astype(np.float32)


def encoded(wave: np.ndarray, rate: int = RATE, fmt: str = "WAV", subtype: str = "PCM_16") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, wave, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def tone(pitches: list[int], seconds: float, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return sum(0.3 * np.sin(2 * np.pi * 440.0 * 2 ** ((p - 69) / 12) * t) for p in pitches).astype(np.float32)
