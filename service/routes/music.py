"""POST /v1/music/transcriptions: piano audio in, MIDI or JSON notes out."""
from __future__ import annotations

import io
import time
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import Response

from models.midi import notes_to_midi
from service import audio
from service.batching import QueueFull
from service.routes.common import lookup_model, queue_full, read_upload, require_multipart

router = APIRouter()


def midi_bytes(notes) -> bytes:
    """Notes -> a standard MIDI file, written by models.midi (one acoustic grand track)."""
    buffer = io.BytesIO()
    notes_to_midi(list(notes)).write(buffer)
    return buffer.getvalue()


@router.post("/v1/music/transcriptions", dependencies=[Depends(require_multipart)],
             responses={200: {"content": {"application/json": {}, "audio/midi": {}},
                              "description": "notes as JSON, or a MIDI file"}})
async def music_transcriptions(
    request: Request,
    file: Annotated[UploadFile, File(description="piano audio: wav, flac, ogg/opus or mp3")],
    model: Annotated[str, Form(max_length=200)],
    response_format: Annotated[Literal["json", "midi"], Form()] = "json",
):
    loaded = lookup_model(request, model, "piano")
    settings, workers, metrics = request.app.state.settings, request.app.state.workers, request.app.state.metrics
    data = await read_upload(request, file)
    rate = loaded.runtime.sample_rate
    wave, _ = await workers.run(audio.decode, data, rate, settings.max_audio_s)
    start = time.perf_counter()
    try:
        notes = await workers.batched(loaded, wave)
    except QueueFull as exc:
        raise queue_full(request, exc, loaded.name) from None
    metrics.observe_work(loaded.name, "piano", time.perf_counter() - start, len(wave) / rate)
    if response_format == "midi":
        body = await workers.run(midi_bytes, notes)
        return Response(body, media_type="audio/midi",
                        headers={"content-disposition": 'attachment; filename="transcription.mid"'})
    return {"model": loaded.name, "duration": round(len(wave) / rate, 3),
            "notes": [{"pitch": int(n.pitch), "onset": round(float(n.onset_s), 4),
                       "offset": round(float(n.offset_s), 4), "velocity": int(n.velocity)} for n in notes]}
