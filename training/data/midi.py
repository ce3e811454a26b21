"""MIDI for the piano corpus: music21 corpus pieces cut into clips, and generated MIDI.

Every clip is one acoustic-grand track (program 0) with all notes in the 88
piano keys (MIDI 21..108); pieces written for other instruments are folded
into that range by octaves. Generated clips cover all 88 keys, velocities
1..127, chords, repeated notes and the sustain pedal (CC64).
"""
from __future__ import annotations

import logging
import warnings

import numpy as np
import pretty_midi

LOW, HIGH = 21, 108
SUSTAIN = 64
# Composers of the music21 corpus: true keyboard works (bach/bwv846, mozart/k545, joplin, chopin,
# cpebach, schoenberg op. 19, schumann, beach) and polyphonic vocal and chamber works.
COMPOSERS = ("bach", "beach", "beethoven", "chopin", "corelli", "cpebach", "handel", "haydn", "joplin",
             "josquin", "monteverdi", "mozart", "palestrina", "schoenberg", "schumann_clara", "schumann_robert",
             "verdi", "weber")
EXCERPT_MEASURES = 32  # long works: one random excerpt of this many measures is parsed
GENERATED_KINDS = ("sweep", "chords", "repeated", "random")


def corpus_pieces() -> list[str]:
    """Sorted music21 corpus work names ('composer/work'), found offline in the installed corpus."""
    from music21 import corpus

    names = set()
    for composer in COMPOSERS:
        for path in corpus.getComposer(composer):
            rel = str(path).split("/corpus/", 1)[-1]
            names.add(rel.rsplit(".", 1)[0])
    return sorted(names)


def piece_midi(name: str, rng: np.random.Generator) -> pretty_midi.PrettyMIDI:
    """Parse a music21 work (a random excerpt of long ones) -> one-track pretty_midi in seconds.

    Notes come from music21's secondsMap after tying notes together, so
    tempo marks are honoured; no MIDI file round trip (pretty_midi rejects
    some music21 MIDI files as corrupt).
    """
    from music21 import chord, corpus, note

    logging.getLogger("music21").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        score = corpus.parse(name)
        parts = getattr(score, "parts", None)
        n_measures = len(parts[0].getElementsByClass("Measure")) if parts else 0
        if n_measures > EXCERPT_MEASURES:
            first = int(rng.integers(1, n_measures - EXCERPT_MEASURES + 2))
            score = score.measures(first, first + EXCERPT_MEASURES - 1)
        events = score.stripTies().flatten().secondsMap
    pm = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    inst = pretty_midi.Instrument(program=0, name="piano")
    for ev in events:
        el = ev["element"]
        if isinstance(el, (note.Note, chord.Chord)) and ev["durationSeconds"] > 0:
            start = float(ev["offsetSeconds"])
            for p in el.pitches:
                inst.notes.append(pretty_midi.Note(80, int(p.midi), start, start + float(ev["durationSeconds"])))
    pm.instruments.append(inst)
    return pm


def fold_pitch(pitch: int) -> int:
    while pitch < LOW:
        pitch += 12
    while pitch > HIGH:
        pitch -= 12
    return pitch


def cut_clips(pm: pretty_midi.PrettyMIDI, rng: np.random.Generator, max_clips: int,
              min_s: float = 10.0, max_s: float = 20.0) -> list[pretty_midi.PrettyMIDI]:
    """Up to max_clips piano clips of 10-20 s from a multi-track piece, with varied dynamics.

    Notes that start inside the clip are kept (ends cut at the clip end);
    velocities get a per-clip level plus per-note jitter, since corpus scores
    carry almost no dynamics.
    """
    notes = sorted((n for inst in pm.instruments if not inst.is_drum for n in inst.notes), key=lambda n: n.start)
    if not notes:
        return []
    end = max(n.end for n in notes)
    clips, t0 = [], notes[0].start
    transpose = int(rng.integers(-5, 7))
    while len(clips) < max_clips and t0 < end - 2.0:
        length = float(rng.uniform(min_s, max_s))
        level = float(rng.uniform(35, 110))
        clip = pretty_midi.PrettyMIDI(initial_tempo=120.0)
        inst = pretty_midi.Instrument(program=0, name="piano")
        for n in notes:
            if t0 <= n.start < t0 + length:
                vel = int(np.clip(round(level + rng.normal(0, 10)), 1, 127))
                stop = min(n.end, t0 + length) - t0
                if stop - (n.start - t0) >= 0.02:
                    inst.notes.append(pretty_midi.Note(vel, fold_pitch(n.pitch + transpose), n.start - t0, stop))
        if len(inst.notes) >= 8:
            clip.instruments.append(inst)
            clips.append(clip)
        t0 += length
    return clips


def _pedal(inst: pretty_midi.Instrument, rng: np.random.Generator, length: float) -> None:
    """Sustain pedal down/up pairs over the clip, released before it ends."""
    t = float(rng.uniform(0.5, 2.0))
    while t < length - 2.0:
        down = float(rng.uniform(0.5, 3.0))
        inst.control_changes.append(pretty_midi.ControlChange(SUSTAIN, 127, t))
        inst.control_changes.append(pretty_midi.ControlChange(SUSTAIN, 0, min(t + down, length - 1.0)))
        t += down + float(rng.uniform(1.0, 4.0))


def generated_clip(kind: str, rng: np.random.Generator, length: float | None = None) -> pretty_midi.PrettyMIDI:
    """A synthetic clip of `kind` (sweep, chords, repeated, random), about 10-20 s long."""
    length = float(length or rng.uniform(10.0, 20.0))
    pm = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    inst = pretty_midi.Instrument(program=0, name="piano")
    notes = inst.notes
    if kind == "sweep":  # all 88 keys, velocities sweeping 1..127
        keys = np.arange(LOW, HIGH + 1)
        keys = keys if rng.random() < 0.5 else keys[::-1]
        step = (length - 1.0) / len(keys)
        vels = np.linspace(1, 127, len(keys)).round().astype(int)
        if rng.random() < 0.5:
            vels = vels[::-1]
        for i, (k, v) in enumerate(zip(keys, vels)):
            notes.append(pretty_midi.Note(int(v), int(k), i * step, i * step + step * float(rng.uniform(0.5, 3.0))))
    elif kind == "chords":
        t = 0.0
        while t < length - 1.0:
            size, root = int(rng.integers(2, 7)), int(rng.integers(LOW, HIGH - 24))
            dur, vel = float(rng.uniform(0.2, 1.5)), int(rng.integers(1, 128))
            for p in sorted(set(root + rng.choice(np.arange(25), size, replace=False))):
                notes.append(pretty_midi.Note(int(np.clip(vel + rng.integers(-8, 9), 1, 127)), int(p), t,
                                              min(t + dur, length - 0.5)))
            t += dur + float(rng.uniform(0.0, 0.4))
        _pedal(inst, rng, length)
    elif kind == "repeated":
        t = 0.0
        while t < length - 1.0:
            key, gap = int(rng.integers(LOW, HIGH + 1)), float(rng.uniform(0.05, 0.25))
            for _ in range(int(rng.integers(3, 12))):
                if t >= length - 1.0:
                    break
                notes.append(pretty_midi.Note(int(rng.integers(1, 128)), key, t, t + gap * 0.8))
                t += gap
            t += float(rng.uniform(0.1, 0.6))
    elif kind == "random":
        t = 0.0
        while t < length - 1.0:
            dur = float(rng.uniform(0.05, 2.0))
            notes.append(pretty_midi.Note(int(rng.integers(1, 128)), int(rng.integers(LOW, HIGH + 1)), t,
                                          min(t + dur, length - 0.5)))
            t += float(rng.exponential(0.15))
        _pedal(inst, rng, length)
    else:
        raise ValueError(f"unknown generated kind {kind!r}; choose from {GENERATED_KINDS}")
    pm.instruments.append(inst)
    return pm


def note_end(pm: pretty_midi.PrettyMIDI) -> float:
    """Time the last note ends, the sustain pedal counted (a held note sounds until the pedal lifts)."""
    end = 0.0
    for inst in pm.instruments:
        ups = sorted(cc.time for cc in inst.control_changes if cc.number == SUSTAIN and cc.value < 64)
        for n in inst.notes:
            later = [u for u in ups if u >= n.end]
            end = max(end, n.end, later[0] if later and _pedal_down_at(inst, n.end) else n.end)
    return end


def _pedal_down_at(inst: pretty_midi.Instrument, t: float) -> bool:
    state = False
    for cc in sorted(inst.control_changes, key=lambda c: c.time):
        if cc.number == SUSTAIN and cc.time <= t:
            state = cc.value >= 64
    return state
