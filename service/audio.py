"""Audio in and out of the service: decode uploads, encode responses.

Uploads are decoded from memory with soundfile (never a path), checked
against the limits before the samples are read, downmixed and resampled
with soxr (models.audio.resample) to the model's rate. Every refusal is an ApiError with a 4xx.
"""
from __future__ import annotations

import io
import struct

import numpy as np
import soundfile as sf

from models.audio import resample
from service.errors import ApiError

MAX_CHANNELS = 64
MIN_RATE_HZ, MAX_RATE_HZ = 4_000, 384_000
UNKNOWN_SIZES = (0, 0xFFFFFFFF)  # streaming writers put these in the size fields
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


def _wav_declared(data: bytes) -> tuple[int, int, int] | None:
    """(data chunk bytes declared, bytes present, bytes per frame) of a RIFF/WAVE file, else None."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    pos, frame_bytes = 12, 0
    while pos + 8 <= len(data):
        tag, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        if tag == b"fmt " and pos + 22 <= len(data):
            frame_bytes = struct.unpack("<H", data[pos + 20:pos + 22])[0]  # block align
        if tag == b"data":
            return size, len(data) - pos - 8, frame_bytes
        pos += 8 + size + (size & 1)
    return None


def decode(data: bytes, target_rate: int, max_audio_s: float) -> tuple[np.ndarray, dict]:
    """Encoded audio bytes -> (mono float32 at `target_rate`, facts about the input).

    413 when it is (or declares to be) longer than `max_audio_s`; 422 when it
    is empty, truncated, undecodable, non-finite or has absurd channels/rate.
    """
    if not data:
        raise ApiError(422, "the uploaded file is empty (0 bytes)", "empty_file")
    wav = _wav_declared(data)
    try:
        handle = sf.SoundFile(io.BytesIO(data))
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise ApiError(422, f"could not decode the audio ({_short(exc)}); send wav, flac, ogg/opus or mp3",
                       "invalid_audio") from None
    with handle:
        rate, channels = handle.samplerate, handle.channels
        if not MIN_RATE_HZ <= rate <= MAX_RATE_HZ:
            raise ApiError(422, f"sample rate {rate} Hz is outside {MIN_RATE_HZ}..{MAX_RATE_HZ} Hz", "invalid_audio")
        if not 1 <= channels <= MAX_CHANNELS:
            raise ApiError(422, f"{channels} channels; at most {MAX_CHANNELS} are accepted", "invalid_audio")
        if wav is not None and wav[0] not in UNKNOWN_SIZES and wav[2]:
            declared_s = wav[0] / wav[2] / rate
            if declared_s > max_audio_s:
                raise ApiError(413, f"the wav header declares {declared_s:.0f} s of audio; the limit is "
                               f"{max_audio_s:g} s", "audio_too_long")
            if wav[1] < wav[0]:
                raise ApiError(422, f"the wav file is truncated: its header declares {wav[0]} bytes of samples, "
                               f"{wav[1]} are present", "truncated_audio")
        if handle.frames > 0 and handle.frames / rate > max_audio_s and wav is None:
            raise ApiError(413, f"{handle.frames / rate:.0f} s of audio; the limit is {max_audio_s:g} s",
                           "audio_too_long")
        limit = int(max_audio_s * rate) + 1
        try:
            samples = handle.read(frames=limit, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise ApiError(422, f"the audio is truncated or corrupt ({_short(exc)})", "invalid_audio") from None
    if len(samples) >= limit:
        raise ApiError(413, f"more than {max_audio_s:g} s of audio; the limit is {max_audio_s:g} s",
                       "audio_too_long")
    if len(samples) == 0:
        raise ApiError(422, "the audio holds no samples", "empty_audio")
    if not np.isfinite(samples).all():
        raise ApiError(422, "the audio holds NaN or infinite samples", "invalid_audio")
    mono = samples.mean(axis=1) if channels > 1 else samples[:, 0]
    mono = resample(mono, rate, target_rate)
    mono = np.clip(mono, -1.0, 1.0).astype(np.float32)
    info = {"sample_rate": rate, "channels": channels, "duration_s": len(samples) / rate}
    return mono, info


def _short(exc: Exception) -> str:
    text = str(exc).split(": ", 1)[-1] if "BytesIO" in str(exc) else str(exc)
    return text.strip().splitlines()[0][:200] if text.strip() else type(exc).__name__


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
