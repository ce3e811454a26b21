"""Intelligibility of synthesized speech, shared by the TTS evaluations: transcripts by
pocketsphinx (an independent recognizer with its own US English model) and WER on
text normalized the same way on both sides."""
from __future__ import annotations

import numpy as np


def pocketsphinx_texts(audio: list[np.ndarray], sample_rate: int = 16000) -> list[str]:
    """Transcripts by pocketsphinx's default US English model."""
    from pocketsphinx import Decoder

    decoder = Decoder(samprate=sample_rate, loglevel="FATAL")
    out = []
    for a in audio:
        decoder.start_utt()
        decoder.process_raw((np.clip(a, -1, 1) * 32767).astype(np.int16).tobytes(), full_utt=True)
        decoder.end_utt()
        out.append(decoder.hyp().hypstr if decoder.hyp() is not None else "")
    return out


def clean_text(text: str) -> str:
    """Lower case, letters, digits and apostrophes, single spaces."""
    return " ".join("".join(c for c in text.lower() if c.isalnum() or c in " '").split())


def word_error_rate(refs: list[str], hyps: list[str]) -> float:
    """Corpus WER (jiwer) of cleaned hypotheses against cleaned references; an empty
    hypothesis counts as all deletions."""
    import jiwer

    return float(jiwer.wer([clean_text(r) for r in refs], [clean_text(h) or "-" for h in hyps]))
