"""POST /v1/audio/speech in the shape of OpenAI's speech API.

Long text is split into sentences and synthesized in order. wav and pcm
stream (chunked transfer): the first chunk is made before the response
starts (so its errors still get a proper status) and the rest follow as
they are made. Other formats are encoded once the utterance is complete.
POST /v1/audio/speech/timings (an extension) answers JSON with the audio
and the phoneme timings of models that report them.
"""
from __future__ import annotations

import asyncio
import base64
import logging
import re
import time
from typing import Literal

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from service import audio
from service.batching import QueueFull
from service.errors import ApiError
from service.routes.common import lookup_model, queue_full, require_json

log = logging.getLogger("sparsewave.service")
router = APIRouter()
SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+|\n\s*\n?")
MAX_SENTENCE_CHARS = 300


class VoiceRef(BaseModel):
    id: str = Field(max_length=200)


class SpeechRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")  # newer client fields must not break old servers

    model: str = Field(max_length=200, description="a loaded speech synthesis model (GET /v1/models)")
    input: str = Field(description="the text to speak")
    voice: str | VoiceRef | None = Field(None, description="one of the model's voices")
    response_format: Literal["mp3", "opus", "aac", "flac", "wav", "pcm", "ogg"] = "mp3"
    speed: float = Field(1.0, ge=0.25, le=4.0)
    instructions: str | None = Field(None, description="accepted and ignored")
    stream_format: Literal["audio", "sse"] | None = None


def split_sentences(text: str, max_chars: int = MAX_SENTENCE_CHARS) -> list[str]:
    """Sentences of `text`; an over-long one is cut at commas, then at spaces;
    pieces with nothing to pronounce are dropped unless that is all there is."""
    out = []
    for sentence in SENTENCE_END.split(text):
        sentence = " ".join(sentence.split())
        while len(sentence) > max_chars:
            cut = max(sentence.rfind(", ", 0, max_chars), sentence.rfind(" ", 0, max_chars))
            cut = cut if cut > 0 else max_chars
            out.append(sentence[:cut].strip(" ,"))
            sentence = sentence[cut:].strip(" ,")
        if sentence:
            out.append(sentence)
    spoken = [s for s in out if any(ch.isalnum() for ch in s)]  # a lone "?" is not a sentence
    return spoken or out


def _checked(request: Request, body: SpeechRequest):
    settings = request.app.state.settings
    model = lookup_model(request, body.model, "tts")
    text = body.input.encode("utf-8", "replace").decode("utf-8")  # lone surrogates from JSON escapes
    if len(text) > settings.max_text_chars:
        request.app.state.metrics.rejected.labels("text_too_long").inc()
        raise ApiError(413, f"input is {len(text)} characters; the limit is {settings.max_text_chars}",
                       "text_too_long")
    sentences = split_sentences(text)
    if not sentences:
        raise ApiError(422, "input is empty or only whitespace", "empty_input")
    if body.stream_format == "sse":
        raise ApiError(422, "stream_format 'sse' is not supported; use 'audio'", "unsupported_stream_format")
    if body.response_format not in audio.supported_formats():
        raise ApiError(422, f"response_format {body.response_format!r} is not supported here; choose one of "
                       f"{', '.join(audio.supported_formats())}", "unsupported_response_format")
    voices = list(model.runtime.voices or [])
    voice = body.voice.id if isinstance(body.voice, VoiceRef) else body.voice
    if voices and voice not in voices:
        if voice is not None:
            raise ApiError(422, f"voice {voice[:100]!r} is not one of {model.name}'s voices: {', '.join(voices)}",
                           "unknown_voice")
        voice = voices[0]
    return model, sentences, (voice if voices else None)


def _admit(request: Request, model):
    """Enter the model's gate (429 when its queue is full); the caller leaves it."""
    gate = request.app.state.workers.gates[model.name]
    try:
        gate.enter()
    except QueueFull as exc:
        raise queue_full(request, exc, model.name) from None
    return gate


@router.post("/v1/audio/speech", dependencies=[Depends(require_json)],
             responses={200: {"content": {"audio/wav": {}, "audio/pcm": {}, "audio/flac": {}, "audio/ogg": {},
                                          "audio/mpeg": {}}, "description": "the audio"}})
async def speech(request: Request, body: SpeechRequest):
    start = time.perf_counter()
    model, sentences, voice = _checked(request, body)
    workers, metrics = request.app.state.workers, request.app.state.metrics
    rate = model.runtime.sample_rate
    gate = _admit(request, model)
    try:
        pieces = _pieces(workers, model, sentences, voice, body.speed)
        first = await pieces.__anext__()
    except StopAsyncIteration:
        first = np.zeros(0, np.float32)
    except QueueFull as exc:
        await pieces.aclose()
        gate.leave()
        raise queue_full(request, exc, model.name) from None
    except BaseException:
        await pieces.aclose()
        gate.leave()
        raise
    metrics.first_audio.labels(model.name).observe(time.perf_counter() - start)

    if body.response_format in ("wav", "pcm"):
        head = audio.wav_stream_header(rate) if body.response_format == "wav" else b""

        async def stream():
            made = len(first)
            try:
                yield head + audio.pcm16(first)
                async for piece in pieces:
                    made += len(piece)
                    yield audio.pcm16(piece)
            except Exception:  # the status is sent; end the stream and say why in the log
                log.exception("synthesis failed mid-stream (model %s)", model.name)
            finally:
                await pieces.aclose()
                gate.leave()
                metrics.observe_work(model.name, "tts", time.perf_counter() - start, made / rate)

        return StreamingResponse(stream(), media_type=audio.media_type(body.response_format),
                                 headers={"x-sample-rate": str(rate)})
    try:
        parts = [first] + [p async for p in pieces]
        wave = np.concatenate(parts)
        metrics.observe_work(model.name, "tts", time.perf_counter() - start, len(wave) / rate)
        data = await workers.run(audio.encode, wave, rate, body.response_format)
    finally:
        await pieces.aclose()
        gate.leave()
    return Response(data, media_type=audio.media_type(body.response_format), headers={"x-sample-rate": str(rate)})


class TimingsRequest(SpeechRequest):
    response_format: Literal["mp3", "opus", "aac", "flac", "wav", "pcm", "ogg"] = "wav"


@router.post("/v1/audio/speech/timings", dependencies=[Depends(require_json)])
async def speech_timings(request: Request, body: TimingsRequest):
    """sparsewave's extension: the speech request's audio (base64, in
    `response_format`) in JSON with where each phoneme (or word) lies in it.
    400 `timings_unsupported` for a model that does not report timings."""
    start = time.perf_counter()
    model, sentences, voice = _checked(request, body)
    workers, metrics = request.app.state.workers, request.app.state.metrics
    unsupported = ApiError(400, f"the model {model.name!r} does not report timings; models that do: "
                           f"{', '.join(sorted(n for n, ok in workers.timings.items() if ok)) or 'none known yet'}",
                           "timings_unsupported")
    if workers.timings.get(model.name) is False:
        raise unsupported
    gate = _admit(request, model)
    try:
        wave, timings = await workers.synthesize_timed(model, sentences, voice, body.speed)
    finally:
        gate.leave()
    workers.timings[model.name] = timings is not None
    if timings is None:
        raise unsupported
    rate = model.runtime.sample_rate
    metrics.observe_work(model.name, "tts", time.perf_counter() - start, len(wave) / rate)
    data = await workers.run(audio.encode, wave, rate, body.response_format)
    return {"model": model.name, "format": body.response_format, "sample_rate": rate,
            "duration": round(len(wave) / rate, 4), "audio": base64.b64encode(data).decode("ascii"),
            "timings": [{"kind": t.kind, "text": t.text, "start_s": t.start_s, "end_s": t.end_s} for t in timings]}


async def _pieces(workers, model, sentences: list[str], voice: str | None, speed: float):
    """Float32 audio pieces in order: a streaming runtime's chunks, or whole
    sentences (batched, a few in flight at once) from a feed-forward one."""
    if model.runtime.streaming:
        for sentence in sentences:
            async for chunk in workers.stream(model, sentence, voice, speed):
                yield chunk
        return
    window = max(1, workers.settings.max_batch)
    for i in range(0, len(sentences), window):
        group = [asyncio.ensure_future(workers.synthesize_all(model, s, voice, speed))
                 for s in sentences[i:i + window]]
        try:
            for task in group:
                yield await task
        finally:
            for task in group:
                task.cancel()
