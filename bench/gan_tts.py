"""GAN-TTS generator speed: torch eager vs onnxruntime, 2 threads, 16 kHz.

    python -m bench.gan_tts [--quick] [--bundle DIR] [--seconds S]

Times whole-utterance generation of S seconds of audio (default 4 s; best of 10 runs) from
200 Hz features; the figure is audio seconds per wall second (real-time
factor). With --bundle it times that bundle's generator; otherwise the
default config with fresh weights (the cost does not depend on the values).
With --bundle it also times the service's batching on onnxruntime: 16
utterances of 1-4 s through `generate_grouped` (as `synthesize_batch`) against
one `generate` each (`batched_throughput_gain`, best of alternating rounds).
The last line is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from models.gan_tts import GanTTSConfig, GanTTSGenerator, GanTTSSynthesizer, export_onnx, onnx_session, run_onnx


def best_time(fn, repeats: int) -> float:
    fn()  # warm-up: allocations, oneDNN primitives
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def parse_args(what: str):
    """The options every feed-forward TTS bench shares; sets torch's threads.
    Returns (args, repeats, seconds of audio per run)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--bundle", help=f"time this bundle's {what}")
    parser.add_argument("--seconds", type=float, default=None, help="audio per run (default 4, --quick 2)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    return args, (2 if args.quick else 10), args.seconds or (2.0 if args.quick else 4.0)


def model_to_time(args, fresh):
    """(model, its ONNX path or None): the bundle's model, else fresh() with new weights."""
    if not args.bundle:
        return fresh(), None
    from models.bundle import load_bundle
    from models.registry import model_from_bundle

    bundle = load_bundle(args.bundle)
    return model_from_bundle(bundle), bundle.onnx_path


def batching_gain(bundle_dir: str, threads: int, rounds: int) -> float:
    """Throughput of 16 utterances generated in length groups over one at a time (the same runtime)."""
    from models.bundle import load_bundle

    synth = GanTTSSynthesizer(load_bundle(bundle_dir), engine="onnx", threads=threads)
    rng = np.random.default_rng(1)
    feats = [rng.standard_normal((synth.config.in_channels, int(rng.integers(200, 800)))).astype(np.float32)
             for _ in range(16)]
    speakers = [i % len(synth.voices) for i in range(16)]
    alone = best_time(lambda: [synth.generate(f, s) for f, s in zip(feats, speakers)], rounds)
    grouped = best_time(lambda: synth.generate_grouped(feats, speakers), rounds)
    return round(alone / grouped, 3)


def main() -> None:
    args, repeats, seconds = parse_args("generator")
    model, onnx_file = model_to_time(args, lambda: GanTTSGenerator(GanTTSConfig()).eval())
    cfg = model.config
    with tempfile.TemporaryDirectory() as tmp:
        if onnx_file is None:
            onnx_file = export_onnx(model, Path(tmp) / "g.onnx")
        session = onnx_session(onnx_file, threads=args.threads)
        frames = int(seconds * 200)
        rng = np.random.default_rng(0)
        feats = rng.standard_normal((1, cfg.in_channels, frames)).astype(np.float32)
        noise = rng.standard_normal((1, cfg.noise_dim)).astype(np.float32)
        speaker = np.zeros(1, np.int64)
        audio_s = frames * cfg.hop_length / cfg.sample_rate
        t_onnx = best_time(lambda: run_onnx(session, feats, noise, speaker), repeats)
        tf, tn, ts = torch.from_numpy(feats), torch.from_numpy(noise), torch.from_numpy(speaker)
        with torch.no_grad():
            t_torch = best_time(lambda: model(tf, tn, ts), repeats)
            diff = float(np.abs(run_onnx(session, feats, noise, speaker) - model(tf, tn, ts).numpy()).max())
    gain = batching_gain(args.bundle, args.threads, 2 if args.quick else 5) if args.bundle else None
    result = {
        "benchmark": "gan_tts", "batched_throughput_gain": gain, "sample_rate": cfg.sample_rate, "threads": args.threads, "audio_s": audio_s,
        "realtime_factor_torch": round(audio_s / t_torch, 2), "realtime_factor_onnx": round(audio_s / t_onnx, 2),
        "onnx_speedup": round(t_torch / t_onnx, 3), "onnx_max_abs_diff": diff,
        "params": model.num_params(), "channels": list(cfg.channels), "bundle": args.bundle or None,
        "quick": args.quick, "load_avg_1min": round(os.getloadavg()[0], 2),  # the machine is shared
    }
    print(f"torch {result['realtime_factor_torch']}x, onnxruntime {result['realtime_factor_onnx']}x real time "
          f"({args.threads} threads, {cfg.sample_rate} Hz, {model.num_params():,} parameters)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
