import pretty_midi

from models.inference import Note
from models.midi import midi_to_notes, notes_to_midi
from models.onsets_frames import decode_notes

import numpy as np


def test_decoded_notes_round_trip_through_a_midi_file(tmp_path):
    onset = np.zeros((40, 88), np.float32)
    frame = np.zeros((40, 88), np.float32)
    velocity = np.full((40, 88), 0.5, np.float32)
    for key, s, e in ((39, 2, 10), (43, 2, 7), (0, 20, 38), (87, 5, 6)):
        onset[s, key], frame[s:e, key] = 0.9, 0.9
    notes = decode_notes(onset, frame, velocity)
    path = tmp_path / "out.mid"
    notes_to_midi(notes).write(str(path))
    back = midi_to_notes(path)
    assert [(n.pitch, n.velocity) for n in back] == [(n.pitch, n.velocity) for n in notes]
    for a, b in zip(back, notes):
        assert abs(a.onset_s - b.onset_s) < 1e-3 and abs(a.offset_s - b.offset_s) < 1e-3


def _piano(notes, pedal=()):
    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(0)
    inst.notes = [pretty_midi.Note(v, p, s, e) for p, s, e, v in notes]
    for t, value in pedal:
        inst.control_changes.append(pretty_midi.ControlChange(64, value, t))
    pm.instruments.append(inst)
    return pm


def test_sustain_pedal_extends_offsets_until_release_or_restrike():
    pm = _piano([(60, 0.0, 0.5, 80), (64, 0.2, 0.4, 70), (60, 1.5, 1.8, 90), (67, 3.0, 3.5, 60)],
                pedal=[(0.3, 127), (2.0, 0)])
    got = [(n.pitch, round(n.onset_s, 3), round(n.offset_s, 3)) for n in midi_to_notes(pm)]
    # 60 and 64 are released with the pedal down: they sound until it lifts at 2.0, but the
    # first 60 stops when 60 is struck again at 1.5; 67 is played after the pedal lifted
    assert got == [(60, 0.0, 1.5), (64, 0.2, 2.0), (60, 1.5, 2.0), (67, 3.0, 3.5)]
    plain = [(n.pitch, n.offset_s) for n in midi_to_notes(pm, sustain=False)]
    assert plain == [(60, 0.5), (64, 0.4), (60, 1.8), (67, 3.5)]


def test_pedal_held_to_the_end_extends_to_the_last_note_end():
    pm = _piano([(50, 0.0, 0.2, 64), (52, 1.0, 2.0, 64)], pedal=[(0.1, 100)])
    assert [round(n.offset_s, 3) for n in midi_to_notes(pm)] == [2.0, 2.0]


def test_notes_to_midi_clamps_velocity_and_zero_length():
    pm = notes_to_midi([Note(60, 1.0, 1.0, 0), Note(61, 0.5, 0.7, 200)])
    got = [(n.pitch, n.velocity, n.end > n.start) for n in pm.instruments[0].notes]
    assert got == [(61, 127, True), (60, 1, True)]
