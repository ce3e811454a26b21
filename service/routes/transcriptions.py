"""POST /v1/audio/transcriptions in the shape of OpenAI's transcription API.

Audio is decoded from memory, downmixed and resampled to the model's rate,
then batched with whatever else arrived for the same model (Batch Dispatch).
"""
from __future__ import annotations

import time
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse

from service import audio
from service.batching import QueueFull
from service.errors import ApiError
from service.routes.common import lookup_model, queue_full, read_upload, require_multipart

router = APIRouter()
SEGMENT_GAP_S, SEGMENT_MAX_WORDS, SEGMENT_MAX_S = 0.8, 16, 8.0


def segments_of(transcript) -> list[dict]:
    """Words grouped into segments at pauses, or every 16 words / 8 s."""
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


def _stamp(seconds: float, sep: str) -> str:
    ms = int(round(max(0.0, seconds) * 1000))
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}{sep}{ms % 1000:03d}"


def subtitles(segments: list[dict], kind: str) -> str:
    if kind == "srt":
        return "".join(f"{i + 1}\n{_stamp(s['start'], ',')} --> {_stamp(s['end'], ',')}\n{s['text']}\n\n"
                       for i, s in enumerate(segments))
    return "WEBVTT\n\n" + "".join(f"{_stamp(s['start'], '.')} --> {_stamp(s['end'], '.')}\n{s['text']}\n\n"
                                  for s in segments)


@router.post("/v1/audio/transcriptions", dependencies=[Depends(require_multipart)])
async def transcriptions(
    request: Request,
    file: Annotated[UploadFile, File(description="the audio: wav, flac, ogg/opus or mp3")],
    model: Annotated[str, Form(max_length=200)],
    response_format: Annotated[Literal["json", "text", "verbose_json", "srt", "vtt"], Form()] = "json",
    granularities: Annotated[list[Literal["word", "segment"]] | None,
                             Form(alias="timestamp_granularities[]")] = None,
    language: Annotated[str | None, Form(max_length=32, description="English only")] = None,
    temperature: Annotated[float | None, Form(ge=0.0, le=1.0, description="accepted; decoding is greedy/beam")] = None,
    prompt: Annotated[str | None, Form(max_length=4000, description="accepted and ignored")] = None,
):
    loaded = lookup_model(request, model, "asr")
    if language and not language.strip().lower().startswith("en"):
        raise ApiError(422, f"language {language[:32]!r}: the models here transcribe English only",
                       "unsupported_language")
    settings, workers, metrics = request.app.state.settings, request.app.state.workers, request.app.state.metrics
    data = await read_upload(request, file)
    rate = loaded.runtime.sample_rate
    wave, _ = await workers.run(audio.decode, data, rate, settings.max_audio_s)
    start = time.perf_counter()
    try:
        transcript = await workers.batched(loaded, wave)
    except QueueFull as exc:
        raise queue_full(request, exc, loaded.name) from None
    metrics.observe_work(loaded.name, "asr", time.perf_counter() - start, len(wave) / rate)

    text = transcript.text
    if response_format == "text":
        return PlainTextResponse(text)
    if response_format == "json":
        return {"text": text}
    segments = segments_of(transcript)
    if response_format in ("srt", "vtt"):
        return PlainTextResponse(subtitles(segments, response_format),
                                 media_type="text/vtt" if response_format == "vtt" else "text/plain")
    wanted = set(granularities or ["segment"])
    body = {"task": "transcribe", "language": "english", "duration": round(transcript.duration_s, 3), "text": text}
    if "segment" in wanted:
        body["segments"] = segments
    if "word" in wanted:
        body["words"] = [{"word": w.word, "start": round(w.start_s, 3), "end": round(w.end_s, 3),
                          "confidence": round(float(w.confidence), 4)} for w in transcript.words]
    return JSONResponse(body)
