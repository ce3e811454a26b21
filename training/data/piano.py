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

`timbres="wide"` varies the training renders per clip (Variation): piano presets 0-3 (grand,
bright grand, electric grand, honky-tonk), the public-domain csound sf_GMbank as a third train
sample set, random fluidsynth reverb and chorus, a global detune and a velocity curve. The test
split always renders plainly with its own sample set.
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
WIDE_TRAIN_SOUNDFONTS = SOUNDFONTS["train"] + ("/usr/share/sounds/sf2/sf_GMbank.sf2",)
SPLITS = ("train", "validation", "test")
TIMBRES = ("plain", "wide")
WIDE_PROGRAMS = (0, 0, 1, 2, 3)  # GM piano presets; 4-7 (electric pianos, harpsichord, clavinet) are not pianos
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
    timbre: str = "plain"


@dataclasses.dataclass(frozen=True)
class Variation:
    """How one clip is rendered. The defaults are the plain render (fluidsynth's own settings)."""
    program: int = 0
    detune_cents: float = 0.0  # a pitch bend over the whole clip (render only; labels keep the key)
    velocity_gamma: float = 1.0  # velocity' = 127 (velocity / 127) ** gamma (labels follow)
    settings: tuple[tuple[str, str], ...] = ()  # extra fluidsynth -o settings (reverb, chorus)


def draw_variation(timbre: str, rng: np.random.Generator) -> Variation:
    """A random Variation for `wide`; `plain` takes no draws from rng (the plain corpus is unchanged)."""
    if timbre == "plain":
        return Variation()
    reverb = rng.random() < 0.8
    settings = [("synth.reverb.active", str(int(reverb))), ("synth.chorus.active", str(int(rng.random() < 0.3)))]
    if reverb:
        settings += [("synth.reverb.room-size", f"{rng.uniform(0.1, 0.9):.2f}"),
                     ("synth.reverb.damp", f"{rng.uniform(0.0, 0.8):.2f}"),
                     ("synth.reverb.width", f"{rng.uniform(0.2, 1.0):.2f}"),
                     ("synth.reverb.level", f"{rng.uniform(0.2, 1.0):.2f}")]
    return Variation(program=int(rng.choice(WIDE_PROGRAMS)), detune_cents=float(rng.uniform(-25, 25)),
                     velocity_gamma=float(np.exp(rng.uniform(np.log(0.7), np.log(1.4)))), settings=tuple(settings))


def apply_variation(clip, var: Variation) -> None:
    """Set the clip's program and velocity curve in place (these go into the label MIDI too)."""
    for inst in clip.instruments:
        inst.program = var.program
        if var.velocity_gamma != 1.0:
            for n in inst.notes:
                n.velocity = int(np.clip(round(127 * (n.velocity / 127) ** var.velocity_gamma), 1, 127))


def render_midi(clip, var: Variation, label_path: Path, workdir: Path) -> Path:
    """The MIDI fluidsynth plays: the label file, or a copy with the detune pitch bend."""
    if not var.detune_cents:
        return label_path
    import copy

    import pretty_midi

    played = copy.deepcopy(clip)
    bend = int(np.clip(round(var.detune_cents / 200 * 8192), -8192, 8191))  # default bend range: 2 semitones
    for inst in played.instruments:
        inst.pitch_bends.append(pretty_midi.PitchBend(bend, 0.0))
    path = workdir / "played.midi"
    played.write(str(path))
    return path


def piece_split(name: str) -> str:
    x = stable_fraction(name)
    return "train" if x < 0.8 else "validation" if x < 0.9 else "test"


def render(midi_path: Path, soundfont: str, workdir: Path,
           settings: tuple[tuple[str, str], ...] = ()) -> np.ndarray:
    """MIDI -> (N,) float32 mono at 16 kHz, as fluidsynth renders it (tail untrimmed)."""
    wav = workdir / "render.wav"
    extra = [a for k, v in settings for a in ("-o", f"{k}={v}")]
    # dynamic sample loading only decodes the samples the clip plays (MuseScore's .sf3 takes
    # 7 s to load in full); the rendered audio is identical
    proc = subprocess.run(["fluidsynth", "-ni", "-o", "synth.dynamic-sample-loading=1", *extra, "-g", "0.7",
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
        var = draw_variation(job.timbre, rng)
        apply_variation(clip, var)
        midi_path = folder / f"{uid}.midi"
        clip.write(str(midi_path))
        end_s = note_end(clip)
        with tempfile.TemporaryDirectory(dir=job.out / ".tmp") as tmp:
            try:
                played = render_midi(clip, var, midi_path, Path(tmp))
                audio = trim_tail(render(played, soundfont, Path(tmp), var.settings), end_s)
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
            "soundfont": Path(soundfont).name, **variation_record(var), "n_notes": sum(len(i.notes) for i in clip.instruments),
            "midi_end_s": round(end_s, 3), "n_samples": int(audio.size), "sample_rate": SAMPLE_RATE})
    return records


def variation_record(var: Variation) -> dict:
    if var == Variation():
        return {}
    return {"program": var.program, "detune_cents": round(var.detune_cents, 1),
            "velocity_gamma": round(var.velocity_gamma, 3), "fluidsynth": dict(var.settings)}


def plan(out: Path, limit: int, seed: int, soundfonts: dict[str, tuple[str, ...]],
         pieces: list[str], timbre: str = "plain") -> list[Job]:
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
            jobs.append(Job(source, split, int(rng.integers(2 ** 31)), uids, soundfonts[split], out,
                            "plain" if split == "test" else timbre))
            n, made = n + count, made + count
    return jobs


def build_piano(out: Path, limit: int = 200, seed: int = 0, jobs: int = 2,
                soundfonts: dict[str, tuple[str, ...]] | None = None, pieces: list[str] | None = None,
                timbre: str = "plain", splits: tuple[str, ...] = SPLITS) -> dict:
    """Build the corpus under `out` (only `splits`); returns the summary dict (also written to summary.json)."""
    if timbre not in TIMBRES:
        raise ValueError(f"unknown timbres {timbre!r}; choose from {', '.join(TIMBRES)}")
    if not splits or set(splits) - set(SPLITS):
        raise ValueError(f"splits must be among {', '.join(SPLITS)}")
    if soundfonts is None:
        soundfonts = {**SOUNDFONTS, "train": WIDE_TRAIN_SOUNDFONTS} if timbre == "wide" else SOUNDFONTS
    soundfonts = {s: tuple(f for f in fonts if Path(f).is_file()) if s in splits else ()
                  for s, fonts in soundfonts.items()}
    if not any(soundfonts.values()):
        raise ValueError("no soundfont found (apt-get install fluid-soundfont-gm timgm6mb-soundfont "
                         "musescore-general-soundfont-lite)")
    out = Path(out)
    (out / str(YEAR)).mkdir(parents=True, exist_ok=True)
    (out / ".tmp").mkdir(exist_ok=True)
    summary = Summary()
    todo = plan(out, limit, seed, soundfonts, corpus_pieces() if pieces is None else pieces, timbre)
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
