"""What serving and the CLI call on a loaded bundle, whatever the model.

Each model family's registry entry names a `runtime(bundle)` factory that
returns one of these. `service` and `training` both go through
`load_runtime`, so the CLI's `synth`/`transcribe` and the HTTP API run the
very same code.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Iterator, Protocol

import numpy as np


@dataclasses.dataclass
class Word:
    word: str
    start_s: float
    end_s: float
    confidence: float = 1.0


@dataclasses.dataclass
class Transcript:
    text: str
    words: list[Word]
    duration_s: float


@dataclasses.dataclass
class Note:
    pitch: int  # MIDI note number, 21..108 for the piano
    onset_s: float
    offset_s: float
    velocity: int  # 1..127


@dataclasses.dataclass
class Timing:
    """One unit of synthesized speech and where it lies in the output audio."""

    kind: str  # "phoneme" or "word"
    text: str
    start_s: float
    end_s: float


def phone_timings(phones, offset_s: float = 0.0, pause: str = "_") -> list[Timing]:
    """Phones laid end to end from `offset_s` (anything with .phoneme and
    .duration_ms, e.g. models.text.Phone) -> one "phoneme" Timing each;
    pauses take their time but get no entry."""
    out, t = [], offset_s
    for p in phones:
        end = t + p.duration_ms / 1000.0
        if p.phoneme != pause:
            out.append(Timing("phoneme", p.phoneme, round(t, 4), round(end, 4)))
        t = end
    return out


class Synthesizer(Protocol):
    sample_rate: int
    voices: list[str]
    streaming: bool  # chunks leave before the utterance is done

    def synthesize(self, text: str, voice: str | None = None, speed: float = 1.0) -> Iterator[np.ndarray]:
        """Float32 mono chunks in [-1, 1] at `sample_rate`.

        Models that know where each unit lands also set `last_timings`
        (list[Timing], times from the start of the whole output) once the
        iterator is exhausted; `synth --timings` and the service read it."""


class Transcriber(Protocol):
    sample_rate: int

    def transcribe_batch(self, audio: list[np.ndarray], words: bool | list[bool] = True) -> list[Transcript]:
        """Mono float32 audio at `sample_rate`, one transcript each; word timings for all (True), none
        (False, `words` left empty) or per utterance (a list of flags)."""


class PianoTranscriber(Protocol):
    sample_rate: int

    def transcribe(self, audio: np.ndarray) -> list[Note]:
        """Mono float32 audio at `sample_rate` -> notes."""


def load_runtime(path: str | Path):
    """Load a bundle and build its runtime (Synthesizer, Transcriber, ...)."""
    from models.bundle import BundleError, load_bundle
    from models.registry import get_spec

    bundle = load_bundle(path)
    spec = get_spec(bundle.model_type)
    if spec.runtime is None:
        raise BundleError(f"{path}: model type {bundle.model_type!r} has no inference runtime")
    return bundle, spec.runtime(bundle)
