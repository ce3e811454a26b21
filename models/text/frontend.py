"""The text frontend that labels the training corpus and drives inference.

text -> normalize_text -> espeak-ng (IPA tokens; MBROLA phones with
durations and pitch) -> LinguisticFeatures at 200 Hz. Only espeak-ng and an
MBROLA voice are needed at inference; the FrontendConfig and symbol tables
travel inside model bundles.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from models.text.normalize import normalize_text
from models.text.phonemize import FrontendError, NothingToSpeak, Phone, ipa_tokens, pho
from models.text.prosody import LinguisticFeatures, features_from_phones
from models.text.symbols import SymbolTable, ipa_symbols, pho_symbols


@dataclasses.dataclass(frozen=True)
class FrontendConfig:
    """Which espeak-ng voices the frontend uses; stored in bundles."""

    prosody_voice: str = "mb-us1"  # MBROLA voice whose --pho gives durations and pitch
    ipa_voice: str = "en-us"  # espeak-ng voice for IPA transcriptions
    frame_rate_hz: int = 200
    normalize: bool = True

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FrontendConfig":
        return cls(**data)


def prepare(text: str, config: FrontendConfig = FrontendConfig()) -> str:
    """Raw text -> the text that is spoken; NothingToSpeak if nothing speakable is left."""
    out = normalize_text(text) if config.normalize else " ".join(text.split())
    if not any(c.isalnum() for c in out):
        raise NothingToSpeak(f"nothing to speak in {text!r}")
    return out


def text_to_phones(text: str, config: FrontendConfig = FrontendConfig()) -> tuple[Phone, ...]:
    """Raw text -> MBROLA phones (phoneme, duration_ms, pitch targets) of config.prosody_voice."""
    return pho(prepare(text, config), config.prosody_voice)


def text_to_ipa(text: str, config: FrontendConfig = FrontendConfig()) -> list[str]:
    """Raw text -> IPA symbols with punctuation and word spaces (see symbols.ipa_symbols)."""
    return ipa_tokens(prepare(text, config), config.ipa_voice)


def text_to_ids(text: str, table: SymbolTable | None = None,
                config: FrontendConfig = FrontendConfig()) -> list[int]:
    """Raw text -> IPA symbol ids (no pad, no blank)."""
    return (table or ipa_symbols()).encode(text_to_ipa(text, config))


def text_to_features(text: str, speaker: int = 0, sample_rate: int = 16000,
                     config: FrontendConfig = FrontendConfig(),
                     symbols: SymbolTable | None = None) -> LinguisticFeatures:
    """Raw text -> 200 Hz LinguisticFeatures (T frames, T * sample_rate / 200 samples to make)."""
    if config.frame_rate_hz != 200:
        raise ValueError("only 200 Hz linguistic features are implemented")
    return features_from_phones(text_to_phones(text, config), speaker, sample_rate, symbols or pho_symbols())
