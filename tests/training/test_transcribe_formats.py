"""`sparsewave transcribe --format` on the shipped speech bundle."""
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from training.cli import main

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "deepspeech2-default"
pytestmark = pytest.mark.skipif(not (BUNDLE / "manifest.json").is_file() or not shutil.which("espeak-ng"),
                                reason="needs the shipped bundle and espeak-ng")


def _run(capsys, *args):
    assert main(["transcribe", *map(str, args)]) == 0
    return capsys.readouterr().out


def test_every_format_describes_the_same_transcript(tmp_path, capsys):
    wav = tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(wav), "The cat sat on the mat. It was a sunny day."],
                   check=True)
    plain = json.loads(_run(capsys, wav, "--model", BUNDLE))  # json stays the default
    assert plain["words"] and plain["duration_s"] > 1
    assert _run(capsys, wav, "--model", BUNDLE, "--format", "text") == plain["text"] + "\n"
    verbose = json.loads(_run(capsys, wav, "--model", BUNDLE, "--format", "verbose_json"))
    assert verbose["text"] == plain["text"] and [w["word"] for w in verbose["words"]] == plain["text"].split()
    assert " ".join(s["text"] for s in verbose["segments"]) == plain["text"]
    out = tmp_path / "speech.srt"
    main(["transcribe", str(wav), "--model", str(BUNDLE), "--format", "srt", "-o", str(out)])
    blocks = out.read_text().strip().split("\n\n")
    assert [b.split("\n")[0] for b in blocks] == [str(i + 1) for i in range(len(verbose["segments"]))]
    times = [float(h) * 3600 + float(m) * 60 + float(s.replace(",", "."))
             for h, m, s in re.findall(r"(\d\d):(\d\d):(\d\d,\d\d\d)", out.read_text())]
    assert times == sorted(times) and 0 <= times[0] and times[-1] <= plain["duration_s"]
    vtt = _run(capsys, wav, "--model", BUNDLE, "--format", "vtt")
    assert vtt.startswith("WEBVTT\n\n") and vtt.count(" --> ") == len(blocks)


def test_piano_flag_uses_the_shipped_piano_bundle(tmp_path, capsys):
    """`sparsewave transcribe --piano FILE -o out.mid` with no --model: the shipped onsets-frames-default."""
    from models.midi import midi_to_notes
    from service_audio import PIANO_NOTES, encoded, piano

    wav, mid = tmp_path / "piano.wav", tmp_path / "out.mid"
    wav.write_bytes(encoded(piano()))
    assert main(["transcribe", "--piano", str(wav), "-o", str(mid)]) == 0
    assert sorted(n.pitch for n in midi_to_notes(mid)) == sorted(n.pitch for n in PIANO_NOTES)
    assert main(["transcribe", "--piano", str(wav), "--model", str(BUNDLE)]) == 2  # a speech bundle
    assert "--piano needs a piano bundle" in capsys.readouterr().err
