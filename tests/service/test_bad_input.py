"""Bad input gets its 4xx and a JSON error, and the server keeps serving.

Decisions (docs/service.md): 8 channels are downmixed and 8 kHz / 96 kHz
input is resampled, then served (200); a wav header declaring more than the
duration limit is refused (413) without reading on; a wav file shorter than
its header says is truncated (422). Models: the tiny real bundles
(tests/helpers/tiny_service_models.py); deepspeech2-default where the
content of downmixed or resampled audio is checked.
"""
import asyncio
import concurrent.futures
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import openai
import pytest
from service_audio import RATE, encoded, speech, wer
from live_server import API_KEY, TEST_LIMITS, live_server

from service.batching import Batcher
from service.settings import Settings

SAY = "check this"
HEARD = "please call me back in the morning"  # deepspeech2-default: WER 0 on espeak-ng en-us (measured)


def post_speech(http, **fields):
    body = {"model": "gan-tts", "input": SAY, "voice": "mb-us1", "response_format": "wav", **fields}
    return http.post("/v1/audio/speech", json=body)


def post_audio(http, data: bytes, model="ds2", name="a.wav"):
    return http.post("/v1/audio/transcriptions", files={"file": (name, data)}, data={"model": model,
                                                                                   "response_format": "text"})


def assert_error(resp, status, code=None):
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert error["message"] and error["type"]
    if code:
        assert error["code"] == code


def assert_still_serving(http):
    assert post_speech(http).status_code == 200
    resp = post_audio(http, encoded(speech(SAY)))
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")


@pytest.mark.parametrize("text, status, code", [
    ("", 422, "empty_input"), ("   \n\t  ", 422, "empty_input"), ("x" * 1_000_000, 413, "text_too_long"),
    ("a" * (TEST_LIMITS["max_text_chars"] + 1), 413, "text_too_long"),
])
def test_bad_text(http, text, status, code):
    assert_error(post_speech(http, input=text), status, code)
    assert_still_serving(http)


@pytest.mark.parametrize("fields, status", [
    ({"speed": 0.0}, 422), ({"speed": 100}, 422), ({"voice": "nobody"}, 422), ({"response_format": "aac"}, 422),
    ({"stream_format": "sse"}, 422), ({"model": "no-such-model"}, 404), ({"model": "ds2"}, 400),
    ({"model": "../../etc/passwd"}, 404), ({"input": 42}, 422),
])
def test_bad_speech_fields(http, fields, status):
    assert_error(post_speech(http, **fields), status)


def test_non_utf8_and_malformed_bodies(http):
    bad = b'{"model": "gan-tts", "input": "\xff\xfe\xfd", "voice": "mb-us1"}'
    assert_error(http.post("/v1/audio/speech", content=bad, headers={"content-type": "application/json"}), 400,
                 "invalid_body")
    assert_error(http.post("/v1/audio/speech", content=b'{"model": "gan-tts", "inp',
                           headers={"content-type": "application/json"}), 422)
    lone = b'{"model": "gan-tts", "input": "\\ud800 check this", "voice": "mb-us1", "response_format": "pcm"}'
    assert http.post("/v1/audio/speech", content=lone, headers={"content-type": "application/json"}).status_code == 200
    assert_still_serving(http)


def test_wrong_content_types(http):
    assert_error(http.post("/v1/audio/speech", data={"model": "gan-tts", "input": SAY}), 415, "unsupported_media_type")
    assert_error(http.post("/v1/audio/speech", content=b"check this", headers={"content-type": "text/plain"}), 415)
    assert_error(http.post("/v1/audio/transcriptions", json={"model": "ds2"}), 415, "unsupported_media_type")
    assert_error(http.post("/v1/music/transcriptions", content=b"RIFF", headers={"content-type": "audio/wav"}), 415)
    assert_error(http.post("/v1/audio/transcriptions", files={"other": ("a.wav", b"x")}, data={"model": "ds2"}),
                 422)
    assert_still_serving(http)


def _wav_claiming_hours(hours: float) -> bytes:
    declared = int(hours * 3600 * RATE * 2)
    fmt = struct.pack("<HHIIHH", 1, 1, RATE, RATE * 2, 2, 16)
    samples = (speech(SAY) * 32767).astype("<i2").tobytes()
    return b"RIFF" + struct.pack("<I", declared + 36) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + \
        b"data" + struct.pack("<I", declared) + samples


def _flac(wave, rate=RATE):
    return encoded(wave, rate, "FLAC", "PCM_16")


BAD_AUDIO = {
    "zero bytes": (b"", 422, "empty_file"),
    "truncated wav": (encoded(speech(SAY))[:5000], 422, "truncated_audio"),
    "truncated flac": (_flac(speech(SAY))[: len(_flac(speech(SAY))) // 2], 422, "invalid_audio"),
    "wav header only": (encoded(speech(SAY))[:44], 422, None),
    "corrupt": (b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk" + bytes(range(256)) * 20, 422, "invalid_audio"),
    "not audio": (b"%PDF-1.4 " + b"\x00" * 1000, 422, "invalid_audio"),
    "header claims hours": (_wav_claiming_hours(3.0), 413, "audio_too_long"),
    "nan samples": (encoded(np.where(np.arange(RATE) % 100 == 0, np.nan, 0.1).astype(np.float32), RATE, "WAV",
                            "FLOAT"), 422, "invalid_audio"),
    "too long": (_flac(np.zeros(int(RATE * (TEST_LIMITS["max_audio_s"] + 5)), np.float32)), 413, "audio_too_long"),
}


@pytest.mark.parametrize("case", sorted(BAD_AUDIO))
def test_bad_audio(http, case):
    data, status, code = BAD_AUDIO[case]
    assert_error(post_audio(http, data), status, code)
    assert_error(http.post("/v1/music/transcriptions", files={"file": ("a.wav", data)},
                           data={"model": "onsets-frames"}), status, code)
    assert_still_serving(http)


@pytest.mark.parametrize("channels, rate", [(8, RATE), (1, 8000), (1, 96000), (2, 44100)])
def test_many_channels_and_other_rates_are_downmixed_and_resampled(http, channels, rate):
    mono = speech(HEARD, rate)
    wave = np.repeat(mono[:, None], channels, axis=1) if channels > 1 else mono
    resp = post_audio(http, encoded(wave, rate), model="deepspeech2-default")
    # 8 kHz input has nothing above 4 kHz: the recognizer may lose a word or two
    assert resp.status_code == 200 and wer(HEARD, resp.text) <= (0.5 if rate == 8000 else 0.3), resp.text
    assert post_audio(http, encoded(wave, rate)).status_code == 200


def test_upload_over_the_size_limit_is_413(http):
    big = encoded(np.zeros(TEST_LIMITS["max_upload_bytes"], np.float32), RATE)  # 2x the limit as 16-bit
    assert_error(post_audio(http, big), 413, "file_too_large")

    def chunked():  # no content-length: counted as it arrives
        yield b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\n"
        for _ in range(40):
            yield b"\x00" * 100_000
    resp = http.post("/v1/audio/transcriptions", content=chunked(),
                     headers={"content-type": "multipart/form-data; boundary=b"})
    assert_error(resp, 413, "file_too_large")
    assert_still_serving(http)


def test_unknown_model_and_wrong_key_through_the_client(server):
    good = openai.OpenAI(base_url=f"{server}/v1", api_key=API_KEY, max_retries=0)
    with pytest.raises(openai.NotFoundError):
        good.audio.speech.create(model="missing", voice="mb-us1", input=SAY)
    with pytest.raises(openai.NotFoundError):
        good.audio.transcriptions.create(model="missing", file=("a.wav", encoded(speech(SAY))))
    bad = openai.OpenAI(base_url=f"{server}/v1", api_key="wrong-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.audio.speech.create(model="gan-tts", voice="mb-us1", input=SAY)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    assert good.audio.speech.create(model="gan-tts", voice="mb-us1", input=SAY, response_format="wav").content


def test_full_queue_is_429_with_retry_after(tiny_dir):
    settings = Settings(models_dir=tiny_dir, load_defaults=False, **{**TEST_LIMITS, "max_queue": 1,
                                                                     "batch_wait_ms": 500.0})
    with live_server(settings) as url, httpx.Client(base_url=url, timeout=30) as http:
        first = {}
        thread = threading.Thread(target=lambda: first.setdefault("r", post_audio(http, encoded(speech(SAY)))))
        thread.start()
        time.sleep(0.2)  # the first request waits in the batch window
        refused = post_audio(http, encoded(speech(SAY)))
        thread.join()
        assert_error(refused, 429, "queue_full")
        assert int(refused.headers["retry-after"]) >= 1
        assert first["r"].status_code == 200
        assert_still_serving(http)


def test_shutdown_finishes_in_flight_requests(tiny_dir):
    from models.inference import load_runtime
    from service.routes.speech import split_sentences

    text = " ".join(["Graceful words finish."] * 8)  # WaveRNN streams one chunk per sentence
    _, runtime = load_runtime(tiny_dir / "wavernn")
    hop = runtime.model.config.hop_length
    expected = sum(runtime.features(s, 2.0).shape[1] * hop for s in split_sentences(text)) * 2
    got = {}
    with live_server(Settings(models_dir=tiny_dir, load_defaults=False, **TEST_LIMITS)) as url:
        started = threading.Event()

        def client():
            body = {"model": "wavernn", "input": text, "voice": "mb-us1", "response_format": "pcm", "speed": 2.0}
            with httpx.stream("POST", f"{url}/v1/audio/speech", json=body, timeout=60) as resp:
                data = b""
                for chunk in resp.iter_bytes():
                    data += chunk
                    started.set()
                got["n"], got["done"] = len(data), time.monotonic()

        thread = threading.Thread(target=client)
        thread.start()
        assert started.wait(30)
        exit_asked = time.monotonic()  # leaving the context asks uvicorn to exit
    thread.join(60)
    assert got["done"] > exit_asked  # the stream was still running when the exit was asked
    assert got["n"] == expected


@pytest.mark.parametrize("model", ["wavernn", "gan-tts"])
def test_input_the_model_cannot_speak_is_422_and_spoils_no_batch(http, model):
    """The text frontend finds nothing to pronounce in punctuation alone (422);
    with gan-tts the bad sentences share batches with good ones."""
    assert_error(post_speech(http, model=model, input="!!! ???"), 422, "unprocessable_input")

    def one(text):
        return post_speech(http, model=model, input=text, response_format="pcm")

    texts = ["good one", "?!", "good two", "...", "good three"]
    with concurrent.futures.ThreadPoolExecutor(5) as pool:
        answers = list(pool.map(one, texts))
    assert [a.status_code for a in answers] == [200, 422, 200, 422, 200]
    assert all(len(a.content) > 1000 for a in answers[::2])


def test_one_bad_item_does_not_fail_its_batch():
    async def scenario():
        def run(items):
            if "bad" in items:
                raise ValueError("bad item")
            return [item.upper() for item in items]

        with ThreadPoolExecutor(2) as pool:
            batcher = Batcher("t", run, pool, max_batch=8, wait_ms=50, max_queue=16)
            results = await asyncio.gather(*(batcher.submit(x) for x in ["a", "bad", "c"]), return_exceptions=True)
            await batcher.drain(5)
        return results

    a, bad, c = asyncio.run(scenario())
    assert (a, c) == ("A", "C") and isinstance(bad, ValueError)


def test_requests_queued_during_a_batch_go_without_the_wait_window():
    """Eager dispatch, with a window far longer than the test: a lone request on an idle model
    waits for company; requests that queued while a batch ran start as soon as it ends."""
    async def scenario():
        sizes, release = [], threading.Event()

        def run(items):
            sizes.append(len(items))
            if len(sizes) == 2:
                release.wait(30)  # hold the second batch until the third request has queued
            return items

        with ThreadPoolExecutor(2) as pool:
            batcher = Batcher("t", run, pool, max_batch=2, wait_ms=600_000, max_queue=16)
            lone = asyncio.ensure_future(batcher.submit("a"))
            await asyncio.sleep(0.05)
            await asyncio.wait_for(asyncio.gather(lone, batcher.submit("b")), 30)  # "a" waited for "b"
            full = [asyncio.ensure_future(batcher.submit(x)) for x in "cd"]  # a full batch: goes at once
            while len(sizes) < 2:
                await asyncio.sleep(0.01)
            late = asyncio.ensure_future(batcher.submit("e"))  # queues while that batch runs
            await asyncio.sleep(0.05)
            release.set()
            # without eager dispatch "e" would sit out the 10-minute window
            await asyncio.wait_for(asyncio.gather(*full, late), 30)
            await batcher.drain(5)
        return sizes

    assert asyncio.run(scenario()) == [2, 2, 1]
