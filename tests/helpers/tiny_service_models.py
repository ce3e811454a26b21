"""Test-only model types for the service: tiny, but they really compute.

- "tiny-tones" (tts): each letter becomes a tone at its own frequency, a
  short silence separates letters and a longer one separates words. A
  streaming variant yields one chunk per word; a feed-forward variant also
  offers `synthesize_batch` so the service batches it.
- "tiny-tone-asr" (asr): STFT frames matched against the same letter
  frequencies (a fixed linear template layer), silence as blank; it reads
  back what "tiny-tones" says, with word timings, one padded batch at once.
- "tiny-piano" (piano): STFT frames matched against the 88 piano
  fundamentals; contiguous active frames become notes.

They stand in for WaveRNN / Deep Speech 2 / Onsets and Frames until those
families' tiny bundles can be built in tests. `install()` registers them;
`write_bundles(dir)` exports one bundle of each through models.bundle.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from models.bundle import save_bundle
from models.config import config_to_dict
from models.inference import Note, Transcript, Word
from models.registry import model_from_bundle, register

ALPHABET = "abcdefghijklmnopqrstuvwxyz'"


def letter_hz(index: int) -> float:
    return 400.0 + 90.0 * index  # 400 .. 2740 Hz, 90 Hz apart


@dataclasses.dataclass(frozen=True)
class TonesConfig:
    sample_rate: int = 16000
    letter_ms: float = 60.0
    gap_ms: float = 40.0
    space_ms: float = 100.0
    streaming: bool = True


class Tones(nn.Module):
    """Text -> waveform; the weights are the letter frequencies and voice gains."""

    def __init__(self, config: TonesConfig):
        super().__init__()
        self.config = config
        self.freqs_hz = nn.Parameter(torch.tensor([letter_hz(i) for i in range(len(ALPHABET))]))
        self.voice_gain = nn.Parameter(torch.tensor([0.5, 0.3]))

    def forward(self, letters: torch.Tensor, voice: int, speed: float = 1.0) -> torch.Tensor:
        """(L,) letter ids (-1 = word break) -> (n_samples,) float32."""
        c, sr = self.config, self.config.sample_rate
        n_letter, n_gap = int(sr * c.letter_ms / 1000 / speed), int(sr * c.gap_ms / 1000 / speed)
        n_space = int(sr * c.space_ms / 1000 / speed)
        t = torch.arange(n_letter) / sr
        fade = torch.sin(torch.linspace(0, math.pi, n_letter))
        parts = []
        for i in letters.tolist():
            if i < 0:
                parts.append(torch.zeros(n_space))
                continue
            parts.append(self.voice_gain[voice] * fade * torch.sin(2 * math.pi * self.freqs_hz[i] * t))
            parts.append(torch.zeros(n_gap))
        return torch.cat(parts) if parts else torch.zeros(0)


def encode_text(text: str) -> list[list[int]]:
    """Words of letter ids; other characters are dropped."""
    words = [[ALPHABET.index(ch) for ch in w if ch in ALPHABET] for w in text.lower().split()]
    return [w for w in words if w]


class TonesSynthesizer:
    def __init__(self, model: Tones):
        self.model = model
        self.sample_rate = model.config.sample_rate
        self.voices = ["low", "soft"]
        self.streaming = model.config.streaming

    @torch.no_grad()
    def _word(self, word: list[int], voice: str | None, speed: float) -> np.ndarray:
        v = self.voices.index(voice) if voice in self.voices else 0
        return self.model(torch.tensor(word + [-1]), v, speed).numpy().astype(np.float32)

    def synthesize(self, text: str, voice: str | None = None, speed: float = 1.0):
        words = encode_text(text)
        if not words:  # like a frontend that finds nothing to pronounce
            raise ValueError(f"no letters to speak in {text[:40]!r}")
        if self.streaming:
            for word in words:
                yield self._word(word, voice, speed)
        else:
            yield np.concatenate([self._word(w, voice, speed) for w in words])

    def synthesize_batch(self, requests: list[tuple[str, str | None, float]]) -> list[np.ndarray]:
        out = []
        for text, voice, speed in requests:
            if not encode_text(text):
                raise ValueError(f"no letters to speak in {text[:40]!r}")
            out.append(np.concatenate([self._word(w, voice, speed) for w in encode_text(text)]))
        return out


@dataclasses.dataclass(frozen=True)
class ToneAsrConfig:
    sample_rate: int = 16000
    n_fft: int = 256
    hop_length: int = 80  # 5 ms
    silence_db: float = -30.0
    word_gap_ms: float = 70.0


class ToneAsr(nn.Module):
    def __init__(self, config: ToneAsrConfig):
        super().__init__()
        self.config = config
        n_bins = config.n_fft // 2 + 1
        bin_hz = torch.arange(n_bins) * config.sample_rate / config.n_fft
        centres = torch.tensor([letter_hz(i) for i in range(len(ALPHABET))])
        templates = torch.exp(-0.5 * ((bin_hz[None, :] - centres[:, None]) / 25.0) ** 2)
        self.templates = nn.Linear(n_bins, len(ALPHABET), bias=False)
        with torch.no_grad():
            self.templates.weight.copy_(templates / templates.sum(1, keepdim=True))

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T) -> letter scores (B, F, n_letters) and frame level in dB (B, F)."""
        c = self.config
        spec = torch.stft(wave, c.n_fft, c.hop_length, window=torch.hann_window(c.n_fft), return_complex=True).abs()
        spec = spec.transpose(1, 2)  # (B, F, bins)
        level_db = 20 * torch.log10(spec.amax(-1) / (c.n_fft / 4) + 1e-9)
        return self.templates(spec), level_db


class ToneTranscriber:
    def __init__(self, model: ToneAsr):
        self.model = model
        self.sample_rate = model.config.sample_rate

    @torch.no_grad()
    def transcribe_batch(self, audio: list[np.ndarray]) -> list[Transcript]:
        if not audio:
            return []
        longest = max(max(len(a) for a in audio), self.model.config.n_fft)
        wave = torch.zeros(len(audio), longest)
        for i, a in enumerate(audio):
            wave[i, : len(a)] = torch.from_numpy(np.asarray(a, np.float32))
        scores, level = self.model(wave)
        labels = torch.where(level > self.model.config.silence_db, scores.argmax(-1), -1)
        return [self._decode(labels[i].tolist(), len(a) / self.sample_rate) for i, a in enumerate(audio)]

    def _decode(self, labels: list[int], duration_s: float) -> Transcript:
        """A run of sounding frames is one letter (majority label); a long silence ends a word."""
        c = self.model.config
        frame_s = c.hop_length / c.sample_rate
        gap_frames = int(c.word_gap_ms / 1000 / frame_s)
        runs, f = [], 0  # (first, last, label) of each sounding run
        while f < len(labels):
            if labels[f] < 0:
                f += 1
                continue
            first = f
            while f < len(labels) and labels[f] >= 0:
                f += 1
            runs.append((first, f - 1, int(np.bincount(labels[first:f]).argmax())))
        words, current = [], []
        for i, run in enumerate(runs):
            current.append(run)
            if i + 1 == len(runs) or runs[i + 1][0] - run[1] > gap_frames:
                text = "".join(ALPHABET[lab] for _, _, lab in current)
                start, end = current[0][0] * frame_s, min(duration_s, (run[1] + 1) * frame_s)
                words.append(Word(text, round(start, 3), round(end, 3), 1.0))
                current = []
        return Transcript(" ".join(w.word for w in words), words, duration_s)


@dataclasses.dataclass(frozen=True)
class PianoConfig:
    sample_rate: int = 16000
    n_fft: int = 2048
    hop_length: int = 256
    threshold: float = 0.3


class TinyPiano(nn.Module):
    def __init__(self, config: PianoConfig):
        super().__init__()
        self.config = config
        n_bins = config.n_fft // 2 + 1
        bin_hz = torch.arange(n_bins) * config.sample_rate / config.n_fft
        pitch_hz = 440.0 * 2 ** ((torch.arange(21, 109) - 69) / 12)
        width = torch.clamp(pitch_hz * 0.02, min=config.sample_rate / config.n_fft)
        templates = torch.exp(-0.5 * ((bin_hz[None, :] - pitch_hz[:, None]) / width[:, None]) ** 2)
        self.templates = nn.Linear(n_bins, 88, bias=False)
        with torch.no_grad():
            self.templates.weight.copy_(templates / templates.sum(1, keepdim=True))

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """(T,) -> (F, 88) activations in [0, 1], relative to the loudest frame."""
        c = self.config
        spec = torch.stft(wave, c.n_fft, c.hop_length, window=torch.hann_window(c.n_fft), return_complex=True).abs()
        act = self.templates(spec.T)
        return act / act.max().clamp(min=1e-6)


class PianoRuntime:
    def __init__(self, model: TinyPiano):
        self.model = model
        self.sample_rate = model.config.sample_rate

    @torch.no_grad()
    def transcribe(self, audio: np.ndarray) -> list[Note]:
        c = self.model.config
        wave = torch.from_numpy(np.asarray(audio, np.float32))
        if len(wave) < c.n_fft:
            wave = torch.nn.functional.pad(wave, (0, c.n_fft - len(wave)))
        act = self.model(wave)
        # a note is a local maximum across pitch above threshold (kills leakage into neighbours)
        peak = (act >= torch.roll(act, 1, 1)) & (act >= torch.roll(act, -1, 1)) & (act > c.threshold)
        frame_s = c.hop_length / c.sample_rate
        notes = []
        for p in range(88):
            on = None
            column = peak[:, p].tolist() + [False]
            for f, active in enumerate(column):
                if active and on is None:
                    on = f
                elif not active and on is not None:
                    if f - on >= 2:
                        velocity = int(np.clip(40 + 87 * float(act[on:f, p].max()), 1, 127))
                        notes.append(Note(21 + p, on * frame_s, f * frame_s, velocity))
                    on = None
        return sorted(notes, key=lambda n: (n.onset_s, n.pitch))


def _tones_runtime(bundle):
    return TonesSynthesizer(model_from_bundle(bundle))


def _asr_runtime(bundle):
    return ToneTranscriber(model_from_bundle(bundle))


def _piano_runtime(bundle):
    return PianoRuntime(model_from_bundle(bundle))


def install() -> None:
    register("tiny-tones", TonesConfig, Tones, task="tts", runtime=_tones_runtime)
    register("tiny-tone-asr", ToneAsrConfig, ToneAsr, task="asr", runtime=_asr_runtime)
    register("tiny-piano", PianoConfig, TinyPiano, task="piano", runtime=_piano_runtime)


def write_bundles(directory: Path) -> dict[str, Path]:
    """One bundle per tiny model under `directory`; returns name -> path."""
    install()
    made = {}
    for name, model_type, config, task in [
        ("tones", "tiny-tones", TonesConfig(streaming=True), "tts"),
        ("tones-ff", "tiny-tones", TonesConfig(streaming=False), "tts"),
        ("tone-asr", "tiny-tone-asr", ToneAsrConfig(), "asr"),
        ("piano", "tiny-piano", PianoConfig(), "piano"),
    ]:
        module = {"tiny-tones": Tones, "tiny-tone-asr": ToneAsr, "tiny-piano": TinyPiano}[model_type](config)
        made[name] = save_bundle(directory / name, model_type=model_type, model_config=config_to_dict(config),
                                 tensors=dict(module.state_dict()), task=task, licence="test-only (CC0)")
    return made


def write_real_bundles(directory: Path) -> dict[str, Path]:
    """Tiny, untrained bundles of the real families, exported through their objectives."""
    from models.deepspeech2 import DeepSpeech2Config
    from models.deepspeech2.features import asr_feature_config
    from training.objectives.deepspeech2 import (DeepSpeech2DataConfig, DeepSpeech2DecodeConfig,
                                                 DeepSpeech2Objective, DeepSpeech2RunConfig)

    torch.manual_seed(0)
    config = DeepSpeech2RunConfig(
        model=DeepSpeech2Config(n_mels=16, conv_channels=(4, 4), conv_kernels=((5, 7), (5, 5)),
                                conv_strides=((2, 2), (1, 1)), rnn_layers=1, rnn_hidden=32),
        features=asr_feature_config(n_mels=16), data=DeepSpeech2DataConfig(root=str(directory / "no-corpus")),
        decode=DeepSpeech2DecodeConfig(decoder="greedy", onnx=False))
    objective = DeepSpeech2Objective(config)
    model = objective.build_modules()["model"]
    with torch.no_grad():  # batch-norm statistics from one pass
        model.train()
        model(torch.randn(4, 80, 16) * 2 - 3, torch.tensor([80, 70, 50, 40]))
    return {"ds2": objective.export({"model": model.eval()}, directory / "ds2", provenance={"test": True},
                                    package_version="test")}
