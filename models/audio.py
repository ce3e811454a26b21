"""Audio I/O through soundfile, resampling through soxr, and simple level tools.

Audio arrays are float32. Mono audio is (N,); multi-channel audio is (C, N)
(channels first, as torchaudio), never soundfile's (N, C).
"""
from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

WRITE_FORMATS = {".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_16"), ".ogg": ("OGG", "VORBIS"),
                 ".mp3": ("MP3", "MPEG_LAYER_III")}


class AudioError(ValueError):
    """Audio that cannot be used: unreadable, empty or not finite. The message says which."""


class AudioTooLarge(AudioError):
    """More encoded bytes than `read_audio_capped`'s byte cap."""


class AudioTooLong(AudioError):
    """Longer than `read_audio_capped`'s duration cap, or a wav header declaring so."""


class AudioTruncated(AudioError):
    """A wav file holding fewer sample bytes than its header declares."""


WAV_UNKNOWN_SIZES = (0, 0xFFFFFFFF)  # streaming writers put these in the size fields


def _check(audio: np.ndarray, name: str) -> np.ndarray:
    if audio.size == 0 or audio.shape[-1] == 0:
        raise AudioError(f"{name}: the audio is empty (0 samples)")
    if not np.isfinite(audio).all():
        raise AudioError(f"{name}: the audio holds NaN or infinite samples")
    return audio


def read_audio(source, mono: bool = True) -> tuple[np.ndarray, int]:
    """Read a file path, bytes or file object -> (audio, sample_rate).

    audio: (N,) float32 if `mono` (channels averaged), else (C, N) float32
    (C = 1 for mono files). Raises AudioError for unreadable, empty or NaN input.
    """
    name = str(source) if isinstance(source, (str, Path)) else "<bytes>"
    if isinstance(source, (bytes, bytearray, memoryview)):
        source = io.BytesIO(bytes(source))
    elif isinstance(source, (str, Path)) and not Path(source).is_file():
        raise AudioError(f"{name}: cannot read (no such file)")
    try:
        data, sample_rate = sf.read(source, dtype="float32", always_2d=True)  # (N, C)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioError(f"{name}: cannot decode audio ({exc}); use wav, flac, ogg or mp3") from exc
    audio = data.mean(axis=1) if mono else np.ascontiguousarray(data.T)
    return _check(audio.astype(np.float32, copy=False), name), int(sample_rate)


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


def read_audio_capped(data: bytes, max_seconds: float, max_bytes: int | None = None, mono: bool = True,
                      max_channels: int = 64, rates: tuple[int, int] = (4_000, 384_000)) -> tuple[np.ndarray, int]:
    """Encoded bytes from an untrusted source -> (audio, sample_rate), as `read_audio`,
    reading no more than the caps allow: the header is checked before any sample is read.

    AudioTooLarge: more than `max_bytes` bytes. AudioTooLong: more than
    `max_seconds` of audio, or a wav header declaring more. AudioTruncated: a
    wav file shorter than its header declares (libsndfile would read what is
    there; wav sizes that say "unknown", 0 or 0xFFFFFFFF, are read to the end).
    AudioError: empty, undecodable, NaN/inf samples, channels outside
    1..max_channels or a rate outside `rates` (which bound the memory a header can ask for).
    """
    if max_bytes is not None and len(data) > max_bytes:
        raise AudioTooLarge(f"{len(data)} bytes of audio; the limit is {max_bytes}")
    if not data:
        raise AudioError("the audio is empty (0 bytes)")
    wav = _wav_declared(data)
    try:
        handle = sf.SoundFile(io.BytesIO(data))
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioError(f"cannot decode audio ({_reason(exc)}); use wav, flac, ogg/opus or mp3") from None
    with handle:
        rate, channels = handle.samplerate, handle.channels
        if not rates[0] <= rate <= rates[1]:
            raise AudioError(f"sample rate {rate} Hz is outside {rates[0]}..{rates[1]} Hz")
        if not 1 <= channels <= max_channels:
            raise AudioError(f"{channels} channels; at most {max_channels} are accepted")
        if wav is not None and wav[0] not in WAV_UNKNOWN_SIZES and wav[2]:
            declared_s = wav[0] / wav[2] / rate
            if declared_s > max_seconds:
                raise AudioTooLong(f"the wav header declares {declared_s:.0f} s of audio; the limit is "
                                   f"{max_seconds:g} s")
            if wav[1] < wav[0]:
                raise AudioTruncated(f"the wav file is truncated: its header declares {wav[0]} bytes of samples, "
                                     f"{wav[1]} are present")
        if wav is None and handle.frames > 0 and handle.frames / rate > max_seconds:
            raise AudioTooLong(f"{handle.frames / rate:.0f} s of audio; the limit is {max_seconds:g} s")
        limit = int(max_seconds * rate) + 1  # headers of other formats may lie: read one sample past the cap
        try:
            samples = handle.read(frames=limit, dtype="float32", always_2d=True)  # (N, C)
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise AudioError(f"the audio is truncated or corrupt ({_reason(exc)})") from None
    if len(samples) >= limit:
        raise AudioTooLong(f"more than {max_seconds:g} s of audio; the limit is {max_seconds:g} s")
    audio = samples.mean(axis=1) if mono else np.ascontiguousarray(samples.T)
    return _check(audio.astype(np.float32, copy=False), "<bytes>"), int(rate)


def _reason(exc: Exception) -> str:
    """libsndfile's message without the BytesIO repr it names the file by."""
    text = str(exc).split(": ", 1)[-1] if "BytesIO" in str(exc) else str(exc)
    return text.strip().splitlines()[0][:200] if text.strip() else type(exc).__name__


def write_audio(path, audio: np.ndarray, sample_rate: int, subtype: str | None = None) -> Path:
    """Write (N,) or (C, N) float audio; the format follows the suffix (wav, flac, ogg, mp3).

    Samples are clipped to [-1, 1] before integer encoding so that loud input
    saturates instead of wrapping around.
    """
    path = Path(path)
    if path.suffix.lower() not in WRITE_FORMATS:
        raise AudioError(f"{path}: unknown audio format {path.suffix!r}; use one of {sorted(WRITE_FORMATS)}")
    fmt, default_subtype = WRITE_FORMATS[path.suffix.lower()]
    audio = _check(np.asarray(audio, dtype=np.float32), str(path))
    data = np.clip(audio if audio.ndim == 1 else audio.T, -1.0, 1.0)  # soundfile wants (N, C)
    sf.write(str(path), data, int(sample_rate), format=fmt, subtype=subtype or default_subtype)
    return path


def encode_audio(audio: np.ndarray, sample_rate: int, fmt: str = "wav") -> bytes:
    """(N,) or (C, N) float audio -> encoded bytes of a wav, flac or ogg file."""
    suffix = "." + fmt.lower()
    if suffix not in WRITE_FORMATS:
        raise AudioError(f"unknown audio format {fmt!r}")
    fmt_name, subtype = WRITE_FORMATS[suffix]
    audio = _check(np.asarray(audio, dtype=np.float32), "<audio>")
    buf = io.BytesIO()
    sf.write(buf, np.clip(audio if audio.ndim == 1 else audio.T, -1, 1), int(sample_rate), format=fmt_name,
             subtype=subtype)
    return buf.getvalue()


def resample(audio: np.ndarray, orig_sr: int, target_sr: int, quality: str = "HQ") -> np.ndarray:
    """Resample (N,) or (C, N) float32 audio with soxr; returns the same layout."""
    audio = np.asarray(audio, dtype=np.float32)
    if orig_sr == target_sr:
        return audio
    if audio.ndim == 1:
        return soxr.resample(audio, orig_sr, target_sr, quality=quality).astype(np.float32)
    return np.ascontiguousarray(soxr.resample(audio.T, orig_sr, target_sr, quality=quality).T, dtype=np.float32)


def to_mono(audio: np.ndarray) -> np.ndarray:
    """(C, N) or (N,) -> (N,) by averaging channels."""
    return audio if audio.ndim == 1 else audio.mean(axis=0)


def trim_silence(audio: np.ndarray, sample_rate: int, threshold_db: float = -50.0, pad_ms: float = 50.0,
                 frame_ms: float = 10.0) -> tuple[int, int]:
    """Bounds (start, end) of the non-silent part of (N,) audio, with `pad_ms` kept on each side.

    A 10 ms frame is silent when its RMS is `threshold_db` below the loudest
    frame. Returns (0, 0) for all-silent audio.
    """
    frame = max(1, int(sample_rate * frame_ms / 1000))
    n = len(audio) // frame
    if n == 0:
        return 0, len(audio)
    rms = np.sqrt(np.mean(audio[: n * frame].reshape(n, frame) ** 2, axis=1) + 1e-20)
    db = 20 * np.log10(rms / rms.max())
    loud = np.flatnonzero(db > threshold_db) if rms.max() > 1e-6 else np.array([], dtype=int)
    if loud.size == 0:
        return 0, 0
    pad = int(sample_rate * pad_ms / 1000)
    return max(0, loud[0] * frame - pad), min(len(audio), (loud[-1] + 1) * frame + pad)


def normalize_loudness(audio: np.ndarray, target_dbfs: float = -20.0, peak: float = 0.95) -> np.ndarray:
    """Scale (N,) audio so that the RMS of its louder half of 10 ms frames is `target_dbfs`.

    Measuring only the louder frames keeps pauses from inflating the gain; the
    gain is then lowered if needed so that no sample exceeds `peak`.
    """
    frame = 160
    n = max(1, len(audio) // frame)
    energy = np.mean(np.resize(audio[: n * frame], (n, frame)) ** 2, axis=1)
    active = np.sort(energy)[n // 2:]
    rms = float(np.sqrt(active.mean())) if active.size else 0.0
    if rms < 1e-8:
        return audio.astype(np.float32)
    gain = 10 ** (target_dbfs / 20) / rms
    max_abs = float(np.abs(audio).max())
    gain = min(gain, peak / max_abs)
    return (audio * gain).astype(np.float32)
