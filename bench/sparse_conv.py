"""Sparse 1x1 convolution (kernels/conv.py: the C kernel where built) against torch's dense conv1d, and sparse
feed-forward models against their dense twins, on 2 threads.

    python -m bench.sparse_conv [--quick] [--threads 2]

conv1x1: 256 in and out channels, 1,000 frames, 90% of (br, 1) blocks zero
(16x1 is the headline, 8x1 and 4x1 beside it), against F.conv1d of the same
dense weight. Models: each sparse bundle that exists next to its dense twin
(SPARSE_BUNDLES), real-time factor = audio (or music) seconds per wall
second of the model's forward pass on the same input. The machine is shared:
every figure is the median of several rounds (sparse and dense interleaved
in each), and the load average is reported. The last line is one JSON object.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import time
from pathlib import Path

import numba
import numpy as np
import torch
import torch.nn.functional as F

from kernels import BlockSparseMatrix
from kernels import conv as sconv

# model key -> (dense bundle, sparse bundles by sparsity label); rows appear once the bundles exist
SPARSE_BUNDLES = {
    "gan_tts": ("bundles/gan-tts-default", {"90": "bundles/gan-tts-sparse90", "74": "runs/gan-tts-sparse74-bundle"}),
    "onsets_frames": ("bundles/onsets-frames-default", {"90": "bundles/onsets-frames-sparse90", "70": "runs/onsets-frames-sparse70-bundle"}),
}
# A narrower dense model trained as the sparse model's control (issue 13: "no worse quality than
# the dense model of the same speed"); timed on its shipped engine and on the packed runtime
# when its bundle exists (docs/sparse_conv.md, "The dense model of the same speed").
DENSE_CONTROLS = {"gan_tts": "runs/gan-tts-narrow-bundle"}
# Models whose own bench module times dense against sparse (each returns the
# `<model>_sparse_realtime_factor` / `<model>_dense_realtime_factor` keys; {} without its bundles).
OWN_ROWS = {"eats": ("bench.eats", "eats_rows"), "parallel_wavenet": ("bench.parallel_wavenet", "parallel_wavenet_rows")}


def own_rows(threads: int, quick: bool, keys: list[str]) -> dict:
    out = {}
    for key in keys:
        module, name = OWN_ROWS[key]
        out.update(getattr(importlib.import_module(module), name)(quick, threads=threads))
    return out


def call_times(fn, calls: int) -> list[float]:
    """Seconds of each of `calls` calls (after one warm-up)."""
    fn()
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def rounds(fns: dict, n_rounds: int, calls: int) -> tuple[dict[str, float], dict[str, float]]:
    """(median over rounds of each fn's median time, minimum over all calls); the fns
    alternate within a round. On a loaded machine the minimum shows what the code
    can do, the median what it did."""
    med, low = {k: [] for k in fns}, {k: [] for k in fns}
    for _ in range(n_rounds):
        for k, fn in fns.items():
            times = call_times(fn, calls)
            med[k].append(statistics.median(times))
            low[k].append(min(times))
    return {k: statistics.median(v) for k, v in med.items()}, {k: min(v) for k, v in low.items()}


def conv_case(block, sparsity: float, threads: int, n_rounds: int, calls: int, c: int = 256, t: int = 1000):
    g = torch.Generator().manual_seed(0)
    br = block[0]
    keep = torch.rand(c // br, c, generator=g) >= sparsity
    w = torch.randn(c, c, generator=g) * keep.repeat_interleave(br, 0)
    m = BlockSparseMatrix.from_dense(w, block=block)
    x = torch.randn(1, c, t, generator=g)
    w3 = w[:, :, None].contiguous()
    with torch.no_grad():
        err = float((sconv.conv1d(m, x, threads=threads) - F.conv1d(x, w3)).abs().max())
        times, best = rounds({"sparse": lambda: sconv.conv1d(m, x, threads=threads),
                              "dense": lambda: F.conv1d(x, w3)}, n_rounds, calls)
    density = m.density
    speedup = times["dense"] / times["sparse"]
    return {"block": list(block), "threads": threads, "density": round(density, 4),
            "sparse_us": round(times["sparse"] * 1e6, 1), "dense_us": round(times["dense"] * 1e6, 1),
            "speedup": round(speedup, 2), "fraction_of_ideal": round(speedup * density, 3),
            "sparse_min_us": round(best["sparse"] * 1e6, 1), "dense_min_us": round(best["dense"] * 1e6, 1),
            "speedup_of_minimums": round(best["dense"] / best["sparse"], 2), "max_abs_diff": err}


# (Cout, Cin, kernel, dilation, frames, block rows, sparsity): GAN-TTS layers at 4 s of audio
LAYERS = [(96, 96, 3, 8, 800, 4, 0.9), (64, 64, 3, 4, 3200, 4, 0.9), (32, 32, 3, 2, 32000, 4, 0.9),
          (32, 48, 1, 1, 32000, 4, 0.9), (16, 32, 3, 1, 64000, 4, 0.9), (16, 16, 3, 8, 64000, 16, 0.0),
          (16, 32, 1, 1, 64000, 16, 0.0)]


def layer_rows(n_rounds: int = 5, calls: int = 5) -> list[dict]:
    """One thread: each GAN-TTS-shaped conv on the C kernel, the numba kernel and torch's dense conv1d."""
    from kernels import ops
    rows = []
    g = torch.Generator().manual_seed(0)
    for cout, cin, k, d, t, br, sparsity in LAYERS:
        keep = torch.rand(cout // br, cin * k, generator=g) >= sparsity
        w = torch.randn(cout, cin * k, generator=g) * keep.repeat_interleave(br, 0)
        m, x, b, pad = BlockSparseMatrix.from_dense(w, block=(br, 1)), torch.randn(1, cin, t), torch.randn(cout), d * (k - 1) // 2
        lib, w3 = ops.c_spmm_lib(), w.reshape(cout, cin, k)

        def numba_conv():
            ops.c_spmm_lib = lambda: None  # the numba kernel: the dispatcher sees no C library
            try:
                sconv.conv1d(m, x, b, k, d, pad, threads=1)
            finally:
                ops.c_spmm_lib = c_lib
        c_lib = ops.c_spmm_lib
        fns = {"numba": numba_conv, "dense": lambda: F.conv1d(x, w3, b, padding=pad, dilation=d)}
        if lib is not None:
            fns["c"] = lambda: sconv.conv1d(m, x, b, k, d, pad)
        with torch.no_grad():
            times, _ = rounds(fns, n_rounds, calls)
        rows.append({"shape": [cout, cin, k, d, t], "block": [br, 1], "sparsity": sparsity,
                     **{f"{key}_us": round(v * 1e6, 1) for key, v in times.items()}})
        print(f"conv {cout}x{cin} k{k} d{d}, {t} frames, {br}x1, {sparsity:.0%} zero: "
              + ", ".join(f"{key} {v * 1e6:.0f} us" for key, v in times.items()))
    return rows


# --- models -----------------------------------------------------------------------
def _gan_tts_timer(path: str, seconds: float, threads: int, engine: str = "default"):
    """(fn, audio seconds): the generator's forward pass over `seconds` of random features,
    on the bundle's default engine (onnxruntime for dense bundles; for packed bundles the
    torch engine's packed_runtime, as GanTTSSynthesizer runs it), torch eager ("torch"), or
    packed_runtime for any bundle ("packed": a dense one runs its convs as dense blocks)."""
    from models.bundle import load_bundle
    from models.gan_tts import has_packed_layers, onnx_session, packed_runtime, run_onnx
    from models.registry import model_from_bundle

    bundle = load_bundle(path)
    model = model_from_bundle(bundle)
    cfg = model.config
    frames = int(seconds * 200)
    rng = np.random.default_rng(0)
    feats = rng.standard_normal((1, cfg.in_channels, frames)).astype(np.float32)
    noise = rng.standard_normal((1, cfg.noise_dim)).astype(np.float32)
    speaker = np.zeros(1, np.int64)
    if engine == "default" and bundle.onnx_path is not None and not bundle.manifest.get("sparsity"):
        session = onnx_session(bundle.onnx_path, threads=threads, spinning=False)
        return (lambda: run_onnx(session, feats, noise, speaker)), seconds
    if engine == "packed" or (engine == "default" and has_packed_layers(model)):
        packed_runtime(model)
    tf, tn, ts = torch.from_numpy(feats), torch.from_numpy(noise), torch.from_numpy(speaker)

    def run():
        with torch.no_grad():
            model(tf, tn, ts)
    return run, seconds


def _onsets_frames_timer(path: str, seconds: float, threads: int, engine: str = "default"):
    """The acoustic model's forward pass over `seconds` of random log-mel (the default engine is torch)."""
    from models.bundle import load_bundle
    from models.registry import model_from_bundle

    bundle = load_bundle(path)
    model = model_from_bundle(bundle)
    feats = bundle.manifest["feature_config"]
    frames = int(seconds * feats["sample_rate"] / feats["hop_length"])
    x = torch.randn(1, frames, model.config.n_mels)

    def run():
        with torch.no_grad():
            model(x)
    return run, seconds


TIMERS = {"gan_tts": _gan_tts_timer, "onsets_frames": _onsets_frames_timer}
PACKED_ENGINE = {"gan_tts"}  # models whose timer takes engine="packed"
SECONDS = {"gan_tts": (1.0, 4.0), "onsets_frames": (8.0, 32.0)}  # (--quick, full): an utterance; a runtime window


def model_rows(threads: int, quick: bool, keys: list[str]) -> dict:
    out = {}
    n_rounds, calls = (2, 2) if quick else (5, 5)
    for key in keys:
        dense_path, sparse_paths = SPARSE_BUNDLES[key]
        seconds = SECONDS[key][0 if quick else 1]
        present = {s: p for s, p in sparse_paths.items() if (Path(p) / "manifest.json").exists()}
        if not present or not (Path(dense_path) / "manifest.json").exists():
            continue
        if quick:
            present = dict([max(present.items())])
        fns, audio = {}, {}
        for label, path in {"dense": dense_path, **{f"sparse{s}": p for s, p in present.items()}}.items():
            fns[label], audio[label] = TIMERS[key](path, seconds, threads)
        fns["dense_torch"], audio["dense_torch"] = TIMERS[key](dense_path, seconds, threads, "torch")
        if key in PACKED_ENGINE:  # the dense weights on the sparse models' runtime: what sparsity itself buys
            fns["dense_packed"], audio["dense_packed"] = TIMERS[key](dense_path, seconds, threads, "packed")
        control = DENSE_CONTROLS.get(key)
        if control and (Path(control) / "manifest.json").exists():
            fns["narrow"], audio["narrow"] = TIMERS[key](control, seconds, threads)
            if key in PACKED_ENGINE:
                fns["narrow_packed"], audio["narrow_packed"] = TIMERS[key](control, seconds, threads, "packed")
        times, _ = rounds(fns, n_rounds, calls)
        rtf = {label: audio[label] / t for label, t in times.items()}
        best = max(present)
        out[f"{key}_dense_realtime_factor"] = round(rtf["dense"], 2)
        out[f"{key}_dense_torch_realtime_factor"] = round(rtf["dense_torch"], 2)
        if "dense_packed" in rtf:
            out[f"{key}_dense_packed_realtime_factor"] = round(rtf["dense_packed"], 2)
        out[f"{key}_sparse_realtime_factor"] = round(rtf[f"sparse{best}"], 2)
        for label in ("narrow", "narrow_packed"):
            if label in rtf:
                out[f"{key}_dense_{label}_realtime_factor"] = round(rtf[label], 2)
        for s in present:
            out[f"{key}_sparse{s}_realtime_factor"] = round(rtf[f"sparse{s}"], 2)
        packed = f", packed runtime {rtf['dense_packed']:.1f}x" if "dense_packed" in rtf else ""
        print(f"{key}: dense {rtf['dense']:.1f}x real time ({dense_path}, torch eager {rtf['dense_torch']:.1f}x{packed}); "
              + ", ".join(f"{s}% sparse {rtf[f'sparse{s}']:.1f}x ({present[s]})" for s in present)
              + (f"; narrow dense control {rtf['narrow']:.1f}x ({control})" if "narrow" in rtf else ""))
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds, the 16x1 case and the sparsest bundles (< 60 s)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-models", action="store_true", help="the kernel cases only")
    ap.add_argument("--layers", action="store_true", help="GAN-TTS-shaped convs on one thread: C, numba, dense (then exit)")
    ap.add_argument("--models", nargs="*", choices=sorted([*SPARSE_BUNDLES, *OWN_ROWS]), help="only these models (no kernel cases)")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    numba.set_num_threads(min(a.threads, numba.config.NUMBA_NUM_THREADS))
    load_before = os.getloadavg()[0]
    if a.layers:
        torch.set_num_threads(1)
        result = {"benchmark": "sparse_conv_layers", "layers": layer_rows(),
                  "load_avg_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)]}
        print(json.dumps(result))
        return result
    n_rounds, calls = (5, 10) if a.quick else (9, 20)
    blocks = [] if a.models else [(16, 1)] if a.quick else [(16, 1), (8, 1), (4, 1)]
    cases = [conv_case(b, 0.9, a.threads, n_rounds, calls) for b in blocks]
    if blocks and not a.quick and a.threads > 1:  # one thread suffers less from a loaded machine
        torch.set_num_threads(1)
        cases += [conv_case(b, 0.9, 1, n_rounds, calls) for b in blocks]
        torch.set_num_threads(a.threads)
    for r in cases:
        print(f"conv1x1 256x256x1000, 90%, {r['block'][0]}x1, {r['threads']} threads: median sparse "
              f"{r['sparse_us']} us, dense {r['dense_us']} us, {r['speedup']}x ({100 * r['fraction_of_ideal']:.0f}% "
              f"of ideal); minimums {r['sparse_min_us']} / {r['dense_min_us']} us, {r['speedup_of_minimums']}x")
    result = {"benchmark": "sparse_conv", "threads": a.threads, "quick": a.quick}
    if cases:
        head = cases[0]
        result.update(conv1x1_speedup_vs_dense=head["speedup"], conv1x1_fraction_of_ideal=head["fraction_of_ideal"],
                      conv1x1_block=head["block"], conv1x1_cases=cases)
    if not a.no_models:
        keys = a.models or [*SPARSE_BUNDLES, *OWN_ROWS]
        result.update(model_rows(a.threads, a.quick, [k for k in keys if k in SPARSE_BUNDLES]))
        result.update(own_rows(a.threads, a.quick, [k for k in keys if k in OWN_ROWS]))
    result["load_avg_1min"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]  # before, after
    print(f"load average (1 min) before/after: {result['load_avg_1min']} on {os.cpu_count()} cores")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
