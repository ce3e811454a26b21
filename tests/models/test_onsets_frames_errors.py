import csv
import shutil
from pathlib import Path

import numpy as np
import pretty_midi
import pytest

from bench.onsets_frames_errors import clip_errors, polyphony_at_onsets, render_timidity, summarize
from models.inference import Note


def test_errors_are_sorted_into_hits_timing_octaves_and_re_onsets():
    ref = [Note(60, 0.0, 1.0, 30), Note(64, 0.0, 1.0, 90), Note(67, 2.0, 2.05, 90)]
    est = [Note(60, 0.01, 0.9, 30),  # hit, 10 ms late
           Note(72, 0.0, 0.5, 60),  # an octave above the sounding C4
           Note(60, 0.5, 0.9, 60),  # a re-onset inside the held C4
           Note(64, 0.08, 1.0, 90),  # E4 80 ms late: a timing miss and a timing false alarm
           Note(55, 2.0, 2.3, 90)]  # G3 under the short G4: a sub-harmonic, and G4 is missed
    errors = clip_errors(ref, est)
    assert [r["hit"] for r in errors["refs"]] == [True, False, False]
    assert [r["late_or_early"] for r in errors["refs"]] == [False, True, False]
    assert [r["octave_instead"] for r in errors["refs"]] == [False, False, True]  # G3 for G4
    kinds = sorted(f["kind"] for f in errors["false"])
    assert kinds == ["harmonic of a sounding note (+12/19/24/28)", "re-onset inside a held note",
                     "sub-harmonic (-12/19/24)", "timing (same key within 100 ms)"]
    s = summarize([errors])
    assert (s["ref_notes"], s["est_notes"], s["hits"], s["false_alarms"]) == (3, 5, 1, 4)
    assert s["recall_by_velocity"]["pp (1-40)"] == {"notes": 1, "recall": 1.0}
    assert s["recall_by_length"]["<100 ms"] == {"notes": 1, "recall": 0.0}
    assert s["onset_error_ms"]["histogram_10ms_bins_from_-50"][6] == 1  # +10 ms falls in [10, 20)
    assert polyphony_at_onsets(ref).tolist() == [2, 2, 1]


@pytest.mark.skipif(shutil.which("timidity") is None or not Path("/etc/timidity/freepats.cfg").is_file(),
                    reason="needs timidity and freepats (apt-get install timidity freepats)")
def test_timidity_render_keeps_the_leading_silence(tmp_path):
    import soundfile as sf

    src = tmp_path / "src"
    (src / "2025").mkdir(parents=True)
    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(3)  # a honky-tonk label is played on the grand piano
    inst.notes = [pretty_midi.Note(90, 60, 1.0, 1.5)]
    pm.instruments.append(inst)
    pm.write(str(src / "2025/a.midi"))
    sf.write(str(src / "2025/a.wav"), np.zeros(16000 * 2, np.float32), 16000)
    with open(src / "maestro-v3.0.0.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["canonical_composer", "canonical_title", "split", "year", "midi_filename",
                         "audio_filename", "duration"])
        writer.writerow(["T", "a", "validation", 2025, "2025/a.midi", "2025/a.wav", 2.0])
    assert render_timidity(str(src), tmp_path / "out") == 1
    audio, sr = sf.read(str(tmp_path / "out/2025/a.wav"))
    assert sr == 16000 and audio.ndim == 1
    assert np.abs(audio[:int(0.9 * sr)]).max() < 1e-3 < np.abs(audio[int(1.0 * sr):int(1.3 * sr)]).max()
    assert pretty_midi.PrettyMIDI(str(tmp_path / "out/2025/a.midi")).instruments[0].program == 0
