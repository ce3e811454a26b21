"""The service's small pure functions."""
import io

import numpy as np
import soundfile as sf

from models.inference import Transcript, Word
from service import audio
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
