"""The character set of the recognizer and text <-> label conversion.

Index 0 is the CTC blank, 1 the space, 2 the apostrophe, 3..28 are a-z.
"""
from __future__ import annotations

import re
import unicodedata

BLANK = 0
SPACE = 1
CHARS = " '" + "abcdefghijklmnopqrstuvwxyz"  # index i + 1
N_CLASSES = len(CHARS) + 1
_INDEX = {c: i + 1 for i, c in enumerate(CHARS)}

_DIGITS = "zero one two three four five six seven eight nine".split()


def normalize_transcript(text: str) -> str:
    """Lower case, letters, apostrophes and single spaces only.

    Digits are spelled one by one (the corpus text frontend spells numbers
    before synthesis, so they are rare here); hyphens and other punctuation
    separate words.
    """
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    text = text.replace("`", "'").replace("&", " and ")
    text = re.sub(r"\d", lambda m: f" {_DIGITS[int(m.group())]} ", text)
    text = re.sub(r"[^a-z' ]+", " ", text)
    text = re.sub(r"(^|\s)'+|'+(?=\s|$)", " ", text)  # quotes, not contractions
    return " ".join(text.split())


def encode(text: str) -> list[int]:
    """Normalized text -> label indices (no blanks)."""
    return [_INDEX[c] for c in normalize_transcript(text)]


def decode(labels) -> str:
    """Label indices (blanks allowed and dropped) -> text."""
    return "".join(CHARS[i - 1] for i in labels if i != BLANK)
