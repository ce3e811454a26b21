"""Sentences for the speech corpus: Debian fortunes (not the offensive ones) and WordNet examples.

Each sentence belongs to one split for good, by a hash of its text, so a
sentence in test is never spoken in train, whatever the seed or the limit.
"""
from __future__ import annotations

import functools
import hashlib
import re
from pathlib import Path

FORTUNES_DIR = Path("/usr/share/games/fortunes")
WORDNET_DIR = Path("/usr/share/wordnet")
MIN_WORDS, MAX_WORDS = 4, 25
SPLIT_PERCENT = {"train": 90, "valid": 5, "test": 5}
_CLEAN = re.compile(r"^[A-Z][A-Za-z0-9 ,.;:'!?$%&-]*[.!?]$")


def stable_fraction(text: str) -> float:
    """A number in [0, 1) fixed by the text alone (sha1), for splits that never move."""
    return int(hashlib.sha1(text.encode()).hexdigest()[:12], 16) / 16 ** 12


def sentence_split(sentence: str) -> str:
    x = stable_fraction(sentence) * 100
    return "train" if x < SPLIT_PERCENT["train"] else "valid" if x < 100 - SPLIT_PERCENT["test"] else "test"


def clean_sentence(text: str) -> str | None:
    """One sentence -> itself with single spaces if it is plain ASCII prose of 4-25 words, else None."""
    text = " ".join(text.split())
    if not text.isascii() or not _CLEAN.match(text) or "--" in text or "  " in text:
        return None
    if not MIN_WORDS <= len(text.split()) <= MAX_WORDS:
        return None
    if text.count("'") % 2 and not re.search(r"\w'\w", text):  # unbalanced quoting
        return None
    return text


def split_sentences(paragraph: str) -> list[str]:
    return re.split(r"(?<=[.!?])\s+(?=[A-Z])", " ".join(paragraph.split()))


def fortune_sentences(root: Path = FORTUNES_DIR) -> list[str]:
    """Sentences from every fortune file under root, except the `off/` (offensive) directory."""
    out = []
    for path in sorted(root.glob("*")):
        if not path.is_file() or path.suffix in (".dat", ".u8") or path.is_symlink():
            continue
        text = path.read_text(encoding="latin-1")
        for fortune in text.split("\n%\n"):
            # attributions ("-- Author") go; dialogue ("Q: ...", "Name: ...") skips the fortune
            lines = [ln for ln in fortune.splitlines() if ln.strip() and not ln.strip().startswith("--")]
            if any(re.match(r"^\s*[\w. ]{1,20}:(\s|$)", ln) for ln in lines):
                continue
            for sentence in split_sentences(" ".join(lines)):
                if (s := clean_sentence(sentence)) is not None:
                    out.append(s)
    return out


def wordnet_sentences(root: Path = WORDNET_DIR) -> list[str]:
    """The quoted usage examples of WordNet's data.* files, capitalized and ended with a full stop."""
    out = []
    for path in sorted(root.glob("data.*")):
        for line in path.read_text(encoding="latin-1").splitlines():
            if line.startswith("  ") or "|" not in line:
                continue
            for example in re.findall(r'"([^"]+)"', line.split("|", 1)[1]):
                example = example.strip()
                if example and example[-1] not in ".!?":
                    example += "."
                if (s := clean_sentence(example[:1].upper() + example[1:])) is not None:
                    out.append(s)
    return out


@functools.lru_cache(maxsize=2)
def all_sentences(fortunes: Path = FORTUNES_DIR, wordnet: Path = WORDNET_DIR) -> dict[str, list[str]]:
    """split -> sorted unique sentences of that split."""
    unique = sorted(set(fortune_sentences(fortunes)) | set(wordnet_sentences(wordnet)))
    out: dict[str, list[str]] = {name: [] for name in SPLIT_PERCENT}
    for s in unique:
        out[sentence_split(s)].append(s)
    return out
