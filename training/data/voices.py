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
    # tool settings that make another speaker of the same voice: flite `--setf KEY=VALUE`
    # (int_f0_target_mean, duration_stretch), pico markup levels (pitch, speed; 100 is the voice's own)
    options: tuple[tuple[str, str], ...] = ()


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

def _flite(name: str, arg: str, f0: int, stretch: float = 1.0) -> Voice:
    return Voice(name, "flite", arg, "train", FLITE,
                 options=(("int_f0_target_mean", str(f0)), ("duration_stretch", str(stretch))))


def _pico(name: str, pitch: int, speed: int) -> Voice:
    return Voice(name, "pico", "en-US", "train", PICO, options=(("pitch", str(pitch)), ("speed", str(speed))))


# Extra training speakers for the recognizer (train split only): in the `asr` preset 98 of the 103
# train voices are espeak-ng, while three of the five test voices are other synthesizers. These are
# the free non-espeak voices again at other pitches and tempos (flite, pico), plus festival's other
# English diphone voices (ked, rab, don). Built as a second corpus beside `asr` (docs/deepspeech2.md).
ASR_EXTRA_VOICES = (
    Voice("flite-kal16", "flite", "kal16", "train", FLITE),
    _flite("flite-kal16-f150", "kal16", 150),
    _flite("flite-kal16-f200-fast", "kal16", 200, 0.85),
    _flite("flite-kal16-f120-slow", "kal16", 120, 1.2),
    _flite("flite-kal-f170-slow", "kal", 170, 1.15),
    _flite("flite-kal-f130-fast", "kal", 130, 0.9),
    Voice("flite-rms", "flite", "rms", "train", FLITE),
    _flite("flite-rms-f140", "rms", 140),
    _flite("flite-rms-f190-fast", "rms", 190, 0.85),
    Voice("festival-kal", "festival", "voice_kal_diphone", "train", FESTIVAL),
    Voice("festival-ked", "festival", "voice_ked_diphone", "train", FESTIVAL),
    Voice("festival-rab", "festival", "voice_rab_diphone", "train", FESTIVAL),
    Voice("festival-don", "festival", "voice_don_diphone", "train", FESTIVAL),
    Voice("pico-en-US", "pico", "en-US", "train", PICO),
    _pico("pico-en-US-p70", 70, 100),
    _pico("pico-en-US-p130-fast", 130, 120),
    _pico("pico-en-US-p150-slow", 150, 85),
    _pico("pico-en-US-p85-fast", 85, 115),
)
# `--voices NAME` with one of these names picks the whole set; "default" is VOICES.
PRESETS = {"default": VOICES, "asr": ASR_VOICES, "asr-extra": ASR_EXTRA_VOICES}
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


def pico_markup(text: str, options: tuple[tuple[str, str], ...]) -> str:
    """Wrap text in SVOX pico's <pitch level='..'> / <speed level='..'> tags (text has no markup of its own)."""
    for key, level in options:
        if key not in ("pitch", "speed"):
            raise ValueError(f"pico option {key!r}; choose pitch or speed")
        text = f"<{key} level='{level}'>{text}</{key}>"
    return text


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
        setf = [a for k, v in voice.options for a in ("--setf", f"{k}={v}")]
        _run(["flite", "-voice", voice.arg, *setf, "-f", str(txt), "-o", str(wav)])
    elif voice.tool == "festival":
        _run(["text2wave", "-eval", f"({voice.arg})", str(txt), "-o", str(wav)])
    elif voice.tool == "pico":
        _run(["pico2wave", "-l", voice.arg, "-w", str(wav), pico_markup(text, voice.options)])
    else:
        raise ValueError(f"unknown tool {voice.tool!r}")
    if not wav.is_file() or wav.stat().st_size <= 44:
        raise SynthesisError(f"{voice.tool} wrote no audio")
    audio, sample_rate = read_audio(wav, mono=False)
    return to_mono(audio), sample_rate, phones
