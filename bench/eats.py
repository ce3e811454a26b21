"""EATS speed: text-to-audio inference (aligner + decoder) with torch eager and onnxruntime
(2 threads, 16 kHz), and the soft-DTW spectrogram loss's forward + backward on a 2 s window.

    python -m bench.eats [--quick] [--bundle DIR] [--seconds S]

Times whole-utterance inference of about S seconds of audio (default 4 s, --quick 2 s; best
of 10 runs, --quick 2) from token ids: the aligner decides the length, so the figure divides
the audio actually produced by the wall time (real-time factor). Without --bundle the default
config (configs/eats/default.yaml sizes) with fresh weights: the cost does not depend on the
values. soft_dtw_ms: the training loss (80 log-mel bins + log energy, 161 frames each side,
numba kernels) on one 2 s window, forward and backward. The last line is one JSON object.

    python -m bench.eats --sparse [--quick] [--threads 2] [--batching]

Sparse EATS (issue 13): the dense bundle (onnxruntime, torch eager, and the packed runtime on its
dense weights) against the sparse bundles (decoder packed, kernels/conv.py). Real-time factor =
audio seconds per wall second of `EATSSynthesizer.generate` (aligner + decoder, the runtime
`synth` and the service use; no text frontend) on a fixed random phone sequence (seed 0, 62
tokens: about 4 s of audio with the learned durations; 16 with --quick); each figure is the
median over rounds in which all runtimes alternate (the machine is shared), load average beside
it. --batching: 16 random phone sequences of 15-60 tokens through `generate_grouped` (as
`synthesize_batch`) against one `generate` each, per runtime (`..._batched_throughput_gain`).
`eats_rows(quick)` is the part `python -m bench.sparse_conv` reports.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from bench.gan_tts import best_time, model_to_time, parse_args
from bench.sparse_conv import call_times
from models.eats import EATS, EATSConfig, export_onnx, run_onnx
from models.onnx_runtime import onnx_session
from training.soft_dtw import soft_dtw_loss

DEFAULT = dict(n_speakers=2, token_dim=64, aligner_channels=96, aligned_channels=64, init_length=11.5)


def fresh_model() -> EATS:
    torch.manual_seed(0)
    return EATS(EATSConfig(**DEFAULT)).eval()


DENSE = "bundles/eats-mbrola"
# sparsity label -> bundle; rows appear once the bundle exists (the shipped one first)
SPARSE = {"80": ("bundles/eats-mbrola-sparse", "runs/eats-mbrola-sparse80/bundle"),
          "90": ("runs/eats-mbrola-sparse90/bundle",)}


def _present(paths) -> str | None:
    return next((p for p in paths if (Path(p) / "manifest.json").exists()), None)


def synthesizers(threads: int, quick: bool) -> dict:
    """label -> EATSSynthesizer: dense (onnx), dense_torch, dense_packed and each sparse bundle
    present (quick: no dense_torch, the sparsest sparse bundle only)."""
    from models.bundle import load_bundle
    from models.eats import EATSSynthesizer
    from models.gan_tts import packed_runtime

    dense = load_bundle(DENSE)
    out = {"dense": EATSSynthesizer(dense, "onnx", threads)}
    if not quick:  # torch eager on 2 threads crawls on the loaded shared machine (docs/eats.md, "Sparse EATS")
        out["dense_torch"] = EATSSynthesizer(dense, "torch")
    out["dense_packed"] = EATSSynthesizer(dense, "torch")  # the dense weights on the sparse runtime
    packed_runtime(out["dense_packed"].model.decoder)
    present = {s: p for s, paths in SPARSE.items() if (p := _present(paths))}
    if quick and present:
        present = dict([max(present.items())])
    for label, path in present.items():
        out[f"sparse{label}"] = EATSSynthesizer(load_bundle(path))
    return out


def realtime_factors(synths: dict, n_tokens: int, n_rounds: int, calls: int) -> dict[str, float]:
    ids = np.random.default_rng(0).integers(1, synths["dense"].config.n_tokens, n_tokens).tolist()
    audio_s = {k: len(s.generate(ids, 0)[0]) / s.sample_rate for k, s in synths.items()}
    med = {k: [] for k in synths}
    for _ in range(n_rounds):
        for k, s in synths.items():
            med[k].append(statistics.median(call_times(lambda: s.generate(ids, 0), calls)))
    return {k: audio_s[k] / statistics.median(v) for k, v in med.items()}


def batching_gain(synth, n_rounds: int) -> float:
    """Throughput of 16 phone sequences batched in length groups over one `generate` each."""
    rng = np.random.default_rng(1)
    ids = [rng.integers(1, synth.config.n_tokens, int(rng.integers(15, 61))).tolist() for _ in range(16)]
    speakers, speeds = [i % len(synth.voices) for i in range(16)], [1.0] * 16
    alone, grouped = [], []
    for _ in range(n_rounds):  # alternating, best of each
        alone.append(min(call_times(lambda: [synth.generate(i, s) for i, s in zip(ids, speakers)], 1)))
        grouped.append(min(call_times(lambda: synth.generate_grouped(ids, speakers, speeds), 1)))
    return round(min(alone) / min(grouped), 3)


def eats_rows(quick: bool, threads: int = 2) -> dict:
    """`eats_dense_realtime_factor` (the dense bundle on its default engine, onnxruntime),
    `eats_sparse_realtime_factor` (the sparsest sparse bundle, packed), and the other runtimes;
    {} without the bundles. quick: 1 s of audio, fewer rounds, the sparsest bundle (< 15 s)."""
    if not (Path(DENSE) / "manifest.json").exists():
        return {}
    saved = torch.get_num_threads()
    torch.set_num_threads(1)  # building: the decoder's orthogonal init (QR) crawls on 2 threads under load
    try:
        synths = synthesizers(threads, quick)
        torch.set_num_threads(threads)
        rtf = realtime_factors(synths, 16 if quick else 62, *((2, 2) if quick else (3, 3)))
    finally:
        torch.set_num_threads(saved)
    out = {f"eats_{k}_realtime_factor": round(v, 2) for k, v in rtf.items()}
    sparse = sorted(k for k in rtf if k.startswith("sparse"))
    if sparse:
        out["eats_sparse_realtime_factor"] = out[f"eats_{sparse[-1]}_realtime_factor"]
    return out


def main() -> None:
    args, repeats, seconds = parse_args("model")
    model, onnx_file = model_to_time(args, fresh_model)
    cfg = model.config
    rng = np.random.default_rng(0)
    noise = rng.standard_normal((1, cfg.noise_dim)).astype(np.float32)
    speaker, speed = np.zeros(1, np.int64), np.ones(1, np.float32)
    tn, ts, tv = torch.from_numpy(noise), torch.from_numpy(speaker), torch.from_numpy(speed)
    n_tokens = 8
    with torch.no_grad():  # as many tokens as give about `seconds` of audio with these weights
        while n_tokens < 2000:
            tokens = rng.integers(4, cfg.n_tokens, (1, n_tokens))
            frames = float(model.align(torch.from_numpy(tokens), tn, ts)[1].sum())
            if frames / 200 >= seconds:
                break
            n_tokens = max(n_tokens + 1, int(n_tokens * min(4.0, seconds * 200 / max(frames, 1.0))))
    tt = torch.from_numpy(tokens)
    with tempfile.TemporaryDirectory() as tmp:
        if onnx_file is None:
            onnx_file = export_onnx(model, Path(tmp) / "eats.onnx")
        session = onnx_session(onnx_file, threads=args.threads, spinning=False)
        audio = run_onnx(session, tokens, noise, speaker, speed)[0]
        audio_s = audio.shape[1] / cfg.sample_rate
        t_onnx = best_time(lambda: run_onnx(session, tokens, noise, speaker, speed), repeats)
        with torch.no_grad():
            t_torch = best_time(lambda: model.infer(tt, tn, ts, tv), repeats)
            diff = float(np.abs(audio - model.infer(tt, tn, ts, tv)[0].numpy()).max())
    x = torch.randn(1, 161, 81, requires_grad=True)
    y = torch.randn(1, 161, 81)

    def dtw_step():
        x.grad = None
        soft_dtw_loss(x, y, gamma=0.01, warp=1.0).backward()
    t_dtw = best_time(dtw_step, repeats * 2)
    result = {
        "benchmark": "eats", "sample_rate": cfg.sample_rate, "threads": args.threads, "audio_s": round(audio_s, 3),
        "tokens": n_tokens, "realtime_factor_torch": round(audio_s / t_torch, 2),
        "realtime_factor_onnx": round(audio_s / t_onnx, 2), "onnx_speedup": round(t_torch / t_onnx, 3),
        "onnx_max_abs_diff": diff, "soft_dtw_ms": round(1000 * t_dtw, 2), "soft_dtw_frames": [161, 161],
        "params": model.num_params(), "bundle": args.bundle or None, "quick": args.quick,
        "load_avg_1min": round(os.getloadavg()[0], 2),  # the machine is shared
    }
    print(f"torch {result['realtime_factor_torch']}x, onnxruntime {result['realtime_factor_onnx']}x real time "
          f"({args.threads} threads, {cfg.sample_rate} Hz, {model.num_params():,} parameters); "
          f"soft-DTW 2 s window fwd+bwd {result['soft_dtw_ms']} ms")
    print(json.dumps(result))


def sparse_main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description="sparse EATS against dense")
    ap.add_argument("--sparse", action="store_true")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batching", action="store_true", help="also the batched throughput gain per runtime")
    a = ap.parse_args(argv)
    load_before = os.getloadavg()[0]
    result = {"benchmark": "eats", "threads": a.threads, "quick": a.quick, **eats_rows(a.quick, a.threads)}
    if a.batching:
        torch.set_num_threads(a.threads)
        for label, synth in synthesizers(a.threads, a.quick).items():
            if label in ("dense",) or label.startswith("sparse"):  # torch eager on 2 threads: see docs/eats.md
                result[f"eats_{label}_batched_throughput_gain"] = batching_gain(synth, 2 if a.quick else 3)
    result["load_avg_1min"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]  # before, after
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    sparse_main() if "--sparse" in sys.argv else main()
