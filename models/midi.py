"""Notes <-> MIDI through pretty_midi, with sustain-pedal extension of offsets as in the MAESTRO evaluation.

`midi_to_notes(..., sustain=True)` applies the pedal the way Magenta's
`apply_sustain_control_changes` (used for MAESTRO's labels and metrics) does:
while CC64 is down (value >= 64) a released note keeps sounding until the
pedal lifts, or until the same key is struck again, whichever comes first.
"""
from __future__ import annotations

import os
from pathlib import Path

import pretty_midi

from models.inference import Note

SUSTAIN_CC = 64
PIANO_LOW, PIANO_HIGH = 21, 108


def notes_to_midi(notes: list[Note], program: int = 0, name: str = "piano") -> pretty_midi.PrettyMIDI:
    """Notes -> one-track PrettyMIDI (acoustic grand by default); no pedal events are written."""
    pm = pretty_midi.PrettyMIDI(resolution=960, initial_tempo=120.0)  # ticks of 0.52 ms
    inst = pretty_midi.Instrument(program=program, name=name)
    for n in sorted(notes, key=lambda n: (n.onset_s, n.pitch)):
        end = max(float(n.offset_s), float(n.onset_s) + 1e-3)
        inst.notes.append(pretty_midi.Note(int(min(127, max(1, n.velocity))), int(n.pitch), float(n.onset_s), end))
    pm.instruments.append(inst)
    return pm


def _sustain_intervals(inst: pretty_midi.Instrument, end_time: float) -> list[tuple[float, float]]:
    """(down, up) times of the sustain pedal; a pedal still down at the end lifts at end_time."""
    spans, down_at = [], None
    for cc in sorted((c for c in inst.control_changes if c.number == SUSTAIN_CC), key=lambda c: c.time):
        if cc.value >= 64 and down_at is None:
            down_at = cc.time
        elif cc.value < 64 and down_at is not None:
            spans.append((down_at, cc.time))
            down_at = None
    if down_at is not None:
        spans.append((down_at, max(end_time, down_at)))
    return spans


def apply_sustain(inst: pretty_midi.Instrument) -> list[Note]:
    """The instrument's notes with offsets extended by the sustain pedal (MAESTRO rule)."""
    notes = sorted(inst.notes, key=lambda n: (n.start, n.pitch))
    end_time = max((n.end for n in notes), default=0.0)
    spans = _sustain_intervals(inst, end_time)
    out: list[Note] = []
    by_pitch: dict[int, list[Note]] = {}
    for n in notes:
        offset = n.end
        for down, up in spans:
            if down <= n.end < up:
                offset = max(offset, up)
                break
        note = Note(int(n.pitch), float(n.start), float(offset), int(n.velocity))
        # a key struck again cuts the sustained earlier note of the same pitch
        for prev in by_pitch.get(n.pitch, []):
            if prev.onset_s < note.onset_s < prev.offset_s:
                prev.offset_s = note.onset_s
        by_pitch.setdefault(n.pitch, []).append(note)
        out.append(note)
    return [n for n in out if n.offset_s > n.onset_s]


def midi_to_notes(source: str | os.PathLike | pretty_midi.PrettyMIDI, sustain: bool = True) -> list[Note]:
    """All non-drum notes of a MIDI file (or PrettyMIDI), sorted by onset then pitch."""
    pm = source if isinstance(source, pretty_midi.PrettyMIDI) else pretty_midi.PrettyMIDI(str(Path(source)))
    notes: list[Note] = []
    for inst in pm.instruments:
        if inst.is_drum:
            continue
        if sustain:
            notes += apply_sustain(inst)
        else:
            notes += [Note(int(n.pitch), float(n.start), float(n.end), int(n.velocity)) for n in inst.notes]
    return sorted(notes, key=lambda n: (n.onset_s, n.pitch))
