"""CPU fast paths: numba kernels on plain numpy arrays, callable from @njit code.

Every kernel takes the packed matrix as its first five arguments
(`BlockSparseMatrix.numpy_args()`):

    values   (nnzb, br * bc) C-contiguous: float32, or uint16 holding
             bfloat16 bits, or int16 holding float16 bits (math is float32)
    col_idx  (nnzb,) int32      row_ptr (nbr + 1,) int32      br, bc  ints

and writes its result into a preallocated float32 C-contiguous output:

    spmv_into(values, col_idx, row_ptr, br, bc, x, out)
        x (C,) or padded (nbc * bc,); out (R,) or padded (nbr * br,): out = S x
    spmv_into_parallel(...same...)              block rows split over numba threads
    spmm_into(values, col_idx, row_ptr, br, bc, x, out)
        x (C, N), out (R, N): out = S x; any N, tuned for 1..32 columns
    spmm_into_parallel(...same...)              (block row, column tile) over threads
    gru_step_into(values, col_idx, row_ptr, br, bc, bias, ix, h, gh, h_out)
        R (3H, H) with gate rows u, r, e; bias, ix (3H,); h (H,); gh scratch
        (>= 3H); h_out (H,) may be h. u = sigm(R_u h + b_u + ix_u), r likewise,
        e = tanh(r * (R_e h + b_e) + ix_e), h' = u h + (1 - u) e (rational
        tanh, |error| < 1e-6)
    sddmm_into(a, bt, col_idx, row_ptr, br, bc, out)
        a (R, K), bt (C, K) = b transposed; out (nnzb, br * bc) float32 =
        (a @ b) at the stored blocks (parallel)

The serial kernels for float32 values are compiled when this module is
imported; `ensure_compiled(values_dtype, parallel)` compiles the others
(do it before compiling an @njit caller that uses them). Threads: the
*_parallel kernels and sddmm use numba.set_num_threads(); the others are
single-threaded.

Why the import-time compile: the block kernels need LLVM's SLP vectorizer
on and its loop vectorizer off, so that a 16x1 block becomes 16-lane FMAs
into registers (the loop vectorizer would vectorize across blocks with
gathers instead: 110 us vs 18 us for 2688x896 at 5%). numba reads those
switches at compile time, so spmv is compiled under them here, once.
"""
from __future__ import annotations

import threading

import numpy as np
from numba import njit, prange, types

from .cpu_spmm import _mm_4x4_c4, _mm_rows, _mm_tile, spmm_into, spmm_into_parallel
from .cpu_spmv import _mv_range, spmv_into, spmv_into_parallel
from .numba_util import FASTMATH, OPTS, load_f32, slp_only, tanh_f32

__all__ = ["spmv_into", "spmv_into_parallel", "spmm_into", "spmm_into_parallel", "gru_step_into",
           "gru_gates_into", "sddmm_into", "ensure_compiled", "ensure_sddmm", "load_f32", "tanh_f32",
           "slp_only", "FASTMATH"]


# --- fused GRU step ---------------------------------------------------------------
@njit(**OPTS)
def gru_gates_into(gh, bias, ix, h, h_out):
    """h_out (H,) from gh = R h (3H,), bias, ix (3H,), h (H,); gate rows u, r, e."""
    H = h.shape[0]
    half = np.float32(0.5)
    for i in range(H):
        u = half * tanh_f32(half * (gh[i] + bias[i] + ix[i])) + half
        r = half * tanh_f32(half * (gh[H + i] + bias[H + i] + ix[H + i])) + half
        e = tanh_f32(r * (gh[2 * H + i] + bias[2 * H + i]) + ix[2 * H + i])
        h_out[i] = u * h[i] + (np.float32(1.0) - u) * e


@njit(**OPTS)
def gru_step_into(values, col_idx, row_ptr, br, bc, bias, ix, h, gh, h_out):
    """h_out (H,) = one WaveRNN GRU step; see the module docstring."""
    spmv_into(values, col_idx, row_ptr, br, bc, h, gh)
    gru_gates_into(gh, bias, ix, h, h_out)


# --- sddmm ------------------------------------------------------------------------
@njit(parallel=True, **OPTS)
def sddmm_into(a, bt, col_idx, row_ptr, br, bc, out):
    """out (nnzb, br * bc) = (a (R, K) @ bt (C, K).T) at the stored blocks."""
    n_a, n_b, K = a.shape[0], bt.shape[0], a.shape[1]
    for rb in prange(row_ptr.shape[0] - 1):
        for k in range(row_ptr[rb], row_ptr[rb + 1]):
            for r in range(br):
                for c in range(bc):
                    i, j = rb * br + r, col_idx[k] * bc + c
                    acc = np.float32(0.0)
                    if i < n_a and j < n_b:
                        for t in range(K):
                            acc += a[i, t] * bt[j, t]
                    out[k, r * bc + c] = acc


# --- compile under the right flags ------------------------------------------------
_DTYPES = {np.dtype(np.float32): types.float32, np.dtype(np.uint16): types.uint16, np.dtype(np.int16): types.int16}
_LOCK = threading.Lock()
_DONE: set = set()


def ensure_compiled(values_dtype=np.float32, parallel: bool = False) -> None:
    """Compile the kernels for values of this numpy dtype (float32; uint16 =
    bfloat16 bits; int16 = float16 bits), the parallel ones if asked.

    Idempotent and cached on disk. The float32 serial kernels are compiled
    at import; call this before compiling an @njit caller that passes half
    values, or the callees would be compiled without their flags. Helpers
    are compiled first, each under its flags; callers then reuse them.
    """
    key = (np.dtype(values_dtype), bool(parallel))
    if key in _DONE:
        return
    if key[0] not in _DTYPES:
        raise TypeError(f"values dtype must be float32, uint16 (bf16 bits) or int16 (fp16 bits), got {key[0]}")
    f1, f2, i1, i64 = types.float32[::1], types.float32[:, ::1], types.int32[::1], types.int64
    v = types.Array(_DTYPES[key[0]], 2, "C")
    head = (v, i1, i1, i64, i64)
    with _LOCK:
        # leaves that want the loop vectorizer, first; then everything that
        # calls the register kernels under SLP-only, because numba re-optimizes
        # linked callees with the caller's flags
        _mm_tile.compile(types.void(*head, f2, f2, i64, i64, i64))
        gru_gates_into.compile(types.void(f1, f1, f1, f1, f1))
        with slp_only():
            _mv_range.compile(types.void(*head, f1, f1, i64, i64))
            _mm_4x4_c4.compile(types.void(v, i1, i1, f2, f2, i64, i64, i64))
            _mm_rows.compile(types.void(*head, f2, f2, i64, i64, f2, f2))
            if parallel:
                spmv_into_parallel.compile(types.void(*head, f1, f1))
                spmm_into_parallel.compile(types.void(*head, f2, f2))
            else:
                spmv_into.compile(types.void(*head, f1, f1))
                spmm_into.compile(types.void(*head, f2, f2))
                gru_step_into.compile(types.void(*head, f1, f1, f1, f1, f1))
        _DONE.add(key)


def ensure_sddmm() -> None:
    """Compile sddmm_into (float32 a, bt and out)."""
    f2, i1, i64 = types.float32[:, ::1], types.int32[::1], types.int64
    with _LOCK:
        sddmm_into.compile(types.void(f2, f2, i1, i1, i64, i64, f2))


ensure_compiled(np.float32)
