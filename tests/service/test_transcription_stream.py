"""POST /v1/audio/transcriptions with stream=true: OpenAI's transcript.text.delta / .done events.

"ds2" is the tiny unidirectional bundle (tests/helpers/tiny_service_models.py); deepspeech2-default is
bidirectional and must refuse to stream."""
import openai
import pytest
from live_server import API_KEY
from service_audio import encoded, speech

SAY = "please call me back in the morning"


@pytest.fixture()
def client(server):
    return openai.OpenAI(base_url=f"{server}/v1", api_key=API_KEY, max_retries=0, timeout=60)


def test_stream_sends_deltas_then_the_whole_file_text(client):
    wav = encoded(speech(SAY))
    whole = client.audio.transcriptions.create(model="ds2", file=("a.wav", wav), response_format="text")
    events = list(client.audio.transcriptions.create(model="ds2", file=("a.wav", wav), stream=True))
    assert [e.type for e in events][-1] == "transcript.text.done"
    assert all(e.type == "transcript.text.delta" for e in events[:-1])
    assert events[-1].text == whole.strip()


def test_stream_refusals(http):
    wav = encoded(speech(SAY))
    resp = http.post("/v1/audio/transcriptions", files={"file": ("a.wav", wav)},
                     data={"model": "deepspeech2-default", "stream": "true"})
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "streaming_unsupported"
    resp = http.post("/v1/audio/transcriptions", files={"file": ("a.wav", wav)},
                     data={"model": "ds2", "stream": "true", "response_format": "srt"})
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "unsupported_response_format"
