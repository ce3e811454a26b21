"""The web page in headless Chromium (Debian's chromium, driven by playwright):
speak (tiny WaveRNN), transcribe a file (deepspeech2-default on espeak-ng
speech) and a recording (tiny Deep Speech 2), draw a piano roll and download
MIDI (onsets-frames-default on a fluidsynth render)."""
import re
import shutil

import httpx
import pretty_midi
import pytest
from service_audio import encoded, piano, speech, wer
from live_server import API_KEY

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(shutil.which("chromium") is None,
                                reason="needs Debian's chromium (apt-get install chromium)")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
         "--autoplay-policy=no-user-gesture-required"]


@pytest.fixture(scope="module")
def page(server):
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        context = browser.new_context(accept_downloads=True)
        page = context.new_page()
        errors = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(server + "/")
        page.fill("#api-key", API_KEY)
        page.dispatch_event("#api-key", "change")
        page.wait_for_selector("body[data-ready='1']", timeout=20000)
        yield page
        assert errors == []
        browser.close()


def test_page_is_served_without_a_key_and_loads_nothing_from_elsewhere(server):
    for path, kind in [("/", "text/html"), ("/static/app.js", "text/javascript"), ("/static/style.css", "text/css")]:
        resp = httpx.get(server + path)  # no API key: the page itself is open
        assert resp.status_code == 200 and resp.headers["content-type"].startswith(kind)
        assert not re.search(r"(src|href)=\"(https?:)?//|@import|https?://", resp.text), path


def test_speak(page):
    page.select_option("#tts-model", "wavernn")
    assert page.eval_on_selector_all("#tts-voice option", "els => els.map(e => e.value)") == ["mb-us1", "mb-us2"]
    page.fill("#tts-text", "hello from the page, spoken slowly and at length")
    page.click("#tts-go")
    page.wait_for_function("document.getElementById('tts-status').textContent.includes('s of audio')")
    assert page.eval_on_selector("#tts-audio", "a => a.src").startswith("blob:")
    page.wait_for_function("document.getElementById('tts-audio').duration > 1")


def test_transcribe_a_file_with_word_timings(page, tmp_path):
    path = tmp_path / "speech.wav"
    sentence = "please call me back in the morning"  # deepspeech2-default: WER 0 on it (measured)
    path.write_bytes(encoded(speech(sentence)))
    page.select_option("#asr-model", "deepspeech2-default")
    page.set_input_files("#asr-file", str(path))
    page.click("#asr-go")
    page.wait_for_function("document.getElementById('asr-status').textContent.includes('word(s)')")
    text = page.inner_text("#asr-text").strip()
    assert wer(sentence, text) <= 0.3, text
    cells = page.eval_on_selector_all("#asr-words tbody tr", "rows => rows.map(r => r.cells[0].textContent)")
    assert cells == text.split()


def test_record_and_transcribe(page):
    page.select_option("#asr-model", "ds2")
    page.click("#asr-record")
    page.wait_for_timeout(1200)
    page.click("#asr-record")
    page.wait_for_function("document.getElementById('asr-status').textContent.startsWith('recorded')")
    page.click("#asr-go")
    page.wait_for_function("document.getElementById('asr-status').textContent.includes('s of audio')")
    assert "error" not in page.get_attribute("#asr-status", "class")


def test_piano_roll_and_midi_download(page, server, tmp_path):
    path = tmp_path / "piano.wav"
    path.write_bytes(encoded(piano()))
    notes = httpx.post(server + "/v1/music/transcriptions", files={"file": ("p.wav", path.read_bytes())},
                       data={"model": "onsets-frames-default"},
                       headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60).json()["notes"]
    assert len(notes) >= 4
    page.select_option("#piano-model", "onsets-frames-default")
    page.set_input_files("#piano-file", str(path))
    page.click("#piano-go")
    page.wait_for_function(f"document.getElementById('piano-roll').dataset.notes === '{len(notes)}'")
    lit = page.evaluate("""() => { const c = document.getElementById('piano-roll');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i] + d[i + 1] + d[i + 2] > 200) n++; return n; }""")
    assert lit > 100  # the notes are painted
    with page.expect_download() as download:
        page.click("#piano-midi")
    target = tmp_path / "out.mid"
    download.value.save_as(target)
    assert sorted(n.pitch for n in pretty_midi.PrettyMIDI(str(target)).instruments[0].notes) == \
        sorted(n["pitch"] for n in notes)
