"""Block-sparse CPU kernels against dense torch, torch.sparse and scipy, side by side.

    python -m bench.kernels [--quick | --sweep]

Ours is the raw kernel kernels.ops picks (`ops.cpu_spmm_kernel`: numba, or
the C SpMM of kernels/csrc/spmm.c, column "kern"), writing into a
preallocated output (what an @njit caller such as the WaveRNN sampler runs).
`--sweep` times C, numba and dense SpMM by column count (1..64). Peers, same thread count:
dense torch.mv/torch.mm, torch BSR (`to_sparse_bsr`; refused on the CPU for
non-square blocks: reported null with the reason, and CSR is then the torch
peer, labelled), torch CSR, scipy.sparse.bsr_matrix. Times are the minimum
over many short batches (a shared machine); claims are ratios. The last
line is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import time

import numba
import numpy as np
import scipy.sparse as sp
import torch

from kernels import BlockSparseMatrix
from kernels import cpu, cpu_c, ops

SHAPES = [(2688, 896), (1024, 1024), (4096, 1024)]
DENSITIES = [0.02, 0.05, 0.10, 0.20]
BLOCKS = [(16, 1), (4, 4)]


def timeit(fn, budget_s: float = 0.15) -> float:
    """Minimum seconds per call over short batches within about budget_s."""
    fn()
    t0 = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t0, 1e-7)
    n = max(1, int(0.002 / one))
    reps = max(5, int(budget_s / (n * one)))
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n)
    return best


def make(shape, density, block, seed=0):
    g = torch.Generator().manual_seed(seed)
    br, bc = block
    nb = torch.rand(shape[0] // br, shape[1] // bc, generator=g) < density
    mask = nb.repeat_interleave(br, 0).repeat_interleave(bc, 1)
    w = torch.randn(shape, generator=g) * mask
    return w, BlockSparseMatrix.from_dense(w, mask, block)


def peers(w: torch.Tensor, block, x: torch.Tensor, budget: float) -> dict:
    """Dense, torch BSR (or its refusal), torch CSR and scipy BSR times for w @ x (seconds)."""
    out = {"dense": timeit(lambda: torch.mv(w, x) if x.dim() == 1 else torch.mm(w, x), budget)}
    try:
        bsr = w.to_sparse_bsr(block)
        out["torch_bsr"] = timeit(lambda: bsr @ x, budget)
    except RuntimeError as e:
        out["torch_bsr"], out["torch_bsr_refused"] = None, str(e).splitlines()[0][:90]
    csr = w.to_sparse_csr()
    out["torch_csr"] = timeit(lambda: csr @ x, budget)
    sb = sp.bsr_matrix(w.numpy(), blocksize=block)
    xn = x.numpy()
    out["scipy_bsr"] = timeit(lambda: sb @ xn, budget)
    return out


def spmm_call(m, args, x: torch.Tensor, parallel: bool):
    """(call(), kernel name): the raw kernel kernels.ops.spmm runs for x's columns, called
    as ops calls it (the C kernel on the matrix's and x's tensors, one thread)."""
    kernel = ops.cpu_spmm_kernel(m, x.shape[1])
    out = torch.empty(m.shape[0], x.shape[1])
    if kernel == "c":
        lib, tensors = ops.c_spmm_lib(), (m.values, m.col_idx, m.row_ptr, *m.block)
        return (lambda: cpu_c.spmm_into(lib, *tensors, x, out)), "c"
    fn, xn, on = cpu.spmm_into_parallel if parallel else cpu.spmm_into, x.numpy(), out.numpy()
    return (lambda: fn(*args, xn, on)), "numba"


def run_case(shape, density, block, threads, n_cols, budget) -> dict:
    torch.set_num_threads(threads)
    numba.set_num_threads(threads)
    w, m = make(shape, density, block)
    args = m.numpy_args()
    parallel = threads > 1
    cpu.ensure_compiled(np.float32, parallel)
    if n_cols == 1:
        x = torch.randn(shape[1])
        xn, out = x.numpy(), np.empty(shape[0], np.float32)
        fn = cpu.spmv_into_parallel if parallel else cpu.spmv_into
        call, kernel = (lambda: fn(*args, xn, out)), "numba"
    else:
        x = torch.randn(shape[1], n_cols)
        call, kernel = spmm_call(m, args, x, parallel)
    ours = timeit(call, budget)
    res = {"shape": list(shape), "density": density, "block": list(block), "threads": threads,
           "op": "spmv" if n_cols == 1 else f"spmm{n_cols}", "kernel": kernel, "ours": ours,
           **peers(w, block, x, budget)}
    res["torch_peer"] = "torch_bsr" if res["torch_bsr"] is not None else "torch_csr"
    for k in ("dense", "torch_bsr", "torch_csr", "scipy_bsr"):
        res[f"speedup_vs_{k}"] = res[k] / ours if res[k] else None
    res["fraction_of_ideal"] = res["speedup_vs_dense"] * density
    return res


def gru_step_seconds(H: int, density: float, block, budget: float) -> float:
    numba.set_num_threads(1)
    _, m = make((3 * H, H), density, block)
    rng = np.random.default_rng(0)
    bias, ix = (rng.standard_normal(3 * H).astype(np.float32) for _ in range(2))
    h, gh = np.zeros(H, np.float32), np.empty(3 * H, np.float32)
    args = m.numpy_args()
    return timeit(lambda: cpu.gru_step_into(*args, bias, ix, h, gh, h), budget)


def column_sweep(budget: float, cols=(1, 2, 4, 8, 16, 32, 64), blocks=((16, 1), (8, 1), (4, 4))) -> list[dict]:
    """C SpMM, numba SpMM and dense torch.mm on 2688 x 896 at 5%, one thread, by column count."""
    torch.set_num_threads(1)
    numba.set_num_threads(1)
    lib, rows = ops.c_spmm_lib(), []
    for block in blocks:
        w, m = make((2688, 896), 0.05, block)
        args = m.numpy_args()
        for n in cols:
            x = torch.randn(896, n)
            out = torch.empty(2688, n)
            xn, on = x.numpy(), out.numpy()
            row = {"block": list(block), "n": n, "picked": ops.cpu_spmm_kernel(m, n),
                   "numba": timeit(lambda: cpu.spmm_into(*args, xn, on), budget),
                   "dense": timeit(lambda: torch.mm(w, x), budget)}
            if lib is not None:
                row["c"] = timeit(lambda: cpu_c.spmm_into(lib, m.values, m.col_idx, m.row_ptr, *block, x, out), budget)
            rows.append(row)
    print(f"{'block':>5} {'cols':>4} | {'C us':>9} {'numba us':>9} {'dense us':>9} | {'C xdense':>8} {'picked':>6}")
    for r in rows:
        c = r.get("c")
        print(f"{r['block'][0]:>2}x{r['block'][1]:<2} {r['n']:>4} | {fmt(c)} {fmt(r['numba'])} {fmt(r['dense'])} | "
              f"{(r['dense'] / c if c else float('nan')):8.1f} {r['picked']:>6}")
    return rows


def fmt(v) -> str:
    return "null" if v is None else f"{v * 1e6:9.1f}"


def print_table(rows) -> None:
    print(f"{'shape':>10} {'dens':>5} {'block':>5} {'thr':>3} {'op':>6} {'kern':>5} | {'ours us':>9} {'dense':>9} "
          f"{'torchBSR':>9} {'torchCSR':>9} {'scipyBSR':>9} | {'xdense':>6} {'xtorch':>6} {'xscipy':>6} {'ideal%':>6}")
    for r in rows:
        peer = r["speedup_vs_" + r["torch_peer"]]
        print(f"{r['shape'][0]:>5}x{r['shape'][1]:<4} {r['density']:5.2f} {r['block'][0]:>2}x{r['block'][1]:<2} "
              f"{r['threads']:>3} {r['op']:>6} {r['kernel']:>5} | {fmt(r['ours'])} {fmt(r['dense'])} {fmt(r['torch_bsr'])} "
              f"{fmt(r['torch_csr'])} {fmt(r['scipy_bsr'])} | {r['speedup_vs_dense']:6.1f} {peer:6.1f}"
              f"{'*' if r['torch_peer'] == 'torch_csr' else ' '}{r['speedup_vs_scipy_bsr']:5.1f} "
              f"{100 * r['fraction_of_ideal']:6.0f}")
    print("* torch BSR refused these blocks on the CPU; the torch peer is CSR.")
    print("  kern: the kernel kernels.ops runs (c: kernels/csrc/spmm.c, one thread even in 2-thread rows).")
    print("  2-thread rows need both cores free: on a loaded machine their minimums are scheduler noise.")
    refusals = {r["torch_bsr_refused"] for r in rows if r.get("torch_bsr_refused")}
    for msg in refusals:
        print(f"  torch BSR refusal: {msg}")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the headline cases only (< 30 s)")
    ap.add_argument("--sweep", action="store_true", help="only the SpMM column sweep (C vs numba vs dense)")
    a = ap.parse_args(argv)
    budget = 0.05 if a.quick else 0.15
    if a.sweep:
        return {"sweep": column_sweep(budget)}
    if a.quick:
        cases = [((2688, 896), 0.05, (16, 1), 1)]
    else:
        cases = [(s, d, b, t) for s in SHAPES for d in DENSITIES for b in BLOCKS for t in (1, 2)]
    rows = []
    for shape, density, block, threads in cases:
        for n_cols in (1, 16):
            rows.append(run_case(shape, density, block, threads, n_cols, budget))
    gru_s = gru_step_seconds(896, 0.05, (16, 1), budget)
    torch.set_num_threads(1)
    print_table(rows)
    print(f"fused GRU step, H=896, 5%, 16x1, one thread: {gru_s * 1e6:.1f} us")

    def pick(op):
        return next(r for r in rows if r["op"] == op and r["shape"] == [2688, 896] and r["density"] == 0.05
                    and r["block"] == [16, 1] and r["threads"] == 1)
    mv, mm = pick("spmv"), pick("spmm16")
    summary = {
        "spmv_speedup_vs_dense": round(mv["speedup_vs_dense"], 2),
        "spmv_speedup_vs_torch_bsr": round(mv["speedup_vs_" + mv["torch_peer"]], 2),
        "spmv_torch_peer": mv["torch_peer"] if mv["torch_peer"] == "torch_bsr" else "torch_csr (bsr refused)",
        "spmv_speedup_vs_scipy": round(mv["speedup_vs_scipy_bsr"], 2),
        "spmv_fraction_of_ideal": round(mv["fraction_of_ideal"], 3),
        "spmm16_speedup_vs_dense": round(mm["speedup_vs_dense"], 2),
        "spmm16_speedup_vs_torch_sparse": round(mm["speedup_vs_" + mm["torch_peer"]], 2),
        "spmm16_speedup_vs_scipy": round(mm["speedup_vs_scipy_bsr"], 2),
        "spmm16_kernel": mm["kernel"],
        "spmm16_us": round(mm["ours"] * 1e6, 2),
        "dense_mm16_us": round(mm["dense"] * 1e6, 2),
        "gru_step_us": round(gru_s * 1e6, 2),
        "spmv_us": round(mv["ours"] * 1e6, 2),
        "dense_mv_us": round(mv["dense"] * 1e6, 2),
        "cases": len(rows),
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
