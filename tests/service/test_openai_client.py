"""The endpoints through the official openai client against a real uvicorn.

Models: a tiny untrained Deep Speech 2 bundle exported through its objective
("ds2": formats, word timings, batching), and the test-only runtimes of
tests/helpers/tiny_service_models.py (tones TTS, tone ASR, tiny piano),
whose ASR reads back what the TTS says, so content can be checked.
"""
import concurrent.futures
import io
import re
import time

import httpx
import numpy as np
import openai
import pretty_midi
import pytest
import soundfile as sf
from service_audio import encoded, speech, tone
from live_server import API_KEY


@pytest.fixture()
def client(server):
    return openai.OpenAI(base_url=f"{server}/v1", api_key=API_KEY, max_retries=0, timeout=60)


def test_models_are_listed_with_their_facts(client):
    models = {m.id: m for m in client.models.list().data}
    assert {"tones", "tones-ff", "tone-asr", "piano", "ds2"} <= set(models)
    assert models["ds2"].model_dump()["model_type"] == "deepspeech2"
    tones = models["tones"].model_dump()
    assert tones["kind"] == "tts" and tones["sample_rate"] == 16000 and tones["voices"] == ["low", "soft"]
    assert tones["streaming"] is True and tones["licence"] == "test-only (CC0)"
    assert client.models.retrieve("tone-asr").model_dump()["kind"] == "asr"


def test_speech_then_transcription_round_trip(client):
    wav = client.audio.speech.create(model="tones", voice="low", input="Hello world. Sparse waves!",
                                     response_format="wav").content
    audio, rate = sf.read(io.BytesIO(wav), dtype="float32")
    assert rate == 16000 and len(audio) > 0.5 * rate and np.abs(audio).max() > 0.1
    text = client.audio.transcriptions.create(model="tone-asr", file=("speech.wav", wav), response_format="text")
    assert text.strip() == "hello world sparse waves"
    assert client.audio.transcriptions.create(model="tone-asr", file=("speech.wav", wav)).text == \
        "hello world sparse waves"


@pytest.mark.parametrize("model", ["tones", "tones-ff"])
def test_every_response_format_decodes_to_the_same_speech(client, model):
    wav = client.audio.speech.create(model=model, voice="soft", input="one two", response_format="wav").content
    reference, _ = sf.read(io.BytesIO(wav), dtype="int16")
    pcm = client.audio.speech.create(model=model, voice="soft", input="one two", response_format="pcm").content
    assert np.array_equal(np.frombuffer(pcm, "<i2"), reference)
    flac = client.audio.speech.create(model=model, voice="soft", input="one two", response_format="flac").content
    assert np.abs(sf.read(io.BytesIO(flac), dtype="int16")[0].astype(int) - reference).max() <= 1
    for fmt in ("opus", "mp3"):
        data = client.audio.speech.create(model=model, voice="soft", input="one two", response_format=fmt).content
        decoded, rate = sf.read(io.BytesIO(data), dtype="float32")
        assert abs(len(decoded) / rate - len(reference) / 16000) < 0.15  # codec padding only
        heard = client.audio.transcriptions.create(model="tone-asr", file=(f"x.{fmt}", data), response_format="text")
        assert heard.strip() == "one two"


def test_speed_and_voice_change_the_audio(client):
    def make(**kw):
        data = client.audio.speech.create(model="tones", input="speed", response_format="wav", **kw).content
        return sf.read(io.BytesIO(data), dtype="float32")[0]

    normal, fast, soft = make(voice="low"), make(voice="low", speed=2.0), make(voice="soft")
    assert abs(len(fast) / len(normal) - 0.5) < 0.05
    assert np.abs(soft).max() < np.abs(normal).max()


def test_speech_streams_its_first_bytes_before_the_utterance_is_done(client, server):
    text = " ".join(["streaming words arrive early"] * 40)
    with client.audio.speech.with_streaming_response.create(model="tones", voice="low", input=text,
                                                            response_format="pcm") as response:
        assert response.headers.get("transfer-encoding") == "chunked"
        start, first, n_bytes = time.perf_counter(), None, 0
        for chunk in response.iter_bytes():
            first = first or time.perf_counter() - start
            n_bytes += len(chunk)
        total = time.perf_counter() - start
    assert n_bytes > 16000 * 2 * 10  # > 10 s of 16-bit audio
    assert first < 0.5 * total, (first, total)


def test_transcription_formats_and_word_timings(client):
    wav = encoded(speech("the quick brown fox"))
    verbose = client.audio.transcriptions.create(model="tone-asr", file=("a.wav", wav), response_format="verbose_json",
                                                 timestamp_granularities=["word", "segment"], language="en",
                                                 temperature=0.0)
    assert verbose.text == "the quick brown fox" and verbose.language == "english"
    assert [w.word for w in verbose.words] == ["the", "quick", "brown", "fox"]
    starts = [w.start for w in verbose.words]
    assert starts == sorted(starts) and all(w.end > w.start for w in verbose.words)
    assert verbose.words[-1].end <= verbose.duration + 1e-6
    assert verbose.segments and verbose.segments[0].text == "the quick brown fox"
    srt = client.audio.transcriptions.create(model="tone-asr", file=("a.wav", wav), response_format="srt")
    assert re.match(r"1\n00:00:00,000 --> 00:00:0\d,\d{3}\nthe quick brown fox\n", srt)
    vtt = client.audio.transcriptions.create(model="tone-asr", file=("a.wav", wav), response_format="vtt")
    assert vtt.startswith("WEBVTT\n\n00:00:00.000 --> ") and "the quick brown fox" in vtt


def test_concurrent_transcriptions_are_batched(client, server):
    clips = [encoded(speech(w)) for w in ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"]]

    def one(i):
        return client.audio.transcriptions.create(model="tone-asr", file=("a.wav", clips[i % 6]),
                                                  response_format="text").strip()

    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        heard = list(pool.map(one, range(24)))
    assert heard == [["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"][i % 6] for i in range(24)]
    metrics = httpx.get(f"{server}/metrics").text
    count = float(re.search(r'sparsewave_batch_size_count\{model="tone-asr"\} (\S+)', metrics).group(1))
    assert count < 24  # some requests shared a batch
    assert 'sparsewave_real_time_factor_count{model="tone-asr",task="asr"}' in metrics


def test_feed_forward_synthesis_is_batched(client, server):
    texts = [f"batch number {w}" for w in ["one", "two", "three", "four", "five", "six", "seven", "eight"]]

    def one(text):
        data = client.audio.speech.create(model="tones-ff", voice="low", input=text, response_format="wav").content
        return client.audio.transcriptions.create(model="tone-asr", file=("a.wav", data), response_format="text")

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        assert [t.strip() for t in pool.map(one, texts)] == texts
    metrics = httpx.get(f"{server}/metrics").text
    count = float(re.search(r'sparsewave_batch_size_count\{model="tones-ff"\} (\S+)', metrics).group(1))
    total = float(re.search(r'sparsewave_batch_size_sum\{model="tones-ff"\} (\S+)', metrics).group(1))
    assert total / count > 1.0


def test_piano_transcription_as_json_and_midi(http):
    clip = np.concatenate([tone([69], 0.5), tone([60, 64, 67], 0.5)])
    resp = http.post("/v1/music/transcriptions", files={"file": ("p.wav", encoded(clip))}, data={"model": "piano"})
    assert resp.status_code == 200
    notes = resp.json()["notes"]
    assert {n["pitch"] for n in notes if n["onset"] < 0.2} == {69}
    assert {n["pitch"] for n in notes if n["onset"] > 0.4} == {60, 64, 67}
    midi = http.post("/v1/music/transcriptions", files={"file": ("p.wav", encoded(clip))},
                     data={"model": "piano", "response_format": "midi"})
    assert midi.headers["content-type"] == "audio/midi"
    parsed = pretty_midi.PrettyMIDI(io.BytesIO(midi.content))
    assert sorted(n.pitch for n in parsed.instruments[0].notes) == sorted(n["pitch"] for n in notes)


def test_health_ready_metrics_and_request_ids(http):
    assert http.get("/healthz").json()["status"] == "ok"
    ready = http.get("/readyz").json()
    assert ready["ready"] is True and ready["failed"] == {}
    resp = http.get("/v1/models", headers={"x-request-id": "abc-123"})
    assert resp.headers["x-request-id"] == "abc-123"
    text = http.get("/metrics").text
    for name in ("sparsewave_requests_total", "sparsewave_request_seconds", "sparsewave_queue_depth",
                 "sparsewave_batch_size", "sparsewave_real_time_factor"):
        assert name in text


def test_deep_speech_2_bundle_serves_every_format_and_batches(client, server):
    clips = [encoded(speech(w)) for w in ["one", "two words", "three more words"]]
    verbose = client.audio.transcriptions.create(model="ds2", file=("a.wav", clips[2]), response_format="verbose_json",
                                                 timestamp_granularities=["word"])
    assert isinstance(verbose.text, str) and abs(verbose.duration - len(speech("three more words")) / 16000) < 1e-3
    ends = [w.end for w in verbose.words]
    assert ends == sorted(ends) and all(0 <= w.start <= w.end <= verbose.duration + 1e-6 for w in verbose.words)
    assert " ".join(w.word for w in verbose.words) == verbose.text.strip()
    plain = client.audio.transcriptions.create(model="ds2", file=("a.wav", clips[2]), response_format="text")
    assert plain.strip() == verbose.text.strip()  # deterministic, alone or batched
    for fmt in ("srt", "vtt", "json"):
        assert client.audio.transcriptions.create(model="ds2", file=("a.wav", clips[0]), response_format=fmt)

    def one(i):
        return client.audio.transcriptions.create(model="ds2", file=("a.wav", clips[i % 3]), response_format="text")

    def batches():
        metrics = httpx.get(f"{server}/metrics").text
        return float(re.search(r'sparsewave_batch_size_count\{model="ds2"\} (\S+)', metrics).group(1))

    alone = [one(i) for i in range(3)]
    before = batches()
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        together = list(pool.map(one, range(24)))
    assert together == [alone[i % 3] for i in range(24)]  # batching changes no result
    assert batches() - before < 24  # some of the 24 requests shared a batch
