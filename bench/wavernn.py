"""WaveRNN sampling speed, side by side: `python -m bench.wavernn [--quick]`.

At 16 kHz and hidden size 896, one process:
- torchaudio's WaveRNN.infer (the peer; n_rnn = n_fc = 896, hop 80),
- our dense WaveRNN in a plain torch loop (the reference sampler),
- our fused numba sampler with dense weights,
- our fused sampler with 96%-sparse 16x1-block weights, one thread,
- the fused Subscale WaveRNN (B = 16, F = 4) at 96%, two threads.
Weights are randomly initialized and block-magnitude pruned to the stated
sparsity (speed does not depend on training). Torch runs on one thread.
The last line is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch

from kernels.linear import block_magnitude_mask
from models.subscale import FusedSubscale
from models.wavernn import WaveRNN, WaveRNNConfig
from models.wavernn_fused import FusedWaveRNN

HIDDEN, SR, HOP, DENSITY = 896, 16000, 80, 0.04


def block_prune_(model: WaveRNN, density: float, block=(16, 1)) -> None:
    """Keep the largest-magnitude blocks of each matrix the sparse schedule prunes."""
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name in model.SPARSE:
            params[name].mul_(block_magnitude_mask(params[name], 1.0 - density, block))


def timed(fn, n_samples: int, cpu: dict | None = None) -> float:
    """Samples per second of wall time; `cpu["rate"]` receives samples per
    second of this process's CPU time (all threads, spin-waits included),
    which other work on shared cores does not lower."""
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    if cpu is not None:
        cpu["rate"] = n_samples / max(time.process_time() - c0, 1e-9)
    return n_samples / (time.perf_counter() - t0)


def torchaudio_rate(n: int) -> float:
    from torchaudio.models import WaveRNN as TAWaveRNN

    torch.manual_seed(0)
    peer = TAWaveRNN(upsample_scales=[5, 4, 4], n_classes=256, hop_length=HOP, n_rnn=HIDDEN, n_fc=HIDDEN,
                     n_freq=80, n_hidden=128, n_output=128).eval()
    frames = n // HOP + 5  # infer trims (kernel_size - 1) = 4 frames
    spec = torch.randn(1, 80, frames)
    with torch.no_grad():
        peer.infer(spec[..., :6])
        t0 = time.perf_counter()
        out, _ = peer.infer(spec)
        return out.shape[-1] / (time.perf_counter() - t0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer samples (under 40 s)")
    args = ap.parse_args(argv)
    q = args.quick
    torch.set_num_threads(1)
    n_peer, n_torch, n_dense, n_sparse, n_sub = ((320, 480, 1600, 16000, 32000) if q else
                                                (1600, 3200, 8000, 96000, 192000))
    torch.manual_seed(0)
    cfg = WaveRNNConfig(hidden_size=HIDDEN, sample_rate=SR, hop_length=HOP, cond_channels=87)
    model = WaveRNN(cfg).eval()
    spk = torch.tensor([0])
    rng = np.random.default_rng(0)

    def cond_for(n):
        return torch.randn(1, n // HOP + 1, cfg.cond_channels)

    res: dict[str, float | str | int] = {"hidden": HIDDEN, "sample_rate": SR, "sparsity": 1 - DENSITY,
                                         "block": "16x1", "weights": "random init, block-magnitude pruned",
                                         "cpu_count": os.cpu_count(), "quick": q}
    load = os.getloadavg()[0]  # other work on shared cores lowers every wall-clock figure
    res["torchaudio_samples_per_s"] = torchaudio_rate(n_peer)
    print(f"torchaudio WaveRNN.infer (n_rnn {HIDDEN}): {res['torchaudio_samples_per_s']:.0f} samples/s", flush=True)

    u = torch.from_numpy(rng.random((1, n_torch, 2)))
    res["torch_loop_dense_samples_per_s"] = timed(lambda: model.generate(cond_for(n_torch), spk, u), n_torch)
    print(f"our dense, plain torch loop: {res['torch_loop_dense_samples_per_s']:.0f} samples/s", flush=True)

    dense = FusedWaveRNN(model, sparse=False)
    dense.generate(cond_for(400), spk, rng.random((1, 400, 2)))  # compile
    res["dense_fused_samples_per_s_1thread"] = timed(
        lambda: dense.generate(cond_for(n_dense), spk, rng.random((1, n_dense, 2))), n_dense)
    print(f"our dense, fused: {res['dense_fused_samples_per_s_1thread']:.0f} samples/s", flush=True)

    block_prune_(model, DENSITY)
    sparse = FusedWaveRNN(model, sparse=True, block=(16, 1))
    res["sparse896_density"] = sparse.density
    cpu: dict = {}
    rate = timed(lambda: sparse.generate(cond_for(n_sparse), spk, rng.random((1, n_sparse, 2))), n_sparse, cpu)
    res["sparse896_samples_per_s_1thread"] = rate
    res["sparse896_samples_per_cpu_s_1thread"] = cpu["rate"]
    res["sparse896_realtime_factor_24k"] = rate / 24000
    res["sparse_speedup_vs_torchaudio"] = rate / res["torchaudio_samples_per_s"]
    print(f"our sparse 96% 16x1, fused, 1 thread: {rate:.0f} samples/s ({cpu['rate']:.0f} per CPU second)",
          flush=True)

    torch.manual_seed(1)
    sub = WaveRNN(WaveRNNConfig(hidden_size=HIDDEN, sample_rate=SR, hop_length=HOP, cond_channels=87,
                                subscale=16, subscale_future=4, subscale_past=2, ctx_hidden=16)).eval()
    block_prune_(sub, DENSITY)
    fsub = FusedSubscale(sub, sparse=True, block=(16, 1))
    fsub.generate(cond_for(1600), spk, rng.random((1, 1600, 2)), threads=2)  # compile
    for threads in (1, 2):
        r = timed(lambda: fsub.generate(cond_for(n_sub), spk, rng.random((1, n_sub, 2)), threads=threads), n_sub, cpu)
        suffix = f"{threads}thread{'s' if threads > 1 else ''}"
        res[f"subscale_samples_per_s_{suffix}"] = r
        res[f"subscale_samples_per_cpu_s_{suffix}"] = cpu["rate"]
        print(f"our subscale B=16 96% fused, {threads} thread(s): {r:.0f} samples/s "
              f"({cpu['rate']:.0f} per CPU second)", flush=True)
    res["subscale_realtime_factor_24k"] = res["subscale_samples_per_s_2threads"] / 24000
    res["load_average_1min"] = [round(load, 2), round(os.getloadavg()[0], 2)]  # at the start and the end
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in res.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
