"""EATS speed: text-to-audio inference (aligner + decoder) with torch eager and onnxruntime
(2 threads, 16 kHz), and the soft-DTW spectrogram loss's forward + backward on a 2 s window.

    python -m bench.eats [--quick] [--bundle DIR] [--seconds S]

Times whole-utterance inference of about S seconds of audio (default 4 s, --quick 2 s; best
of 10 runs, --quick 2) from token ids: the aligner decides the length, so the figure divides
the audio actually produced by the wall time (real-time factor). Without --bundle the default
config (configs/eats/default.yaml sizes) with fresh weights: the cost does not depend on the
values. soft_dtw_ms: the training loss (80 log-mel bins + log energy, 161 frames each side,
numba kernels) on one 2 s window, forward and backward. The last line is one JSON object.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from bench.gan_tts import best_time, model_to_time, parse_args
from models.eats import EATS, EATSConfig, export_onnx, run_onnx
from models.onnx_runtime import onnx_session
from training.soft_dtw import soft_dtw_loss

DEFAULT = dict(n_speakers=2, token_dim=64, aligner_channels=96, aligned_channels=64, init_length=11.5)


def fresh_model() -> EATS:
    torch.manual_seed(0)
    return EATS(EATSConfig(**DEFAULT)).eval()


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


if __name__ == "__main__":
    main()
