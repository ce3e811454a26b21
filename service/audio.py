"""Audio in and out of the service: decode uploads, encode responses.

Uploads are decoded from memory (never a path) by models.audio's capped
reader, which checks the limits before the samples are read; they are then
downmixed and resampled with soxr (models.audio.resample) to the model's
rate. Every refusal is an ApiError with a 4xx.
"""
from __future__ import annotations

import io
import struct

import numpy as np
import soundfile as sf

from models.audio import AudioError, AudioTooLong, AudioTruncated, read_audio_capped, resample
from service.errors import ApiError

MAX_CHANNELS = 64
RATES_HZ = (4_000, 384_000)
# response_format -> (soundfile format, subtype, media type); pcm is raw 16-bit LE
FORMATS = {
    "wav": ("WAV", "PCM_16", "audio/wav"),
    "flac": ("FLAC", "PCM_16", "audio/flac"),
    "opus": ("OGG", "OPUS", "audio/ogg"),
    "ogg": ("OGG", "VORBIS", "audio/ogg"),
    "mp3": ("MP3", "MPEG_LAYER_III", "audio/mpeg"),
    "pcm": (None, None, "audio/pcm"),
}
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)


def supported_formats() -> list[str]:
    """The response formats this libsndfile can write."""
    have = sf.available_formats()
    out = []
    for name, (fmt, subtype, _) in FORMATS.items():
        if fmt is None or (fmt in have and subtype in sf.available_subtypes(fmt)):
            out.append(name)
    return out


def decode(data: bytes, target_rate: int, max_audio_s: float) -> tuple[np.ndarray, dict]:
    """Encoded audio bytes -> (mono float32 at `target_rate`, facts about the input).

    models.audio.read_audio_capped reads it; its refusals become 413 (longer,
    or declaring to be longer, than `max_audio_s`) or 422 (empty, truncated,
    undecodable, non-finite, absurd channels or rate).
    """
    if not data:
        raise ApiError(422, "the uploaded file is empty (0 bytes)", "empty_file")
    try:
        samples, rate = read_audio_capped(data, max_audio_s, max_channels=MAX_CHANNELS, rates=RATES_HZ)
    except AudioTooLong as exc:
        raise ApiError(413, str(exc), "audio_too_long") from None
    except AudioTruncated as exc:
        raise ApiError(422, str(exc), "truncated_audio") from None
    except AudioError as exc:
        raise ApiError(422, str(exc).removeprefix("<bytes>: "), "invalid_audio") from None
    mono = np.clip(resample(samples, rate, target_rate), -1.0, 1.0).astype(np.float32)
    return mono, {"sample_rate": rate, "duration_s": len(samples) / rate}


def pcm16(audio: np.ndarray) -> bytes:
    """Float samples in [-1, 1] -> 16-bit little-endian PCM bytes."""
    return (np.clip(audio, -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()


def wav_stream_header(sample_rate: int) -> bytes:
    """A 16-bit mono wav header whose sizes say 'unknown' (0xFFFFFFFF), for streaming."""
    fmt = struct.pack("<HHIIHH", 1, 1, sample_rate, sample_rate * 2, 2, 16)
    return b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + \
        b"data" + struct.pack("<I", 0xFFFFFFFF)


def encode(audio: np.ndarray, sample_rate: int, response_format: str) -> bytes:
    """Whole utterance -> bytes in `response_format` (resampled where the codec demands a rate)."""
    fmt, subtype, _ = FORMATS[response_format]
    if fmt is None:
        return pcm16(audio)
    rate = sample_rate
    allowed = OPUS_RATES if subtype == "OPUS" else MP3_RATES if fmt == "MP3" else None
    if allowed and rate not in allowed:
        rate = min((r for r in allowed if r >= sample_rate), default=48000)
        audio = resample(audio, sample_rate, rate)
    if len(audio) == 0:
        audio = np.zeros(1, np.float32)  # codecs refuse empty files; a single zero sample is silence
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(audio, -1.0, 1.0), rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def media_type(response_format: str) -> str:
    return FORMATS[response_format][2]
