"""Deep Speech 2 vs pocketsphinx on held-out voices and sentences.

    python -m bench.deepspeech2 [--quick] [--model BUNDLE] [--data CORPUS] [--split test]

Both recognizers get the same 16 kHz audio (the corpus's test split: voices
and sentences that training never saw). Figures: WER and CER (jiwer,
corpus level), real-time factors (audio seconds per wall second, one
utterance at a time, 2 threads), the throughput gain of transcribing 16
utterances as one batch over one at a time, and onnxruntime vs torch for the
acoustic model. The last line is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
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


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(ROOT / "bundles" / "deepspeech2-default"))
    p.add_argument("--data", default=str(ROOT / "data" / "asr_speech"),
                   help="corpus (default: the shipped bundle's, `sparsewave data speech --voices asr`)")
    p.add_argument("--split", default="test")
    p.add_argument("--limit", type=int, default=0, help="utterances (default: all; --quick: 24)")
    p.add_argument("--quick", action="store_true", help="a smaller held-out set, under 50 s")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    if not (Path(args.model) / "manifest.json").is_file():
        fail(f"no bundle at {args.model}; train and export one (see docs/deepspeech2.md) or pass --model")
    if not (Path(args.data) / "labels.jsonl").is_file():
        fail(f"no corpus at {args.data}; build one with `sparsewave data speech --out {args.data}` or pass --data")
    torch.set_num_threads(args.threads)

    from models.deepspeech2.decode import greedy_labels, labels_to_text
    from models.deepspeech2.runtime import DeepSpeech2Transcriber
    from models.deepspeech2.text import normalize_transcript
    from models.inference import load_runtime
    from training.objectives.deepspeech2 import error_rates, row_voice, split_audio

    bundle, runtime = load_runtime(args.model)
    limit = args.limit or (24 if args.quick else 0)
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

    # Batch Dispatch: 16 concurrent utterances as one batch vs one at a time.
    group = (audio * (16 // len(audio) + 1))[:16]
    singles = sum((times * (16 // len(times) + 1))[:16])
    batched = timed(lambda: runtime.transcribe_batch(group))
    model_singles = timed(lambda: [runtime.log_probs([a]) for a in group])
    model_batched = timed(lambda: runtime.log_probs(group))

    # Acoustic model alone, one utterance at a time: torch vs onnxruntime (same threads).
    onnx_rtf = None
    if bundle.onnx_path is not None:
        onnx = DeepSpeech2Transcriber.from_bundle(bundle, engine="onnx", threads=args.threads)
        group_s = sum(len(a) for a in group) / runtime.sample_rate
        eager = DeepSpeech2Transcriber.from_bundle(bundle, engine="torch")
        eager.log_probs(group[:1])
        torch_rtf = group_s / timed(lambda: [eager.log_probs([a]) for a in group])
        onnx.log_probs(group[:1])
        onnx_rtf = group_s / timed(lambda: [onnx.log_probs([a]) for a in group])

    ps_hyps, ps_wall = pocketsphinx_transcribe(audio)
    ps = error_rates(refs, [normalize_transcript(h) for h in ps_hyps])

    voices = sorted({row_voice(r) for r in rows})
    print(f"held-out split {args.split!r}: {len(audio)} utterances, {seconds:.1f} s of audio, voices {voices}")
    print(f"deepspeech2 ({runtime.decoder}): WER {ours['wer']:.4f} CER {ours['cer']:.4f}  "
          f"(greedy WER {greedy['wer']:.4f} CER {greedy['cer']:.4f}); {seconds / wall:.1f}x real time")
    print(f"pocketsphinx: WER {ps['wer']:.4f} CER {ps['cer']:.4f}; {seconds / ps_wall:.1f}x real time")
    print(f"16 utterances: one at a time {singles:.3f} s, batched {batched:.3f} s -> {singles / batched:.2f}x "
          f"(acoustic model only: {model_singles / model_batched:.2f}x)")
    if onnx_rtf is not None:
        print(f"acoustic model one at a time: torch {torch_rtf:.1f}x, onnxruntime {onnx_rtf:.1f}x real time")
    for ref, hyp, ps_hyp in list(zip(refs, hyps, ps_hyps))[:3]:
        print(f"  ref: {ref}\n  ds2: {hyp}\n  ps:  {normalize_transcript(ps_hyp)}")
    result = {"wer": round(ours["wer"], 4), "cer": round(ours["cer"], 4),
              "pocketsphinx_wer": round(ps["wer"], 4), "pocketsphinx_cer": round(ps["cer"], 4),
              "realtime_factor": round(seconds / wall, 2),
              "pocketsphinx_realtime_factor": round(seconds / ps_wall, 2),
              "batched_throughput_gain": round(singles / batched, 2),
              "acoustic_batched_throughput_gain": round(model_singles / model_batched, 2),
              "greedy_wer": round(greedy["wer"], 4), "greedy_cer": round(greedy["cer"], 4),
              "onnx_realtime_factor": round(onnx_rtf, 2) if onnx_rtf else None,
              "torch_realtime_factor": round(torch_rtf, 2) if onnx_rtf else None,
              "utterances": len(audio), "audio_s": round(seconds, 1), "threads": args.threads,
              "decoder": runtime.decoder}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
