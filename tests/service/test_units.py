"""The service's small pure functions."""
import io

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient

from models.audio import AudioError, AudioTooLarge, AudioTooLong, AudioTruncated, read_audio_capped
from models.inference import Transcript, Word
from service import audio
from service.app import create_app
from service.settings import Settings
from service.routes.speech import split_sentences
from service.routes.transcriptions import segments_of, subtitles


def test_sentences_split_and_long_ones_are_cut():
    assert split_sentences("One. Two!  Three?\n\nFour") == ["One.", "Two!", "Three?", "Four"]
    assert split_sentences("? Hello there.") == ["Hello there."]
    assert split_sentences("?!") == ["?!"]
    long = ", ".join([" ".join(f"w{i}{j}" for j in range(10)) for i in range(10)])
    parts = split_sentences(long, max_chars=120)
    assert len(parts) > 1 and all(len(p) <= 120 for p in parts)
    assert " ".join(parts).replace(",", " ").split() == long.replace(",", " ").split()  # nothing lost


def test_segments_break_at_pauses_and_subtitles_format_times():
    words = [Word("a", 0.0, 0.5), Word("b", 0.6, 1.0), Word("c", 3.0, 3.4)]
    segments = segments_of(Transcript("a b c", words, 4.0))
    assert [(s["start"], s["end"], s["text"]) for s in segments] == [(0.0, 1.0, "a b"), (3.0, 3.4, "c")]
    assert subtitles(segments, "srt").startswith("1\n00:00:00,000 --> 00:00:01,000\na b\n\n2\n00:00:03,000")
    assert subtitles(segments, "vtt").startswith("WEBVTT\n\n00:00:00.000 --> 00:00:01.000\na b\n")
    assert segments_of(Transcript("no words", [], 2.0))[0]["end"] == 2.0


def test_streamed_wav_header_reads_back():
    wave = np.sin(np.arange(4000) / 7).astype(np.float32) * 0.5
    data = audio.wav_stream_header(16000) + audio.pcm16(wave[:1000]) + audio.pcm16(wave[1000:])
    back, rate = sf.read(io.BytesIO(data), dtype="float32")
    assert rate == 16000 and np.abs(back - wave).max() < 1e-4
    decoded, _ = audio.decode(data, 16000, 60.0)  # its "unknown" sizes are not "truncated"
    assert len(decoded) == 4000


def test_encode_resamples_where_the_codec_demands():
    wave = np.zeros(22050, np.float32)
    for fmt in ("opus", "mp3", "flac", "wav"):
        back, rate = sf.read(io.BytesIO(audio.encode(wave, 22050, fmt)))
        assert abs(len(back) / rate - 1.0) < 0.1, fmt
    assert len(audio.encode(np.zeros(0, np.float32), 16000, "pcm")) == 0


def test_capped_reader_refuses_before_reading_and_reads_what_fits():
    wave = np.sin(np.arange(16000) / 7).astype(np.float32) * 0.5
    buffer = io.BytesIO()
    sf.write(buffer, np.stack([wave, wave], axis=1), 16000, format="WAV", subtype="PCM_16")
    data = buffer.getvalue()
    back, rate = read_audio_capped(data, 2.0)
    assert rate == 16000 and back.shape == (16000,) and np.abs(back - wave).max() < 1e-4
    assert read_audio_capped(data, 2.0, mono=False)[0].shape == (2, 16000)
    with pytest.raises(AudioTooLong):
        read_audio_capped(data, 0.5)
    with pytest.raises(AudioTooLarge):
        read_audio_capped(data, 2.0, max_bytes=1000)
    with pytest.raises(AudioTruncated):
        read_audio_capped(data[:20000], 2.0)
    with pytest.raises(AudioError, match="channels"):
        read_audio_capped(data, 2.0, max_channels=1)


def test_timings_are_refused_for_a_runtime_that_does_not_report_them(tiny_dir):
    """A wrapper around the real GAN-TTS runtime that passes its audio on but
    not its timings: the service answers 400 timings_unsupported (then up
    front), while the same model's speech endpoint still serves."""
    class NoTimings:
        def __init__(self, inner):
            self.inner, self.sample_rate, self.voices, self.streaming = inner, inner.sample_rate, inner.voices, False

        def synthesize(self, text, voice=None, speed=1.0):
            yield from self.inner.synthesize(text, voice, speed)

    with TestClient(create_app(Settings(models_dir=tiny_dir, load_defaults=False))) as client:
        model = client.app.state.registry.models["gan-tts"]
        model.runtime = NoTimings(model.runtime)
        for _ in range(2):
            resp = client.post("/v1/audio/speech/timings", json={"model": "gan-tts", "input": "hello there"})
            assert resp.status_code == 400 and resp.json()["error"]["code"] == "timings_unsupported"
        assert client.post("/v1/audio/speech", json={"model": "gan-tts", "input": "hello there"}).status_code == 200


def test_synthesis_batching_is_opt_in(monkeypatch):
    monkeypatch.delenv("SPARSEWAVE_BATCH_SYNTHESIS", raising=False)
    assert Settings.from_env().batch_synthesis is False
    monkeypatch.setenv("SPARSEWAVE_BATCH_SYNTHESIS", "1")
    assert Settings.from_env().batch_synthesis is True
