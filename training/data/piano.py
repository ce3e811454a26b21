"""The piano corpus in MAESTRO layout: music21 pieces and generated MIDI rendered by fluidsynth.

out/
  maestro-v3.0.0.csv   canonical_composer, canonical_title, split, year, midi_filename,
                       audio_filename, duration  (one row per clip)
  maestro-v3.0.0.json  the same columns, column-oriented as MAESTRO v3 ({column: {row: value}})
  2025/PNxxxxxx.midi   the clip's MIDI (one piano track; CC64 sustain where used)
  2025/PNxxxxxx.wav    16 kHz mono 16-bit, rendered with `fluidsynth -ni -g 0.7 -r 16000`
  clips.jsonl          extras per clip: source, soundfont, n_notes, midi_end_s, n_samples
  summary.json

Splits hold out pieces and sample sets: a piece belongs to one split by a
hash of its name; train and validation render with FluidR3_GM and TimGM6mb,
test with MuseScore_General_Lite only.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from models.audio import read_audio, to_mono, write_audio
from training.data.common import Summary, parallel_map, split_sizes
from training.data.midi import GENERATED_KINDS, corpus_pieces, cut_clips, generated_clip, note_end, piece_midi
from training.data.sentences import stable_fraction

SAMPLE_RATE = 16000
YEAR = 2025  # MAESTRO's year column: the year of this synthetic "performance" set
TAIL_S = 1.0  # release kept after the last note (or pedal) ends
GENERATED_FRACTION = 0.3
CLIPS_PER_PIECE = 2
SOUNDFONTS = {
    "train": ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/sounds/sf2/TimGM6mb.sf2"),
    "validation": ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/sounds/sf2/TimGM6mb.sf2"),
    "test": ("/usr/share/sounds/sf3/MuseScore_General_Lite.sf3",),
}
SPLITS = ("train", "validation", "test")
COMPOSER_NAMES = {"bach": "Johann Sebastian Bach", "beethoven": "Ludwig van Beethoven", "mozart":
                  "Wolfgang Amadeus Mozart", "haydn": "Joseph Haydn", "chopin": "Frederic Chopin", "joplin":
                  "Scott Joplin", "palestrina": "Giovanni Pierluigi da Palestrina", "monteverdi":
                  "Claudio Monteverdi", "cpebach": "Carl Philipp Emanuel Bach", "schoenberg": "Arnold Schoenberg"}


@dataclasses.dataclass(frozen=True)
class Job:
    source: str  # "music21:<work>" or "generated:<kind>"
    split: str
    seed: int
    uids: tuple[str, ...]  # one per clip this job may make
    soundfonts: tuple[str, ...]
    out: Path


def piece_split(name: str) -> str:
    x = stable_fraction(name)
    return "train" if x < 0.8 else "validation" if x < 0.9 else "test"


def render(midi_path: Path, soundfont: str, workdir: Path) -> np.ndarray:
    """MIDI -> (N,) float32 mono at 16 kHz, as fluidsynth renders it (tail untrimmed)."""
    wav = workdir / "render.wav"
    # dynamic sample loading only decodes the samples the clip plays (MuseScore's .sf3 takes
    # 7 s to load in full); the rendered audio is identical
    proc = subprocess.run(["fluidsynth", "-ni", "-o", "synth.dynamic-sample-loading=1", "-g", "0.7",
                           "-r", str(SAMPLE_RATE), "-F", str(wav), soundfont,
                           str(midi_path)], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0 or not wav.is_file():
        raise RuntimeError(f"fluidsynth failed: {proc.stderr.strip()[:200]}")
    audio, sr = read_audio(wav, mono=False)
    if sr != SAMPLE_RATE:
        raise RuntimeError(f"fluidsynth wrote {sr} Hz, not {SAMPLE_RATE}")
    return to_mono(audio)


def trim_tail(audio: np.ndarray, end_s: float, threshold_db: float = -60.0) -> np.ndarray:
    """Cut after end_s + TAIL_S, then drop trailing samples below threshold_db of the peak."""
    audio = audio[: int((end_s + TAIL_S) * SAMPLE_RATE)]
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    if peak == 0.0:
        return audio[:0]
    loud = np.flatnonzero(np.abs(audio) > peak * 10 ** (threshold_db / 20))
    return audio[: int(loud[-1]) + 1 + SAMPLE_RATE // 20]


def make_clips(job: Job) -> list[dict]:
    """Parse or generate, cut, write MIDI, render and write audio -> clip records or {'dropped': reason}."""
    rng = np.random.default_rng(job.seed)
    kind, name = job.source.split(":", 1)
    try:
        if kind == "music21":
            clips = cut_clips(piece_midi(name, rng), rng, len(job.uids))
        else:
            clips = [generated_clip(name, rng) for _ in job.uids]
    except Exception as exc:  # music21 raises many error types for odd scores
        return [{"dropped": f"unparsable piece ({type(exc).__name__})"}]
    records = []
    folder = job.out / str(YEAR)
    for uid, clip in zip(job.uids, clips):
        soundfont = job.soundfonts[int(rng.integers(len(job.soundfonts)))]
        midi_path = folder / f"{uid}.midi"
        clip.write(str(midi_path))
        end_s = note_end(clip)
        with tempfile.TemporaryDirectory(dir=job.out / ".tmp") as tmp:
            try:
                audio = trim_tail(render(midi_path, soundfont, Path(tmp)), end_s)
            except (RuntimeError, ValueError):
                midi_path.unlink()
                records.append({"dropped": "fluidsynth failed"})
                continue
        if audio.size < SAMPLE_RATE or float(np.sqrt(np.mean(audio ** 2))) < 1e-4:
            midi_path.unlink()
            records.append({"dropped": "silent"})
            continue
        write_audio(folder / f"{uid}.wav", audio, SAMPLE_RATE)
        composer = name.split("/")[0] if kind == "music21" else "generated"
        records.append({
            "id": uid, "canonical_composer": COMPOSER_NAMES.get(composer, composer.replace("_", " ").title())
            if kind == "music21" else "sparsewave generator",
            "canonical_title": name if kind == "music21" else f"generated {name}", "split": job.split,
            "year": YEAR, "midi_filename": f"{YEAR}/{uid}.midi", "audio_filename": f"{YEAR}/{uid}.wav",
            "duration": round(audio.size / SAMPLE_RATE, 3), "source": job.source,
            "soundfont": Path(soundfont).name, "n_notes": sum(len(i.notes) for i in clip.instruments),
            "midi_end_s": round(end_s, 3), "n_samples": int(audio.size), "sample_rate": SAMPLE_RATE})
    return records


def plan(out: Path, limit: int, seed: int, soundfonts: dict[str, tuple[str, ...]],
         pieces: list[str]) -> list[Job]:
    """Jobs for about `limit` clips: per split, GENERATED_FRACTION generated, the rest from that split's pieces."""
    rng = np.random.default_rng(seed)
    by_split = {s: [p for p in pieces if piece_split(p) == s] for s in SPLITS}
    by_composer: dict[str, dict[str, list[str]]] = {}
    for split, names in by_split.items():
        for p in names:
            by_composer.setdefault(split, {}).setdefault(p.split("/")[0], []).append(p)
    sizes = split_sizes(limit, [{"validation": "valid"}.get(s, s) for s in SPLITS if soundfonts.get(s)])
    jobs, n = [], 0
    for split in SPLITS:
        size = sizes.get({"validation": "valid"}.get(split, split), 0)
        n_generated = int(round(size * GENERATED_FRACTION)) if by_split[split] else size
        made = 0
        while made < size:
            count = 1 if made < n_generated else min(CLIPS_PER_PIECE, size - made)
            if made < n_generated:
                source = f"generated:{GENERATED_KINDS[made % len(GENERATED_KINDS)]}"
            else:  # composer first, so Palestrina's 1,300 masses do not crowd out the keyboard works
                composers = sorted(by_composer[split])
                works = by_composer[split][composers[int(rng.integers(len(composers)))]]
                source = f"music21:{works[int(rng.integers(len(works)))]}"
            uids = tuple(f"PN{n + i:06d}" for i in range(count))
            jobs.append(Job(source, split, int(rng.integers(2 ** 31)), uids, soundfonts[split], out))
            n, made = n + count, made + count
    return jobs


def build_piano(out: Path, limit: int = 200, seed: int = 0, jobs: int = 2,
                soundfonts: dict[str, tuple[str, ...]] | None = None, pieces: list[str] | None = None) -> dict:
    """Build the corpus under `out`; returns the summary dict (also written to summary.json)."""
    soundfonts = {s: tuple(f for f in fonts if Path(f).is_file()) for s, fonts in (soundfonts or SOUNDFONTS).items()}
    if not any(soundfonts.values()):
        raise ValueError("no soundfont found (apt-get install fluid-soundfont-gm timgm6mb-soundfont "
                         "musescore-general-soundfont-lite)")
    out = Path(out)
    (out / str(YEAR)).mkdir(parents=True, exist_ok=True)
    (out / ".tmp").mkdir(exist_ok=True)
    summary = Summary()
    todo = plan(out, limit, seed, soundfonts, corpus_pieces() if pieces is None else pieces)
    results = parallel_map(make_clips, todo, jobs, desc="piano")
    (out / ".tmp").rmdir()
    records = []
    for rec in (r for batch in results for r in batch):
        if "dropped" in rec:
            summary.drop(rec["dropped"])
        else:
            records.append(rec)
            summary.keep(rec["split"], rec["duration"])
    columns = ("canonical_composer", "canonical_title", "split", "year", "midi_filename", "audio_filename",
               "duration")
    with open(out / "maestro-v3.0.0.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows([[r[c] for c in columns] for r in records])
    table = {c: {str(i): r[c] for i, r in enumerate(records)} for c in columns}
    (out / "maestro-v3.0.0.json").write_text(json.dumps(table))
    with open(out / "clips.jsonl", "w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    result = {**summary.as_dict(), "lines": summary.lines()}
    (out / "summary.json").write_text(json.dumps(result, indent=1))
    return result
