"""Deep Speech 2 vs pocketsphinx on held-out voices and sentences.

    python -m bench.deepspeech2 [--quick] [--model BUNDLE] [--data CORPUS] [--split test]

Both recognizers get the same 16 kHz audio (the corpus's test split: voices
and sentences that training never saw). Figures: WER and CER (jiwer,
corpus level), real-time factors (audio seconds per wall second, one
utterance at a time, 2 threads), the throughput gain of transcribing 16
utterances handed over together (the runtime splits them into one group per
worker thread and batches each group's recurrences) over the same 16 one at a
time, where one utterance's time goes, the CPU seconds of each part of the
acoustic model one at a time and batched (what bounds the batching gain), and
the native engine vs onnxruntime vs torch. The last line is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def fail(message: str) -> None:
    print(f"bench.deepspeech2: {message}", file=sys.stderr)
    raise SystemExit(2)


def pocketsphinx_transcribe(audio: list[np.ndarray]) -> tuple[list[str], float]:
    from pocketsphinx import Decoder

    decoder = Decoder(samprate=16000, loglevel="FATAL")
    hyps = []
    t0 = time.perf_counter()
    for a in audio:
        pcm = (np.clip(a, -1, 1) * 32767).astype(np.int16).tobytes()
        decoder.start_utt()
        decoder.process_raw(pcm, full_utt=True)
        decoder.end_utt()
        hyp = decoder.hyp()
        hyps.append(hyp.hypstr if hyp else "")
    return hyps, time.perf_counter() - t0


def rounded(x: float | None, digits: int = 4) -> float | None:
    return None if x is None else round(x, digits)


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def stage_times(runtime, audio: list[np.ndarray]) -> dict[str, float]:
    """Seconds per stage, one utterance at a time in this thread: where the time goes."""
    from models.deepspeech2.decode import word_timings
    from models.deepspeech2.text import encode

    out = {"features": 0.0, "acoustic_model": 0.0, "decoder": 0.0, "word_timings": 0.0}
    for a in audio:
        t0 = time.perf_counter()
        feats = runtime.logmel(torch.from_numpy(a)[None])
        t1 = time.perf_counter()
        probs = runtime.utterance_log_probs(a)  # features again: subtracted below
        t2 = time.perf_counter()
        text = runtime.decode(probs, len(a) / runtime.sample_rate).text
        t3 = time.perf_counter()
        word_timings(probs, encode(text), runtime.frame_s, len(a) / runtime.sample_rate)
        t4 = time.perf_counter()
        out["features"] += t1 - t0
        out["acoustic_model"] += (t2 - t1) - (t1 - t0)
        out["decoder"] += (t3 - t2) - (t4 - t3)  # decode() includes the word timings
        out["word_timings"] += t4 - t3
    del feats
    return out


def part_cpu_seconds(runtime, group: list[np.ndarray], rounds: int = 3) -> tuple[dict[str, float], dict[str, float]]:
    """CPU seconds of this thread per part (native engine): the 16 one at a time and as one group
    (recurrences batched), alternating, the round with the least total of each kept (other work on a
    shared machine evicts caches and inflates CPU time too); decoding with word timings is per utterance
    either way, timed once. Empty dicts on the other engines."""
    if runtime.stack is None:
        return {}, {}
    runtime.group_log_probs(group[:2])  # warm-up
    singles, batches = [], []
    for _ in range(rounds):
        singles.append({})
        for a in group:
            runtime.group_log_probs([a], singles[-1])
        batches.append({})
        probs = runtime.group_log_probs(group, batches[-1])
    single, batched = (min(runs, key=lambda d: sum(d.values())) for runs in (singles, batches))
    t0 = time.thread_time()
    for p, a in zip(probs, group):
        runtime.decode(p, len(a) / runtime.sample_rate)
    single["decoder"] = batched["decoder"] = time.thread_time() - t0
    return single, batched


STREAM_CHUNK_MS = 200


def streaming_figures(runtime, audio: list[np.ndarray], refs: list[str]) -> dict[str, float]:
    """Each utterance fed to a stream in 200 ms chunks: speed, the last partial's and the final's error
    rates, and how often the final equals the whole-file transcript."""
    from training.objectives.deepspeech2 import error_rates

    step = runtime.sample_rate * STREAM_CHUNK_MS // 1000
    partials, finals, wall = [], [], 0.0
    for a in audio:
        t0 = time.perf_counter()
        stream = runtime.stream()
        for i in range(0, len(a), step):
            partial = stream.feed(a[i:i + step])
        finals.append(stream.finish().text)
        wall += time.perf_counter() - t0
        partials.append(partial)
    whole = [t.text for t in runtime.transcribe_batch(audio)]
    p, f = error_rates(refs, partials), error_rates(refs, finals)
    return {"stream_realtime_factor": sum(len(a) for a in audio) / runtime.sample_rate / wall,
            "partial_wer": p["wer"], "partial_cer": p["cer"], "stream_wer": f["wer"], "stream_cer": f["cer"],
            "final_matches_whole_file": float(np.mean([a == b for a, b in zip(finals, whole)]))}


def design_checks(runtime, onnx_path, group: list[np.ndarray]) -> dict[str, float]:
    """The alternatives the runtime does not take, on the same 16 utterances: the ONNX model with two
    intra-op threads one utterance at a time, and the 16 as one zero-padded batch (one thread)."""
    from models.onnx_runtime import onnx_session

    feats = [runtime.logmel(torch.from_numpy(a)[None])[0].numpy() for a in group]
    lengths = np.array([len(f) for f in feats])
    padded = np.zeros((len(feats), lengths.max(), feats[0].shape[1]), np.float32)
    for i, f in enumerate(feats):
        padded[i, : len(f)] = f
    one, two = onnx_session(onnx_path, 1, spinning=False), onnx_session(onnx_path, 2, spinning=False)

    def each(session):
        return timed(lambda: [session.run(None, {"features": f[None], "lengths": np.array([len(f)])})
                              for f in feats])

    each(one), each(two)  # warm-up
    seconds = sum(len(a) for a in group) / runtime.sample_rate
    singles = each(one)
    batch = timed(lambda: one.run(None, {"features": padded, "lengths": lengths}))
    return {"onnx_1_thread_realtime_factor": seconds / singles, "onnx_2_threads_realtime_factor": seconds / each(two),
            "padded_batch_model_gain": singles / batch}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(ROOT / "bundles" / "deepspeech2-default"))
    p.add_argument("--data", default=str(ROOT / "data" / "asr_speech"),
                   help="corpus (default: the shipped bundle's, `sparsewave data speech --voices asr`)")
    p.add_argument("--split", default="test")
    p.add_argument("--limit", type=int, default=0, help="utterances (default: all; --quick: 16)")
    p.add_argument("--quick", action="store_true", help="a smaller held-out set, under 50 s")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-pocketsphinx", action="store_true", help="skip pocketsphinx (its figures are null)")
    p.add_argument("--rounds", type=int, default=0, help="alternating rounds of the batching comparison "
                                                         "(default 3; --quick: 2)")
    args = p.parse_args(argv)
    if not (Path(args.model) / "manifest.json").is_file():
        fail(f"no bundle at {args.model}; train and export one (see docs/deepspeech2.md) or pass --model")
    if not (Path(args.data) / "labels.jsonl").is_file():
        fail(f"no corpus at {args.data}; build one with `sparsewave data speech --out {args.data}` or pass --data")
    torch.set_num_threads(args.threads)

    from models.deepspeech2.decode import greedy_labels, labels_to_text
    from models.deepspeech2.runtime import DeepSpeech2Transcriber
    from models.deepspeech2.text import normalize_transcript
    from models.bundle import load_bundle
    from training.objectives.deepspeech2 import error_rates, row_voice, split_audio

    bundle = load_bundle(args.model)
    if bundle.model_type != "deepspeech2":
        fail(f"{args.model} is a {bundle.model_type} bundle, not deepspeech2")
    runtime = DeepSpeech2Transcriber.from_bundle(bundle, threads=args.threads)
    limit = args.limit or (16 if args.quick else 0)
    rounds = args.rounds or (2 if args.quick else 3)
    audio, refs, rows = split_audio(args.data, args.split, limit, runtime.sample_rate)
    seconds = sum(len(a) for a in audio) / runtime.sample_rate
    runtime.transcribe_batch(audio[:2])  # warm-up

    # One utterance at a time: the real-time factor of a single stream.
    hyps: list[str] = []
    times: list[float] = []
    for a in audio:
        t0 = time.perf_counter()
        hyps.append(runtime.transcribe_batch([a])[0].text)
        times.append(time.perf_counter() - t0)
    wall = sum(times)
    ours = error_rates(refs, hyps)
    probs = [lp for i in range(0, len(audio), 16) for lp in runtime.log_probs(audio[i:i + 16])]
    greedy = error_rates(refs, [labels_to_text(greedy_labels(lp)) for lp in probs])

    # Batch Dispatch: 16 concurrent utterances handed over together vs one at a time, the same
    # 16, measured back to back in alternating rounds so that both see the same load.
    group = (audio * (16 // len(audio) + 1))[:16]
    singles = batched = model_singles = model_batched = 0.0
    for _ in range(rounds):
        singles += timed(lambda: [runtime.transcribe_batch([a]) for a in group])
        batched += timed(lambda: runtime.transcribe_batch(group))
        model_singles += timed(lambda: [runtime.log_probs([a]) for a in group])
        model_batched += timed(lambda: runtime.log_probs(group))
    # In one thread with one torch thread, as the runtime's workers (and the service's streams) run.
    worker = ThreadPoolExecutor(1, initializer=torch.set_num_threads, initargs=(1,))
    stages = worker.submit(stage_times, runtime, group).result()
    parts_single, parts_batched = worker.submit(part_cpu_seconds, runtime, group).result()

    # Acoustic model alone, one utterance at a time: torch vs onnxruntime (same threads).
    onnx_rtf, native_rtf, design = None, None, {}
    if bundle.onnx_path is not None:
        onnx = DeepSpeech2Transcriber.from_bundle(bundle, engine="onnx", threads=args.threads)
        native = DeepSpeech2Transcriber.from_bundle(bundle, engine="native", threads=args.threads)
        group_s = sum(len(a) for a in group) / runtime.sample_rate
        eager = DeepSpeech2Transcriber.from_bundle(bundle, engine="torch")
        eager.log_probs(group[:1])
        torch_rtf = group_s / timed(lambda: [eager.log_probs([a]) for a in group])
        onnx.log_probs(group[:1])
        onnx_rtf = group_s / timed(lambda: [onnx.log_probs([a]) for a in group])
        native.log_probs(group[:1])
        native_rtf = group_s / timed(lambda: [native.log_probs([a]) for a in group])
        design = worker.submit(design_checks, runtime, bundle.onnx_path, group).result()

    streaming = worker.submit(streaming_figures, runtime, audio, refs).result() if runtime.can_stream else {}

    if args.no_pocketsphinx:
        ps_hyps, ps_wall, ps = [""] * len(audio), None, {"wer": None, "cer": None}
    else:
        ps_hyps, ps_wall = pocketsphinx_transcribe(audio)
        ps = error_rates(refs, [normalize_transcript(h) for h in ps_hyps])

    voices = sorted({row_voice(r) for r in rows})
    print(f"held-out split {args.split!r}: {len(audio)} utterances, {seconds:.1f} s of audio, voices {voices}")
    print(f"deepspeech2 ({runtime.decoder}): WER {ours['wer']:.4f} CER {ours['cer']:.4f}  "
          f"(greedy WER {greedy['wer']:.4f} CER {greedy['cer']:.4f}); {seconds / wall:.1f}x real time")
    if ps_wall is not None:
        print(f"pocketsphinx: WER {ps['wer']:.4f} CER {ps['cer']:.4f}; {seconds / ps_wall:.1f}x real time")
    print(f"16 utterances, {rounds} rounds: one at a time {singles:.3f} s, batched {batched:.3f} s -> "
          f"{singles / batched:.2f}x (acoustic model only: {model_singles / model_batched:.2f}x)")
    total = sum(stages.values())
    print("one at a time, where the time goes: " + ", ".join(
        f"{k} {v:.3f} s ({100 * v / total:.0f}%)" for k, v in stages.items()))
    ceiling = {}
    if parts_single:
        one_core = sum(parts_single.values()) / sum(parts_batched.values())
        ceiling = {"batching_ceiling_one_core": one_core, "batching_ceiling_two_cores": 2 * one_core}
        print("CPU seconds per part, the 16 one at a time vs as one group: " + ", ".join(
            f"{k} {parts_single[k]:.3f} vs {parts_batched[k]:.3f}" for k in parts_single) +
            f" (decoder: flashlight + word timings); so batching can gain at most {one_core:.2f}x on one free core, "
            f"{2 * one_core:.2f}x on two")
    if onnx_rtf is not None:
        print(f"acoustic model one at a time: native {native_rtf:.1f}x, torch {torch_rtf:.1f}x, "
              f"onnxruntime {onnx_rtf:.1f}x real time; "
              f"onnxruntime 1 vs 2 intra-op threads {design['onnx_1_thread_realtime_factor']:.1f}x vs "
              f"{design['onnx_2_threads_realtime_factor']:.1f}x; the 16 as one padded batch "
              f"{design['padded_batch_model_gain']:.2f}x the throughput of one at a time (one thread)")
    if streaming:
        print(f"streaming ({STREAM_CHUNK_MS} ms chunks, one stream at a time): {streaming['stream_realtime_factor']:.1f}x "
              f"real time; last partial (greedy) WER {streaming['partial_wer']:.4f} CER {streaming['partial_cer']:.4f}; "
              f"final WER {streaming['stream_wer']:.4f} CER {streaming['stream_cer']:.4f}; final == whole file for "
              f"{streaming['final_matches_whole_file']:.0%} of utterances")
    for ref, hyp, ps_hyp in list(zip(refs, hyps, ps_hyps))[:3]:
        print(f"  ref: {ref}\n  ds2: {hyp}\n  ps:  {normalize_transcript(ps_hyp)}")
    result = {"wer": round(ours["wer"], 4), "cer": round(ours["cer"], 4),
              "pocketsphinx_wer": rounded(ps["wer"]), "pocketsphinx_cer": rounded(ps["cer"]),
              "realtime_factor": round(seconds / wall, 2),
              "pocketsphinx_realtime_factor": rounded(seconds / ps_wall if ps_wall else None, 2),
              "batched_throughput_gain": round(singles / batched, 2),
              "acoustic_batched_throughput_gain": round(model_singles / model_batched, 2),
              "greedy_wer": round(greedy["wer"], 4), "greedy_cer": round(greedy["cer"], 4),
              "onnx_realtime_factor": round(onnx_rtf, 2) if onnx_rtf else None,
              "native_realtime_factor": round(native_rtf, 2) if onnx_rtf else None,
              "engine": runtime.engine,
              "cpu_part_seconds_single": {k: round(v, 3) for k, v in parts_single.items()},
              "cpu_part_seconds_batched": {k: round(v, 3) for k, v in parts_batched.items()},
              "torch_realtime_factor": round(torch_rtf, 2) if onnx_rtf else None,
              "stage_seconds": {k: round(v, 3) for k, v in stages.items()},
              **{k: round(v, 4) for k, v in {**design, **streaming, **ceiling}.items()},
              "utterances": len(audio), "audio_s": round(seconds, 1), "threads": args.threads,
              "decoder": runtime.decoder}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
