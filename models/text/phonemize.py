"""espeak-ng as a subprocess: IPA phonemes and MBROLA .pho prosody, cached per process.

The .pho format (MBROLA): one phoneme a line, `name duration_ms [percent hz]...`,
the pairs being pitch targets at that percent of the phoneme's duration.
`espeak-ng -v mb-us1 -q --pho` prints exactly what `mbrola` renders, so the
durations and pitch are the labels of the audio, not estimates.
"""
from __future__ import annotations

import dataclasses
import functools
import re
import shutil
import subprocess
from pathlib import Path

MBROLA_DIRS = (Path("/usr/share/mbrola"), Path("/usr/local/share/mbrola"))
CLAUSE_PUNCT = r"[,.;:!?]+"


class FrontendError(RuntimeError):
    """espeak-ng or an MBROLA voice is missing or failed; the message says which and what to install."""


class NothingToSpeak(FrontendError, ValueError):
    """The text holds nothing pronounceable: the caller's input, not the machine, is at fault."""


@dataclasses.dataclass(frozen=True)
class Phone:
    """One .pho line: a phoneme, its duration and its pitch targets (percent of duration, Hz)."""

    phoneme: str
    duration_ms: float
    pitch: tuple[tuple[float, float], ...] = ()


def _espeak() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise FrontendError("espeak-ng is not installed (apt-get install espeak-ng)")
    return exe


def mbrola_voice_path(voice: str) -> Path:
    """'mb-us1' -> /usr/share/mbrola/us1/us1; FrontendError if that voice is not installed."""
    name = voice.removeprefix("mb-")
    for root in MBROLA_DIRS:
        for path in (root / name / name, root / name):
            if path.is_file():
                return path
    raise FrontendError(f"MBROLA voice {voice!r} is not installed (apt-get install mbrola mbrola-{name}; "
                        "Debian contrib/non-free); durations and pitch need an MBROLA voice")


def _run(args: list[str], text: str) -> str:
    proc = subprocess.run([_espeak(), *args], input=text, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise FrontendError(f"espeak-ng {' '.join(args)} failed: {proc.stderr.strip() or proc.returncode}")
    return proc.stdout


def parse_pho(text: str) -> list[Phone]:
    """MBROLA .pho text -> phones (comments `;` and blank lines skipped)."""
    phones = []
    for line in text.splitlines():
        fields = line.split(";")[0].split()
        if not fields:
            continue
        nums = [float(f) for f in fields[2:]]
        pitch = tuple((nums[i], nums[i + 1]) for i in range(0, len(nums) - 1, 2))
        phones.append(Phone(fields[0], float(fields[1]), pitch))
    return phones


def format_pho(phones: list[Phone]) -> str:
    lines = []
    for p in phones:
        targets = " ".join(f"{pct:g} {hz:g}" for pct, hz in p.pitch)
        lines.append(f"{p.phoneme}\t{p.duration_ms:g}" + (f"\t{targets}" if targets else ""))
    return "\n".join(lines) + "\n"


@functools.lru_cache(maxsize=8192)
def pho(text: str, voice: str = "mb-us1") -> tuple[Phone, ...]:
    """Text -> the phones an MBROLA voice will render (cached). Needs the voice installed."""
    mbrola_voice_path(voice)
    if not text.strip():
        return ()
    return tuple(parse_pho(_run(["-v", voice, "-q", "--pho"], text)))


_IPA: dict[tuple[str, str], str] = {}  # (chunk, voice) -> IPA, per process


def ipa(chunks: list[str], voice: str = "en-us") -> list[str]:
    """Punctuation-free text chunks -> IPA strings (words separated by single spaces), cached.

    Uncached chunks go to one espeak-ng process, separated by blank lines
    (espeak-ng keeps paragraph breaks); if the count of paragraphs out does not
    match, each chunk is run on its own.
    """
    todo = sorted({c for c in chunks if c.strip() and (c, voice) not in _IPA})
    if len(todo) > 1:
        out = _run(["-v", voice, "-q", "-x", "--ipa"], "\n\n".join(todo) + "\n")
        parts = [" ".join(p.split()) for p in re.split(r"\n\s*\n", out.strip("\n"))]
        if len(parts) == len(todo):
            _IPA.update({(c, voice): p for c, p in zip(todo, parts)})
    for c in todo:
        if (c, voice) not in _IPA:
            _IPA[(c, voice)] = " ".join(_run(["-v", voice, "-q", "-x", "--ipa"], c).split())
    return [_IPA[(c, voice)] if c.strip() else "" for c in chunks]


def split_clauses(text: str) -> list[str]:
    """'Hi, there.' -> ['Hi', ',', 'there', '.']: text chunks and punctuation runs, in order."""
    return [p.strip() for p in re.split(f"({CLAUSE_PUNCT})", text) if p.strip()]


def ipa_tokens(text: str, voice: str = "en-us") -> list[str]:
    """Normalized text -> IPA symbols (one character each, ' ' between words) with punctuation kept."""
    parts = split_clauses(text)
    words = [p for p in parts if not re.fullmatch(CLAUSE_PUNCT, p)]
    spoken = dict(zip(words, ipa(words, voice)))
    tokens: list[str] = []
    for part in parts:
        if re.fullmatch(CLAUSE_PUNCT, part):
            tokens.extend(part)
        else:
            if tokens:
                tokens.append(" ")
            tokens.extend(spoken[part])
    return tokens
