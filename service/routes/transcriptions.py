"""POST /v1/audio/transcriptions in the shape of OpenAI's transcription API.

Audio is decoded from memory, downmixed and resampled to the model's rate,
then batched with whatever else arrived for the same model (Batch Dispatch).
With stream=true (a model that streams: a unidirectional Deep Speech 2) the
answer is server-sent events in OpenAI's shape: `transcript.text.delta`
events as the partial (greedy) text grows while the audio is fed through
the model in chunks, then `transcript.text.done` with the final text.
"""
from __future__ import annotations

import json
import time
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

from models.subtitles import segments_of, subtitles, verbose_json
from service import audio
from service.batching import QueueFull
from service.errors import ApiError
from service.routes.common import lookup_model, queue_full, read_upload, require_multipart

router = APIRouter()
STREAM_CHUNK_S = 0.5  # audio fed to a streaming model per step
WITHOUT_WORDS = ("json", "text")  # formats that show no word or segment times: no forced alignment for them


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
    stream: Annotated[bool, Form(description="server-sent events with partial text (streaming models only)")] = False,
):
    loaded = lookup_model(request, model, "asr")
    if language and not language.strip().lower().startswith("en"):
        raise ApiError(422, f"language {language[:32]!r}: the models here transcribe English only",
                       "unsupported_language")
    if stream:
        check_streaming(loaded, response_format)
    settings, workers, metrics = request.app.state.settings, request.app.state.workers, request.app.state.metrics
    data = await read_upload(request, file)
    rate = loaded.runtime.sample_rate
    wave, _ = await workers.run(audio.decode, data, rate, settings.max_audio_s)
    if stream:
        return streamed(request, loaded, wave)
    start = time.perf_counter()
    try:
        transcript = await workers.batched(loaded, (wave, response_format not in WITHOUT_WORDS))
    except QueueFull as exc:
        raise queue_full(request, exc, loaded.name) from None
    metrics.observe_work(loaded.name, "asr", time.perf_counter() - start, len(wave) / rate)

    text = transcript.text
    if response_format == "text":
        return PlainTextResponse(text)
    if response_format == "json":
        return {"text": text}
    if response_format in ("srt", "vtt"):
        return PlainTextResponse(subtitles(segments_of(transcript), response_format),
                                 media_type="text/vtt" if response_format == "vtt" else "text/plain")
    return JSONResponse(verbose_json(transcript, granularities))


def check_streaming(loaded, response_format: str) -> None:
    if response_format not in ("json", "text"):
        raise ApiError(422, f"stream=true answers text events; response_format {response_format!r} needs the "
                       "whole file (send stream=false)", "unsupported_response_format")
    if not getattr(loaded.runtime, "can_stream", False):
        raise ApiError(422, f"the model {loaded.name!r} cannot stream (it needs the whole utterance, e.g. a "
                       "bidirectional recognizer); use a streaming model or stream=false", "streaming_unsupported")


def sse(event: dict) -> bytes:
    return f"data: {json.dumps(event)}\n\n".encode()


def streamed(request: Request, loaded, wave) -> StreamingResponse:
    """Feed the audio through the model's stream chunk by chunk on the pool; each growth of the
    partial text is one delta event. The model's gate bounds how many streams run at once."""
    workers, metrics = request.app.state.workers, request.app.state.metrics
    rate = loaded.runtime.sample_rate
    gate = workers.gates[loaded.name]
    try:
        gate.enter()
    except QueueFull as exc:
        raise queue_full(request, exc, loaded.name) from None
    start = time.perf_counter()

    async def events():
        try:
            state = loaded.runtime.stream()
            said = ""
            step = max(1, int(STREAM_CHUNK_S * rate))
            for i in range(0, len(wave), step):
                text = await workers.run(state.feed, wave[i:i + step])
                if text.startswith(said) and len(text) > len(said):
                    yield sse({"type": "transcript.text.delta", "delta": text[len(said):]})
                    said = text
            final = await workers.run(state.finish)
            yield sse({"type": "transcript.text.done", "text": final.text})
            metrics.observe_work(loaded.name, "asr", time.perf_counter() - start, len(wave) / rate)
        finally:
            gate.leave()

    return StreamingResponse(events(), media_type="text/event-stream")
