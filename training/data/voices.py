"""The speech corpus's voices: which tool speaks, with which arguments, in which split.

Whole voices are held out: valid and test voices never speak in train. The
MBROLA voices are driven in two steps (espeak-ng --pho, then mbrola) so that
the durations and pitch stored as labels are exactly what was rendered.
"""
from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import numpy as np

from models.audio import read_audio, to_mono
from models.text import Phone, format_pho, mbrola_voice_path, pho


@dataclasses.dataclass(frozen=True)
class Voice:
    name: str  # unique, used as the speaker name
    tool: str  # mbrola, espeak, flite, festival, pico
    arg: str  # the tool's voice argument
    split: str  # train, valid or test
    licence: str
    rate: int = 0  # espeak-ng words per minute; 0: the voice's own


GPL, MBROLA = "GPL-3.0-or-later (espeak-ng)", "MBROLA voice licence: non-commercial use only"
FLITE, FESTIVAL, PICO = "flite (BSD-like)", "festival/festvox (BSD-like)", "svox pico (Apache-2.0)"

VOICES = (
    Voice("mb-us1", "mbrola", "mb-us1", "train", MBROLA),
    Voice("mb-us2", "mbrola", "mb-us2", "train", MBROLA),
    Voice("mb-en1", "mbrola", "mb-en1", "valid", MBROLA),
    Voice("mb-us3", "mbrola", "mb-us3", "test", MBROLA),
    *(Voice(f"espeak-{v}", "espeak", v, "train", GPL) for v in (
        "en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-us-nyc", "en-us+f3", "en-us+m3",
        "en-gb+f2", "en-gb-x-rp+m5", "en-gb-scotland+f4", "en-us+klatt")),
    Voice("espeak-en-029", "espeak", "en-029", "valid", GPL),
    Voice("espeak-en-gb+m7", "espeak", "en-gb+m7", "valid", GPL),
    Voice("espeak-en-gb-x-gbcwmd", "espeak", "en-gb-x-gbcwmd", "test", GPL),
    Voice("espeak-en-us+f5", "espeak", "en-us+f5", "test", GPL),
    Voice("flite-kal16", "flite", "kal16", "train", FLITE),
    Voice("flite-rms", "flite", "rms", "train", FLITE),
    Voice("flite-awb", "flite", "awb", "valid", FLITE),
    Voice("flite-slt", "flite", "slt", "test", FLITE),
    Voice("festival-kal", "festival", "voice_kal_diphone", "train", FESTIVAL),
    Voice("festival-slt-hts", "festival", "voice_cmu_us_slt_arctic_hts", "test", FESTIVAL),
    Voice("pico-en-US", "pico", "en-US", "train", PICO),
    Voice("pico-en-GB", "pico", "en-GB", "test", PICO),
)
BY_NAME = {v.name: v for v in VOICES}

# The recognizer's preset: many speakers matter more than labels, so every espeak-ng accent x
# variant of the grid (each at its own speaking rate) plus the free flite/festival/pico voices.
# The Scottish accent never speaks in train: two of its variants are valid, two are test.
ASR_ACCENTS = ("en-us", "en", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029", "en-us-nyc")
ASR_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "klatt", "klatt2", "klatt3")
ASR_RATES = (140, 155, 170, 185)
ASR_VOICES = (
    *(Voice(f"espeak-{a}+{v}", "espeak", f"{a}+{v}", "train", GPL, ASR_RATES[(i + j) % len(ASR_RATES)])
      for i, a in enumerate(ASR_ACCENTS) for j, v in enumerate(ASR_VARIANTS)),
    Voice("flite-kal16", "flite", "kal16", "train", FLITE),
    Voice("flite-kal", "flite", "kal", "train", FLITE),
    Voice("flite-rms", "flite", "rms", "train", FLITE),
    Voice("festival-kal", "festival", "voice_kal_diphone", "train", FESTIVAL),
    Voice("pico-en-US", "pico", "en-US", "train", PICO),
    Voice("flite-awb", "flite", "awb", "valid", FLITE),
    Voice("espeak-en-gb-scotland+m1", "espeak", "en-gb-scotland+m1", "valid", GPL),
    Voice("espeak-en-gb-scotland+f4", "espeak", "en-gb-scotland+f4", "valid", GPL),
    Voice("flite-slt", "flite", "slt", "test", FLITE),
    Voice("festival-slt-hts", "festival", "voice_cmu_us_slt_arctic_hts", "test", FESTIVAL),
    Voice("pico-en-GB", "pico", "en-GB", "test", PICO),
    Voice("espeak-en-gb-scotland+m3", "espeak", "en-gb-scotland+m3", "test", GPL),
    Voice("espeak-en-gb-scotland+f2", "espeak", "en-gb-scotland+f2", "test", GPL),
)
# `--voices NAME` with one of these names picks the whole set; "default" is VOICES.
PRESETS = {"default": VOICES, "asr": ASR_VOICES}
EXECUTABLES = {"mbrola": "mbrola", "espeak": "espeak-ng", "flite": "flite", "festival": "text2wave",
               "pico": "pico2wave"}


class SynthesisError(RuntimeError):
    """A tool failed or warned (mb-us3 missing diphones); the utterance is dropped."""


def available(voice: Voice) -> bool:
    if shutil.which(EXECUTABLES[voice.tool]) is None or shutil.which("espeak-ng") is None:
        return False
    if voice.tool == "mbrola":
        try:
            mbrola_voice_path(voice.arg)
        except RuntimeError:
            return False
    return True


def _run(cmd: list[str], strict: bool = False) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0 or (strict and proc.stderr.strip()):
        raise SynthesisError(f"{cmd[0]} failed ({proc.returncode}): {proc.stderr.strip()[:200]}")


def synthesize(voice: Voice, text: str, workdir: Path) -> tuple[np.ndarray, int, tuple[Phone, ...] | None]:
    """Speak normalized text -> ((N,) float32 audio, sample_rate, MBROLA phones or None)."""
    workdir.mkdir(parents=True, exist_ok=True)
    wav, txt = workdir / "out.wav", workdir / "in.txt"
    txt.write_text(text + "\n")
    phones = None
    if voice.tool == "mbrola":
        phones = pho(text, voice.arg)
        if not phones:
            raise SynthesisError("espeak-ng printed no phones")
        (workdir / "in.pho").write_text(format_pho(list(phones)))
        _run(["mbrola", str(mbrola_voice_path(voice.arg)), str(workdir / "in.pho"), str(wav)], strict=True)
    elif voice.tool == "espeak":
        rate = ["-s", str(voice.rate)] if voice.rate else []
        _run(["espeak-ng", "-v", voice.arg, *rate, "-w", str(wav), "-f", str(txt)])
    elif voice.tool == "flite":
        _run(["flite", "-voice", voice.arg, "-f", str(txt), "-o", str(wav)])
    elif voice.tool == "festival":
        _run(["text2wave", "-eval", f"({voice.arg})", str(txt), "-o", str(wav)])
    elif voice.tool == "pico":
        _run(["pico2wave", "-l", voice.arg, "-w", str(wav), text])
    else:
        raise ValueError(f"unknown tool {voice.tool!r}")
    if not wav.is_file() or wav.stat().st_size <= 44:
        raise SynthesisError(f"{voice.tool} wrote no audio")
    audio, sample_rate = read_audio(wav, mono=False)
    return to_mono(audio), sample_rate, phones
