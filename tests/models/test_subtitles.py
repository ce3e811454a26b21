"""Transcript output formats shared by the service and `sparsewave transcribe`."""
import json

import pytest

from models.inference import Transcript, Word
from models.subtitles import FORMATS, format_transcript, segments_of, subtitles, timestamp, verbose_json

WORDS = [Word("hello", 0.1, 0.5, 0.9), Word("there", 0.6, 1.0, 0.8), Word("friend", 3005.25, 3005.5, 0.7)]
TRANSCRIPT = Transcript("hello there friend", WORDS, 3006.0)


def test_timestamps_and_subtitle_documents():
    assert timestamp(3725.0456, ",") == "01:02:05,046" and timestamp(-1.0, ".") == "00:00:00.000"
    segments = segments_of(TRANSCRIPT)
    assert [(s["start"], s["end"], s["text"]) for s in segments] == [(0.1, 1.0, "hello there"),
                                                                      (3005.25, 3005.5, "friend")]
    assert format_transcript(TRANSCRIPT, "srt") == subtitles(segments, "srt") == (
        "1\n00:00:00,100 --> 00:00:01,000\nhello there\n\n2\n00:50:05,250 --> 00:50:05,500\nfriend\n\n")
    assert format_transcript(TRANSCRIPT, "vtt") == (
        "WEBVTT\n\n00:00:00.100 --> 00:00:01.000\nhello there\n\n00:50:05.250 --> 00:50:05.500\nfriend\n\n")
    with pytest.raises(ValueError):
        subtitles(segments, "ass")


def test_json_text_and_verbose_json():
    assert format_transcript(TRANSCRIPT, "text") == "hello there friend\n"
    plain = json.loads(format_transcript(TRANSCRIPT, "json"))
    assert plain["text"] == TRANSCRIPT.text and plain["duration_s"] == 3006.0
    assert plain["words"][1] == {"word": "there", "start_s": 0.6, "end_s": 1.0, "confidence": 0.8}
    verbose = json.loads(format_transcript(TRANSCRIPT, "verbose_json"))
    assert verbose["duration"] == 3006.0 and len(verbose["segments"]) == 2
    assert [w["word"] for w in verbose["words"]] == ["hello", "there", "friend"]
    assert "words" not in verbose_json(TRANSCRIPT, None) and "segments" not in verbose_json(TRANSCRIPT, ["word"])
    with pytest.raises(ValueError):
        format_transcript(TRANSCRIPT, "xml")
    assert set(FORMATS) == {"json", "text", "verbose_json", "srt", "vtt"}


def test_no_words_gives_one_segment_over_the_audio():
    empty = Transcript("mumble", [], 2.5)
    assert format_transcript(empty, "srt") == "1\n00:00:00,000 --> 00:00:02,500\nmumble\n\n"
    assert format_transcript(Transcript("", [], 2.5), "vtt") == "WEBVTT\n\n"
