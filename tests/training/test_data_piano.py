import json
import shutil
from pathlib import Path

import numpy as np
import pretty_midi
import pytest
import soundfile as sf

from training.data.midi import GENERATED_KINDS, LOW, HIGH, SUSTAIN, cut_clips, generated_clip, note_end
from training.data.piano import build_piano, piece_split, trim_tail
from training.data.readers import read_maestro

TIM = "/usr/share/sounds/sf2/TimGM6mb.sf2"
needs_fluidsynth = pytest.mark.skipif(shutil.which("fluidsynth") is None or not Path(TIM).is_file(),
                                      reason="fluidsynth and TimGM6mb needed")


def test_generated_clips_cover_keys_velocities_and_pedal():
    rng = np.random.default_rng(0)
    sweep = generated_clip("sweep", rng)
    notes = sweep.instruments[0].notes
    assert {n.pitch for n in notes} == set(range(LOW, HIGH + 1))
    assert {n.velocity for n in notes} >= {1, 127}
    for kind in GENERATED_KINDS:
        pm = generated_clip(kind, np.random.default_rng(1))
        assert 9 <= pm.get_end_time() <= 20 and all(LOW <= n.pitch <= HIGH for n in pm.instruments[0].notes)
    chords = generated_clip("chords", np.random.default_rng(2))
    assert any(cc.number == SUSTAIN for cc in chords.instruments[0].control_changes)
    assert note_end(chords) <= chords.get_end_time() + 1e-6
    with pytest.raises(ValueError):
        generated_clip("bogus", rng)


def test_cut_clips_folds_into_piano_range():
    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(40)
    inst.notes = [pretty_midi.Note(80, p, 0.25 * i, 0.25 * i + 0.5) for i, p in enumerate(range(0, 128, 2))]
    pm.instruments.append(inst)
    clips = cut_clips(pm, np.random.default_rng(0), 3, min_s=5, max_s=6)
    assert len(clips) >= 2
    for clip in clips:
        assert clip.instruments[0].program == 0 and clip.get_end_time() <= 6.0 + 1e-6
        assert all(LOW <= n.pitch <= HIGH for n in clip.instruments[0].notes)


def test_trim_tail_and_piece_split():
    audio = np.zeros(16000 * 5, np.float32)
    audio[:16000] = 0.5
    assert len(trim_tail(audio, end_s=1.0)) < 16000 * 1.1
    assert piece_split("bach/bwv846") == piece_split("bach/bwv846") in ("train", "validation", "test")


@needs_fluidsynth
def test_build_piano_generated_clips(tmp_path):
    fonts = {"train": (TIM,), "test": (TIM,)}
    summary = build_piano(tmp_path / "p", limit=3, seed=1, jobs=2, soundfonts=fonts, pieces=[])
    assert sum(summary["kept"].values()) == 3 and summary["kept"].get("test") == 1
    records = read_maestro(tmp_path / "p")
    assert records == read_maestro(tmp_path / "p" / "maestro-v3.0.0.csv")
    extras = [json.loads(line) for line in (tmp_path / "p" / "clips.jsonl").read_text().splitlines()]
    for rec, extra in zip(records, extras):
        audio, sr = sf.read(rec.audio_path)
        midi = pretty_midi.PrettyMIDI(str(rec.midi_path))
        assert sr == 16000 and audio.ndim == 1 and abs(len(audio) / sr - rec.duration) < 1e-3
        assert abs(len(audio) / sr - midi.get_end_time()) < 1.0 + 0.05  # tail trimmed to <= 1 s of release
        assert len(audio) / sr >= note_end(midi) - 0.1
        assert extra["soundfont"] == "TimGM6mb.sf2" and extra["split"] == rec.split


@needs_fluidsynth
def test_build_piano_from_music21_piece(tmp_path):
    pytest.importorskip("music21")
    summary = build_piano(tmp_path / "m", limit=1, seed=0, jobs=1, soundfonts={"train": (TIM,)},
                          pieces=["bach/bwv66.6"])
    records = read_maestro(tmp_path / "m")
    assert len(records) == 1 and summary["kept"] == {"train": 1}
    assert records[0].composer == "Johann Sebastian Bach" and records[0].title == "bach/bwv66.6"
    assert 5 < records[0].duration < 22


def test_wide_variation_is_seeded_and_plain_takes_no_draws():
    from training.data.piano import Variation, WIDE_PROGRAMS, apply_variation, draw_variation

    rng = np.random.default_rng(0)
    assert draw_variation("plain", rng) == Variation() and rng.random() == np.random.default_rng(0).random()
    a, b = draw_variation("wide", np.random.default_rng(4)), draw_variation("wide", np.random.default_rng(4))
    assert a == b and a.program in WIDE_PROGRAMS and abs(a.detune_cents) <= 25
    assert ("synth.reverb.active", "1") in a.settings or ("synth.reverb.active", "0") in a.settings
    clip = generated_clip("sweep", np.random.default_rng(0))
    apply_variation(clip, Variation(program=3, velocity_gamma=2.0))
    notes = clip.instruments[0].notes
    assert clip.instruments[0].program == 3 and min(n.velocity for n in notes) == 1
    assert max(n.velocity for n in notes) == 127 and sorted(n.velocity for n in notes)[44] < 64


@needs_fluidsynth
def test_build_piano_wide_train_only(tmp_path):
    summary = build_piano(tmp_path / "w", limit=2, seed=2, jobs=1, soundfonts={"train": (TIM,), "test": (TIM,)},
                          pieces=[], timbre="wide", splits=("train",))
    assert summary["kept"] == {"train": 2}
    extras = [json.loads(line) for line in (tmp_path / "w" / "clips.jsonl").read_text().splitlines()]
    for rec, extra in zip(read_maestro(tmp_path / "w"), extras):
        midi = pretty_midi.PrettyMIDI(str(rec.midi_path))
        assert midi.instruments[0].program == extra["program"] and not midi.instruments[0].pitch_bends
        assert "synth.reverb.active" in extra["fluidsynth"] and sf.info(str(rec.audio_path)).samplerate == 16000
    with pytest.raises(ValueError):
        build_piano(tmp_path / "x", limit=1, timbre="loud")
