"""Audio inputs for the service tests: espeak-ng speech, fluidsynth piano, tones."""
from __future__ import annotations

import functools
import io
import subprocess
import tempfile
from pathlib import Path

import jiwer
import numpy as np
import soundfile as sf

from models.audio import read_audio, resample
from models.inference import Note
from models.midi import notes_to_midi

RATE = 16000
SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"  # fluid-soundfont-gm (scripts/install-system.sh)
# a melody, then a chord: what the piano tests play
PIANO_NOTES = (Note(60, 0.2, 0.7, 90), Note(64, 0.8, 1.3, 90), Note(67, 1.4, 1.9, 90),
               Note(48, 2.0, 2.8, 80), Note(55, 2.0, 2.8, 80), Note(72, 2.0, 2.8, 90))


@functools.lru_cache(maxsize=64)
def _espeak(text: str, voice: str) -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "s.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-w", str(wav), text], check=True, capture_output=True)
        audio, rate = read_audio(wav)
    return resample(audio, rate, RATE)


def speech(text: str, rate: int = RATE, voice: str = "en-us") -> np.ndarray:
    """`text` spoken by espeak-ng (a voice deepspeech2-default was trained on), at `rate`."""
    wave = _espeak(text, voice)
    return wave if rate == RATE else resample(wave, RATE, rate)


@functools.lru_cache(maxsize=4)
def piano(notes: tuple[Note, ...] = PIANO_NOTES) -> np.ndarray:
    """`notes` rendered by fluidsynth with the FluidR3 GM piano, 16 kHz mono."""
    with tempfile.TemporaryDirectory() as tmp:
        midi, wav = Path(tmp) / "p.mid", Path(tmp) / "p.wav"
        notes_to_midi(list(notes)).write(str(midi))
        subprocess.run(["fluidsynth", "-ni", "-g", "0.7", "-r", str(RATE), "-F", str(wav), SOUNDFONT, str(midi)],
                       check=True, capture_output=True)
        audio, rate = read_audio(wav)
    return resample(audio, rate, RATE)


def wer(reference: str, hypothesis: str) -> float:
    return jiwer.wer(reference, hypothesis.strip() or "<nothing>")


def encoded(wave: np.ndarray, rate: int = RATE, fmt: str = "WAV", subtype: str = "PCM_16") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, wave, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def tone(pitches: list[int], seconds: float, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return sum(0.3 * np.sin(2 * np.pi * 440.0 * 2 ** ((p - 69) / 12) * t) for p in pitches).astype(np.float32)
