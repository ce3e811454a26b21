"""Where the piano transcriber goes wrong, beside basic-pitch, from activations cached once.

    python -m bench.onsets_frames_errors timidity --data data/piano_val --out data/piano_val_freepats
    python -m bench.onsets_frames_errors cache --split validation --out runs/of-acts-validation.pkl
    python -m bench.onsets_frames_errors analyze runs/of-acts-validation.pkl [--paper-rule --onset 0.25 --frame 0.3]
        [--decoding-from BUNDLE] [--set min_note_frames=1 ...]
    python -m bench.onsets_frames_errors retune --bundle DIR --roots data/piano ... -o NEW_BUNDLE

`timidity` re-renders a split's label MIDI with another synthesizer and sample set, timidity with
the freepats piano (Debian packages timidity, freepats), which no training clip used: a validation
set with an unseen piano, like the test split's, without touching the test split.
`cache` runs our bundle and basic-pitch's ONNX model once per clip of a split and keeps the
activations with the reference notes (sustain pedal applied), so decoding variants can be scored
without running either network again. `analyze` matches notes with mir_eval (onset within 50 ms, no
offset) and breaks the misses and false alarms down by register, velocity, polyphony, note length,
onset timing and octave/harmonic relations, for ours and for basic-pitch (its default decoding).
`retune` copies a bundle with training's decoding rules and thresholds tuned on the validation splits
of the given corpora. Tune decoding on the validation split only; the test split is scored once, by bench.onsets_frames.
"""
from __future__ import annotations

import argparse
import json
import pickle
import sys
from pathlib import Path

import numpy as np

REGISTERS = ((21, 47, "A0-B2"), (48, 71, "C3-B4"), (72, 108, "C5-C8"))
VELOCITIES = ((1, 40, "pp (1-40)"), (41, 80, "mf (41-80)"), (81, 127, "ff (81-127)"))
LENGTHS = ((0.0, 0.1, "<100 ms"), (0.1, 0.25, "100-250 ms"), (0.25, 1.0, "250 ms-1 s"), (1.0, 1e9, ">1 s"))
POLYPHONY = ((1, 1, "1"), (2, 3, "2-3"), (4, 5, "4-5"), (6, 99, "6+"))


def render_timidity(data: str, out: Path, split: str = "validation",
                    config: str = "/etc/timidity/freepats.cfg") -> int:
    """A MAESTRO-layout corpus at `out`: `split`'s label MIDI of `data`, played by timidity on GM
    program 0 (grand piano) at 16 kHz mono. Returns the number of clips."""
    import csv
    import shutil
    import subprocess

    import pretty_midi
    import soundfile as sf

    from training.data.readers import read_maestro

    if not Path(config).is_file() or shutil.which("timidity") is None:
        raise SystemExit(f"needs timidity and {config} (apt-get install timidity freepats)")
    rows = []
    for rec in (r for r in read_maestro(data) if r.split == split):
        midi, wav = Path(rec.midi_path.parent.name) / rec.midi_path.name, Path(rec.midi_path.parent.name) / (
            rec.audio_path.stem + ".wav")
        (out / midi).parent.mkdir(parents=True, exist_ok=True)
        score = pretty_midi.PrettyMIDI(str(rec.midi_path))
        for inst in score.instruments:
            inst.program, inst.pitch_bends = 0, []
        score.write(str(out / midi))
        # timidity drops leading silence unless told not to, which would shift every onset
        subprocess.run(["timidity", "-c", config, "--preserve-silence", "-Ow", "--output-mono", "-s", "16000",
                        "-o", str(out / wav), str(out / midi)], check=True, capture_output=True)
        rows.append({"canonical_composer": rec.composer, "canonical_title": rec.title, "split": split,
                     "year": rec.year, "midi_filename": str(midi), "audio_filename": str(wav),
                     "duration": round(sf.info(str(out / wav)).duration, 3)})
    with open(out / "maestro-v3.0.0.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    # clips.jsonl names the sample set, as `sparsewave data piano` does (read by bundle licences)
    (out / "clips.jsonl").write_text("".join(json.dumps({**r, "soundfont": "freepats (timidity)"}) + "\n"
                                             for r in rows))
    return len(rows)


def cache(bundle_dir: str, data: str, split: str, out: Path, threads: int = 1) -> list[dict]:
    """Per clip: name, reference notes, our activations and basic-pitch's model output; pickled to `out`."""
    from bench.onsets_frames import basic_pitch_runner
    from basic_pitch.inference import run_inference

    from models.audio import read_audio, resample
    from models.bundle import load_bundle
    from models.midi import midi_to_notes
    from models.onsets_frames import OnsetsFramesTranscriber
    from training.data.readers import read_maestro

    import torch

    torch.set_num_threads(threads)
    transcriber = OnsetsFramesTranscriber.from_bundle(load_bundle(bundle_dir), engine="torch")
    bp, why = basic_pitch_runner(threads)
    if bp is None:
        raise SystemExit(why)
    clips = []
    for rec in (r for r in read_maestro(data) if r.split == split):
        audio, sr = read_audio(rec.audio_path)
        acts = transcriber.activations(resample(audio, sr, transcriber.sample_rate))
        clips.append({"name": rec.audio_path.stem, "ref": midi_to_notes(rec.midi_path), "ours": acts,
                      "basic_pitch": run_inference(str(rec.audio_path), bp.model)})
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(pickle.dumps({"bundle": bundle_dir, "data": data, "split": split, "clips": clips}))
    return clips


def load_cache(path: str | Path) -> dict:
    return pickle.loads(Path(path).read_bytes())


def basic_pitch_notes(output: dict, onset_threshold: float = 0.5, frame_threshold: float = 0.3,
                      minimum_note_length_ms: float = 127.70) -> list:
    """basic-pitch's own note creation from its cached model output (its defaults unless given)."""
    from basic_pitch import note_creation
    from basic_pitch.constants import AUDIO_SAMPLE_RATE, FFT_HOP

    from models.inference import Note

    _, events = note_creation.model_output_to_notes(
        output, onset_thresh=onset_threshold, frame_thresh=frame_threshold,
        min_note_len=int(np.round(minimum_note_length_ms / 1000 * (AUDIO_SAMPLE_RATE / FFT_HOP))))
    return [Note(int(p), float(s), float(e), int(np.clip(round(a * 127), 1, 127))) for s, e, p, a, _ in events]


# --- matching and breakdowns --------------------------------------------------------------------
def match(ref: list, est: list) -> list[tuple[int, int]]:
    """mir_eval's onset-only note matching (50 ms): (ref index, est index) pairs."""
    from mir_eval.transcription import match_notes

    from training.objectives.onsets_frames import _intervals

    ri, rp, _ = _intervals(ref)
    ei, ep, _ = _intervals(est)
    if not len(ri) or not len(ei):
        return []
    return match_notes(ri, rp, ei, ep, onset_tolerance=0.05, offset_ratio=None)


def polyphony_at_onsets(notes: list) -> np.ndarray:
    """How many notes sound (counting the note itself) at each note's onset."""
    on = np.array([n.onset_s for n in notes])
    off = np.array([max(n.offset_s, n.onset_s + 1e-3) for n in notes])
    return np.array([int(((on <= t) & (off > t)).sum()) for t in on])


def _nearest(notes: list, pitch: int, t: float, window: float = 0.1) -> float | None:
    """Smallest |onset - t| among notes of `pitch` with an onset within `window` s of t, else None."""
    gaps = [abs(n.onset_s - t) for n in notes if n.pitch == pitch and abs(n.onset_s - t) <= window]
    return min(gaps) if gaps else None


def _sounding(notes: list, t: float) -> set[int]:
    return {n.pitch for n in notes if n.onset_s - 0.05 <= t < max(n.offset_s, n.onset_s + 0.05)}


def clip_errors(ref: list, est: list) -> dict:
    """Every reference note with hit/miss and its attributes, every estimate with its kind of error."""
    pairs = match(ref, est)
    hit_ref = {r: e for r, e in pairs}
    hit_est = {e for _, e in pairs}
    poly = polyphony_at_onsets(ref) if ref else np.zeros(0)
    refs = []
    for i, n in enumerate(ref):
        e = hit_ref.get(i)
        refs.append({"pitch": n.pitch, "velocity": n.velocity, "length": n.offset_s - n.onset_s,
                     "polyphony": int(poly[i]), "hit": e is not None,
                     "onset_error": None if e is None else est[e].onset_s - n.onset_s,
                     # a miss with an estimate of the same key 50-100 ms away is a timing error
                     "late_or_early": e is None and _nearest(est, n.pitch, n.onset_s) is not None,
                     "octave_instead": e is None and any(_nearest(est, n.pitch + d, n.onset_s, 0.05) is not None
                                                         for d in (-12, 12))})
    ests = []
    for j, n in enumerate(est):
        if j in hit_est:
            continue
        sounding = _sounding(ref, n.onset_s)
        if _nearest(ref, n.pitch, n.onset_s) is not None:
            kind = "timing (same key within 100 ms)"
        elif any(p in sounding for p in (n.pitch - 12, n.pitch - 19, n.pitch - 24, n.pitch - 28)):
            kind = "harmonic of a sounding note (+12/19/24/28)"
        elif any(p in sounding for p in (n.pitch + 12, n.pitch + 19, n.pitch + 24)):
            kind = "sub-harmonic (-12/19/24)"
        elif n.pitch in sounding or any(r.pitch == n.pitch and r.onset_s < n.onset_s < r.offset_s + 0.1
                                        for r in ref):
            kind = "re-onset inside a held note"
        elif any(abs(p - n.pitch) <= 2 for p in sounding):
            kind = "neighbour key (+-1-2)"
        else:
            kind = "other"
        ests.append({"pitch": n.pitch, "kind": kind, "length": n.offset_s - n.onset_s})
    return {"refs": refs, "false": ests, "n_est": len(est)}


def _share(rows: list[dict], key: str, buckets) -> dict[str, dict]:
    out = {}
    for lo, hi, name in buckets:
        sel = [r for r in rows if lo <= r[key] <= hi] if key != "length" else [r for r in rows if lo <= r[key] < hi]
        if sel:
            out[name] = {"notes": len(sel), "recall": round(float(np.mean([r["hit"] for r in sel])), 3)}
    return out


def summarize(per_clip: list[dict]) -> dict:
    """Pooled over clips: recall by register, velocity, polyphony and length; false alarms by kind and
    register; onset error histogram of hits."""
    refs = [r for c in per_clip for r in c["refs"]]
    false = [f for c in per_clip for f in c["false"]]
    n_est = sum(c["n_est"] for c in per_clip)
    misses = [r for r in refs if not r["hit"]]
    errors_ms = np.array([r["onset_error"] * 1000 for r in refs if r["hit"]])
    edges = np.arange(-50, 51, 10)
    kinds: dict[str, int] = {}
    for f in false:
        kinds[f["kind"]] = kinds.get(f["kind"], 0) + 1
    false_by_register = {name: int(sum(lo <= f["pitch"] <= hi for f in false)) for lo, hi, name in REGISTERS}
    est_short = int(sum(f["length"] < 0.1 for f in false))
    return {
        "ref_notes": len(refs), "est_notes": n_est, "hits": len(refs) - len(misses),
        "pooled_recall": round(1 - len(misses) / max(len(refs), 1), 3),
        "pooled_precision": round((len(refs) - len(misses)) / max(n_est, 1), 3),
        "recall_by_register": _share(refs, "pitch", REGISTERS),
        "recall_by_velocity": _share(refs, "velocity", VELOCITIES),
        "recall_by_polyphony": _share(refs, "polyphony", POLYPHONY),
        "recall_by_length": _share(refs, "length", LENGTHS),
        "misses_timing_50_100ms": int(sum(r["late_or_early"] for r in misses)),
        "misses_with_octave_estimate": int(sum(r["octave_instead"] for r in misses)),
        "false_alarms": len(false), "false_alarms_by_kind": dict(sorted(kinds.items(), key=lambda kv: -kv[1])),
        "false_alarms_by_register": false_by_register, "false_alarms_shorter_than_100ms": est_short,
        "onset_error_ms": {"mean": round(float(errors_ms.mean()), 1) if errors_ms.size else None,
                           "median": round(float(np.median(errors_ms)), 1) if errors_ms.size else None,
                           "histogram_10ms_bins_from_-50": np.histogram(errors_ms, edges)[0].tolist()},
    }


def decoded(clip: dict, system: str, decoding: dict) -> list:
    """Notes of one cached clip: basic-pitch's default decoding, or ours with `decoding` (the thresholds
    and rules as a bundle's inference_defaults name them)."""
    from models.onsets_frames import RULE_KEYS, decode_notes

    if system == "basic_pitch":
        return basic_pitch_notes(clip["basic_pitch"])
    a = clip["ours"]
    return decode_notes(a["onset"], a["frame"], a["velocity"], decoding["onset_threshold"],
                        decoding["frame_threshold"], offset=a["offset"],
                        **{k: decoding[k] for k in RULE_KEYS if k in decoding})


def analyze(clips: list[dict], decoding: dict) -> dict:
    from training.objectives.onsets_frames import mean_metrics, note_metrics

    result = {}
    for system in ("ours", "basic_pitch"):
        ests = [decoded(c, system, decoding) for c in clips]
        m = mean_metrics([note_metrics(c["ref"], e) for c, e in zip(clips, ests)])
        result[system] = {"note_f1": round(m["note_f1"], 4), "note_precision": round(m["note_precision"], 4),
                          "note_recall": round(m["note_recall"], 4), "note_offset_f1": round(m["note_offset_f1"], 4),
                          **summarize([clip_errors(c["ref"], e) for c, e in zip(clips, ests)])}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("timidity", help="re-render a split with timidity + freepats (an unseen piano)")
    t.add_argument("--data", default="data/piano")
    t.add_argument("--split", default="validation")
    t.add_argument("--out", required=True)
    c = sub.add_parser("cache", help="run both systems once per clip and keep the activations")
    c.add_argument("--bundle", default="bundles/onsets-frames-default")
    c.add_argument("--data", default="data/piano")
    c.add_argument("--split", default="validation")
    c.add_argument("--out", required=True)
    c.add_argument("--threads", type=int, default=1)
    a = sub.add_parser("analyze", help="error breakdowns of ours and basic-pitch from a cache")
    a.add_argument("cache", nargs="+", help="one or more caches, pooled")
    a.add_argument("--onset", type=float, default=None, help="onset threshold (default: the bundle's)")
    a.add_argument("--frame", type=float, default=None, help="frame threshold (default: the bundle's)")
    a.add_argument("--decoding-from", default=None, help="take the decoding of this bundle (default: the cached one's)")
    a.add_argument("--paper-rule", action="store_true", help="decode with the paper's rule only, not the bundle's rules")
    a.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="override one decoding setting, e.g. min_note_frames=1 reonset_threshold=0")
    r = sub.add_parser("retune", help="copy a bundle with the decoding rules of training's decode config and "
                                      "thresholds tuned on validation splits")
    r.add_argument("--bundle", required=True)
    r.add_argument("--roots", nargs="+", default=["data/piano"], help="MAESTRO-layout corpora (their validation split)")
    r.add_argument("-o", "--out", required=True)
    args = parser.parse_args()
    if args.command == "timidity":
        print(json.dumps({"clips": render_timidity(args.data, Path(args.out), args.split), "out": args.out}))
        return
    if args.command == "cache":
        clips = cache(args.bundle, args.data, args.split, Path(args.out), args.threads)
        print(json.dumps({"clips": len(clips), "out": args.out}))
        return
    from models.onsets_frames import RULE_KEYS

    if args.command == "retune":
        from training.objectives.onsets_frames import retune_bundle

        print(json.dumps(retune_bundle(args.bundle, args.out, args.roots)))
        return
    missing = [p for p in args.cache if not Path(p).is_file()]
    if missing:
        raise SystemExit(f"no cache at {missing[0]}; make one with `python -m bench.onsets_frames_errors cache`")
    caches = [load_cache(p) for p in args.cache]
    if {c["split"] for c in caches} - {"validation"}:
        print("warning: a cache of another split than validation; do not tune decoding on it", file=sys.stderr)
    source = Path(args.decoding_from or caches[0]["bundle"])
    decoding = json.loads((source / "manifest.json").read_text())["inference_defaults"]
    if args.paper_rule:
        decoding = {k: decoding[k] for k in ("onset_threshold", "frame_threshold")}
    decoding.update({k: v for k, v in (("onset_threshold", args.onset), ("frame_threshold", args.frame)) if v is not None})
    for item in args.set:
        key, _, value = item.partition("=")
        if key not in RULE_KEYS or not value:
            raise SystemExit(f"--set {item}: expected KEY=VALUE with KEY one of {', '.join(RULE_KEYS)}")
        decoding[key] = json.loads(value.lower())
    clips = [clip for c in caches for clip in c["clips"]]
    print(json.dumps({"caches": args.cache, "clips": len(clips), "decoding": decoding,
                      **analyze(clips, decoding)}, indent=1))


if __name__ == "__main__":
    main()
