"""Transcript output formats shared by the service and the CLI: segments, SRT, WebVTT, verbose JSON.

A `Transcript` (models/inference.py) holds words with times; segments group
them at pauses. The shapes follow OpenAI's transcription API
(`response_format` json | text | verbose_json | srt | vtt).
"""
from __future__ import annotations

import json

FORMATS = ("json", "text", "verbose_json", "srt", "vtt")
SEGMENT_GAP_S, SEGMENT_MAX_WORDS, SEGMENT_MAX_S = 0.8, 16, 8.0


def segments_of(transcript) -> list[dict]:
    """Words grouped into segments at pauses, or every 16 words / 8 s -> [{id, start, end, text, ...}]."""
    groups, current = [], []
    for word in transcript.words:
        if current and (word.start_s - current[-1].end_s > SEGMENT_GAP_S or len(current) >= SEGMENT_MAX_WORDS
                        or word.end_s - current[0].start_s > SEGMENT_MAX_S):
            groups.append(current)
            current = []
        current.append(word)
    if current:
        groups.append(current)
    spans = [(g[0].start_s, g[-1].end_s, " ".join(w.word for w in g)) for g in groups]
    if not spans and transcript.text.strip():
        spans = [(0.0, transcript.duration_s, transcript.text.strip())]
    return [{"id": i, "seek": 0, "start": round(s, 3), "end": round(e, 3), "text": text, "tokens": [],
             "temperature": 0.0, "avg_logprob": 0.0, "compression_ratio": 1.0, "no_speech_prob": 0.0}
            for i, (s, e, text) in enumerate(spans)]


def timestamp(seconds: float, sep: str) -> str:
    """HH:MM:SS<sep>mmm (sep ',' for SRT, '.' for WebVTT)."""
    ms = int(round(max(0.0, seconds) * 1000))
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}{sep}{ms % 1000:03d}"


def subtitles(segments: list[dict], kind: str) -> str:
    """Segments as an SRT (kind 'srt') or WebVTT ('vtt') document."""
    if kind == "srt":
        return "".join(f"{i + 1}\n{timestamp(s['start'], ',')} --> {timestamp(s['end'], ',')}\n{s['text']}\n\n"
                       for i, s in enumerate(segments))
    if kind != "vtt":
        raise ValueError(f"subtitle format {kind!r}; choose srt or vtt")
    return "WEBVTT\n\n" + "".join(f"{timestamp(s['start'], '.')} --> {timestamp(s['end'], '.')}\n{s['text']}\n\n"
                                  for s in segments)


def words_of(transcript) -> list[dict]:
    return [{"word": w.word, "start": round(w.start_s, 3), "end": round(w.end_s, 3),
             "confidence": round(float(w.confidence), 4)} for w in transcript.words]


def verbose_json(transcript, granularities=("segment",)) -> dict:
    """OpenAI's verbose_json body: text, duration, and segments and/or words as `granularities` asks."""
    wanted = set(granularities or ("segment",))
    body = {"task": "transcribe", "language": "english", "duration": round(transcript.duration_s, 3),
            "text": transcript.text}
    if "segment" in wanted:
        body["segments"] = segments_of(transcript)
    if "word" in wanted:
        body["words"] = words_of(transcript)
    return body


def format_transcript(transcript, fmt: str) -> str:
    """One transcript as a document: text (plain line), json (text, duration_s, words with times and
    confidence), verbose_json (segments and words), srt or vtt."""
    if fmt == "text":
        return transcript.text + "\n"
    if fmt == "json":
        return json.dumps({"text": transcript.text, "duration_s": transcript.duration_s,
                           "words": [w.__dict__ for w in transcript.words]}, indent=2) + "\n"
    if fmt == "verbose_json":
        return json.dumps(verbose_json(transcript, ("segment", "word")), indent=2) + "\n"
    if fmt in ("srt", "vtt"):
        return subtitles(segments_of(transcript), fmt)
    raise ValueError(f"format {fmt!r}; choose one of {', '.join(FORMATS)}")
