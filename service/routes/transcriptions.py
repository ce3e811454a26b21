"""POST /v1/audio/transcriptions in the shape of OpenAI's transcription API.

Audio is decoded from memory, downmixed and resampled to the model's rate,
then batched with whatever else arrived for the same model (Batch Dispatch).
"""
from __future__ import annotations

import time
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse

from models.subtitles import segments_of, subtitles, verbose_json
from service import audio
from service.batching import QueueFull
from service.errors import ApiError
from service.routes.common import lookup_model, queue_full, read_upload, require_multipart

router = APIRouter()


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
    if response_format in ("srt", "vtt"):
        return PlainTextResponse(subtitles(segments_of(transcript), response_format),
                                 media_type="text/vtt" if response_format == "vtt" else "text/plain")
    return JSONResponse(verbose_json(transcript, granularities))
