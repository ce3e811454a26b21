"""bench/http_load.py, the lean load client of bench.service, against the live server: the same
answers as httpx, fixed-length and chunked bodies, and a load loop that counts what it did."""
import asyncio
import json
from urllib.parse import urlsplit

import httpx
from live_server import API_KEY
from service_audio import encoded, speech

from bench.http_load import hammer, multipart, post, send

AUTH = {"Authorization": f"Bearer {API_KEY}"}


def target(server):
    url = urlsplit(server)
    return url.hostname, url.port


def test_lean_client_reads_what_httpx_reads(server):
    host, port = target(server)
    clip = encoded(speech("the cat sat on the mat"))
    fields = {"model": "deepspeech2-default", "response_format": "json"}
    status, body = asyncio.run(send(host, port, post("/v1/audio/transcriptions", f"{host}:{port}",
                                                     *multipart(fields, "file", "clip.wav", clip), AUTH)))
    expected = httpx.post(f"{server}/v1/audio/transcriptions", headers=AUTH, data=fields,
                          files={"file": ("clip.wav", clip)}, timeout=60)
    assert status == expected.status_code == 200
    assert json.loads(body) == expected.json() and json.loads(body)["text"]


def test_lean_client_reads_chunked_streams_and_errors(server):
    host, port = target(server)
    speech_body = json.dumps({"model": "wavernn", "input": "Hello there.", "response_format": "pcm"}).encode()
    status, body = asyncio.run(send(host, port, post("/v1/audio/speech", f"{host}:{port}", speech_body,
                                                     "application/json", AUTH)))
    with httpx.stream("POST", f"{server}/v1/audio/speech", headers={**AUTH, "Content-Type": "application/json"},
                      content=speech_body, timeout=60) as resp:
        assert resp.headers.get("transfer-encoding") == "chunked"
        reference = resp.read()
    assert status == 200 and len(body) == len(reference) > 0  # the tiny WaveRNN samples: equal lengths
    unknown = json.dumps({"model": "no-such-model", "input": "Hi."}).encode()
    status, body = asyncio.run(send(host, port, post("/v1/audio/speech", f"{host}:{port}", unknown,
                                                     "application/json", AUTH)))
    assert status == 404 and json.loads(body)["error"]["message"]


def test_hammer_counts_every_answer(server):
    host, port = target(server)
    clip = encoded(speech("open the door"))
    requests = [post("/v1/audio/transcriptions", f"{host}:{port}",
                     *multipart({"model": "ds2", "response_format": "text"}, "file", "a.wav", clip), AUTH),
                post("/v1/audio/transcriptions", f"{host}:{port}",
                     *multipart({"model": "ds2"}, "file", "a.wav", clip))]  # no key: 401
    out = asyncio.run(hammer(host, port, requests, 0.5, 2))
    assert out["transport_errors"] == 0 and set(out["status"]) == {200, 401}
    assert len(out["ms"]) == out["status"].count(200) > 0 and out["elapsed_s"] > 0
