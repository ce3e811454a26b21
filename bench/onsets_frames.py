"""Piano transcription on held-out clips: the Onsets and Frames bundle side by side with basic-pitch.

    python -m bench.onsets_frames [--quick] [--bundle DIR] [--data DIR] [--split test] [--threads 2]

The clips are the corpus's test split (`sparsewave data piano` renders it with a soundfont and from
pieces that training never saw). Both systems start from the audio file, at 2 threads: ours reads,
resamples to 16 kHz and transcribes; basic-pitch (0.4.0, its ONNX model through onnxruntime, its
default thresholds) runs `basic_pitch.inference.predict`. Scores are mir_eval note F1 (onset within
50 ms) and note-with-offset F1 against the MIDI with the sustain pedal applied, averaged per clip;
real-time factors are audio seconds per wall second over all clips, after one warm-up clip.

Install basic-pitch without its TensorFlow dependency:
    pip install --no-deps basic-pitch==0.4.0 && pip install "resampy<0.4.3" scikit-learn
The last line is one JSON object.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

QUICK_CLIPS = 4


def basic_pitch_runner(threads: int, onset_threshold: float = 0.5, frame_threshold: float = 0.3,
                       minimum_note_length_ms: float = 127.70):
    """A function path -> notes using basic-pitch's ONNX model (its defaults unless given), or None with the reason."""
    logging.getLogger().setLevel(logging.ERROR)  # basic-pitch warns about every backend it lacks
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            import onnxruntime as ort
            from basic_pitch import ICASSP_2022_MODEL_PATH
            from basic_pitch.inference import Model, predict
    except ImportError as exc:
        return None, f"basic-pitch is not installed ({exc})"
    model = Model(Path(ICASSP_2022_MODEL_PATH).with_suffix(".onnx"))
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    model.model = ort.InferenceSession(str(Path(ICASSP_2022_MODEL_PATH).with_suffix(".onnx")), options,
                                       providers=["CPUExecutionProvider"])

    def run(path):
        from models.inference import Note

        with contextlib.redirect_stdout(io.StringIO()):
            _, _, events = predict(str(path), model, onset_threshold, frame_threshold, minimum_note_length_ms)
        return [Note(int(p), float(s), float(e), int(np.clip(round(a * 127), 1, 127))) for s, e, p, a, _ in events]

    run.model = model
    return run, ""


def tune_basic_pitch(model, records) -> tuple[dict, dict[str, float]]:
    """basic-pitch's thresholds and minimum note length tuned on `records` as ours are (mean of note F1
    and note-with-offset F1), from one model run per clip."""
    from basic_pitch import note_creation
    from basic_pitch.constants import AUDIO_SAMPLE_RATE, FFT_HOP
    from basic_pitch.inference import run_inference

    from models.inference import Note
    from models.midi import midi_to_notes
    from training.objectives.onsets_frames import mean_metrics, note_metrics

    outputs = [(run_inference(str(r.audio_path), model), midi_to_notes(r.midi_path)) for r in records]
    best = (-1.0, {}, {})
    for on in (0.3, 0.4, 0.5, 0.6, 0.7):
        for fr in (0.2, 0.3, 0.4, 0.5):
            for min_ms in (58.0, 127.70):
                params = {"onset_threshold": on, "frame_threshold": fr, "minimum_note_length_ms": min_ms}
                per_clip = []
                for out, ref in outputs:
                    _, events = note_creation.model_output_to_notes(
                        out, onset_thresh=on, frame_thresh=fr,
                        min_note_len=int(np.round(min_ms / 1000 * (AUDIO_SAMPLE_RATE / FFT_HOP))))
                    est = [Note(int(p), float(s), float(e), int(np.clip(round(a * 127), 1, 127)))
                           for s, e, p, a, _ in events]
                    per_clip.append(note_metrics(ref, est))
                m = mean_metrics(per_clip)
                if (m["note_f1"] + m["note_offset_f1"]) / 2 > best[0]:
                    best = ((m["note_f1"] + m["note_offset_f1"]) / 2, params, m)
    return best[1], best[2]


def ours_runner(bundle_dir: str, engine: str, threads: int):
    import torch

    from models.audio import read_audio, resample
    from models.bundle import load_bundle
    from models.onsets_frames import OnsetsFramesTranscriber

    torch.set_num_threads(threads)
    bundle = load_bundle(bundle_dir)
    kwargs = {"engine": engine, "threads": threads} if engine == "onnx" else {"engine": engine}
    transcriber = OnsetsFramesTranscriber.from_bundle(bundle, **kwargs)

    def run(path):
        audio, sr = read_audio(path)
        return transcriber.transcribe(resample(audio, sr, transcriber.sample_rate))

    return run, transcriber


def paired(ours: list[float], theirs: list[float]) -> dict:
    """Per-clip note F1 differences: how many clips each side wins and the mean's standard error
    (the clip-to-clip noise the means hide)."""
    d = np.asarray(ours) - np.asarray(theirs)
    se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")
    return {"note_f1_diff": round(float(d.mean()), 4), "note_f1_diff_stderr": round(se, 4),
            "clips_better": int((d > 0).sum()), "clips_worse": int((d < 0).sum())}


def score(run, records, per_clip_out: list | None = None) -> tuple[dict[str, float], float]:
    from models.midi import midi_to_notes
    from training.objectives.onsets_frames import mean_metrics, note_metrics

    run(records[0].audio_path)  # warm-up: allocations, oneDNN primitives, lazy imports
    per_clip, audio_s, wall = [], 0.0, 0.0
    for rec in records:
        t0 = time.perf_counter()
        est = run(rec.audio_path)
        wall += time.perf_counter() - t0
        audio_s += rec.duration
        per_clip.append(note_metrics(midi_to_notes(rec.midi_path), est))
    if per_clip_out is not None:
        per_clip_out.extend(m["note_f1"] for m in per_clip)
    return mean_metrics(per_clip), audio_s / max(wall, 1e-9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"the first {QUICK_CLIPS} clips only")
    parser.add_argument("--bundle", default="bundles/onsets-frames-default")
    parser.add_argument("--data", default="data/piano", help="a MAESTRO-layout corpus (sparsewave data piano)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--engine", default="onnx", choices=["onnx", "torch"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tune-basic-pitch", action="store_true",
                        help="also score basic-pitch with thresholds tuned on the validation split, as ours are")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    if not (Path(args.bundle) / "manifest.json").is_file():
        sys.exit(f"no bundle at {args.bundle}: train and export one, or pass --bundle DIR")
    from training.data.readers import CorpusError, read_maestro

    try:
        records = [r for r in read_maestro(args.data) if r.split == args.split]
    except CorpusError as exc:
        sys.exit(f"no corpus at {args.data} ({exc}); build one with `sparsewave data piano --out {args.data}`")
    if not records:
        sys.exit(f"{args.data} has no clips in split {args.split!r}")
    records = records[:QUICK_CLIPS] if args.quick else records
    bp_run, why = basic_pitch_runner(args.threads)
    if bp_run is None:
        sys.exit(why + "; pip install --no-deps basic-pitch==0.4.0 'resampy<0.4.3' scikit-learn")
    ours, transcriber = ours_runner(args.bundle, args.engine, args.threads)
    t0 = time.perf_counter()
    ours_f1, bp_f1 = [], []
    m, rtf = score(ours, records, ours_f1)
    bp, bp_rtf = score(bp_run, records, bp_f1)
    fonts = sorted({json.loads(line).get("soundfont", "?") for line in (Path(args.data) / "clips.jsonl")
                    .read_text().splitlines() if line and json.loads(line).get("split") == args.split}) \
        if (Path(args.data) / "clips.jsonl").is_file() else []
    result = {
        "note_f1": round(m["note_f1"], 4), "note_offset_f1": round(m["note_offset_f1"], 4),
        "note_offset_velocity_f1": round(m["note_offset_velocity_f1"], 4), "frame_f1": round(m["frame_f1"], 4),
        "basic_pitch_note_f1": round(bp["note_f1"], 4), "basic_pitch_note_offset_f1": round(bp["note_offset_f1"], 4),
        "basic_pitch_frame_f1": round(bp["frame_f1"], 4),
        "realtime_factor": round(rtf, 1), "basic_pitch_realtime_factor": round(bp_rtf, 1),
        "speedup_vs_basic_pitch": round(rtf / bp_rtf, 2),
        "clips": len(records), "audio_seconds": round(sum(r.duration for r in records), 1), "split": args.split,
        "soundfonts": fonts, "engine": args.engine, "threads": args.threads,
        "thresholds": [transcriber.onset_threshold, transcriber.frame_threshold],
        "wall_seconds": round(time.perf_counter() - t0, 1),
        "vs_basic_pitch_per_clip": paired(ours_f1, bp_f1),
    }
    if args.tune_basic_pitch:
        val = [r for r in read_maestro(args.data) if r.split == "validation"]
        params, _ = tune_basic_pitch(bp_run.model, val)
        tuned, _ = score(basic_pitch_runner(args.threads, **params)[0], records)
        result.update({"basic_pitch_tuned_note_f1": round(tuned["note_f1"], 4),
                       "basic_pitch_tuned_note_offset_f1": round(tuned["note_offset_f1"], 4),
                       "basic_pitch_tuned_params": params})
    print(f"ours: note F1 {result['note_f1']:.3f}, with offsets {result['note_offset_f1']:.3f}, "
          f"{result['realtime_factor']}x real time; basic-pitch: note F1 {result['basic_pitch_note_f1']:.3f}, "
          f"with offsets {result['basic_pitch_note_offset_f1']:.3f}, {result['basic_pitch_realtime_factor']}x")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
