"""numba SpMV kernels, one per block shape (see kernels/cpu.py for the API).

Compile these under numba_util.slp_only(): a 16x1 block then becomes
16-lane FMAs into register accumulators.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .numba_util import OPTS, load_f32


# --- spmv: one kernel per block shape, register accumulators ---------------------
@njit(**OPTS)
def _mv_16x1(values, col_idx, row_ptr, x, out, rb0, rb1):
    for rb in range(rb0, rb1):
        a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = np.float32(0.0)
        a8 = a9 = a10 = a11 = a12 = a13 = a14 = a15 = np.float32(0.0)
        for k in range(row_ptr[rb], row_ptr[rb + 1]):
            v = x[col_idx[k]]
            a0 += load_f32(values, k, 0) * v
            a1 += load_f32(values, k, 1) * v
            a2 += load_f32(values, k, 2) * v
            a3 += load_f32(values, k, 3) * v
            a4 += load_f32(values, k, 4) * v
            a5 += load_f32(values, k, 5) * v
            a6 += load_f32(values, k, 6) * v
            a7 += load_f32(values, k, 7) * v
            a8 += load_f32(values, k, 8) * v
            a9 += load_f32(values, k, 9) * v
            a10 += load_f32(values, k, 10) * v
            a11 += load_f32(values, k, 11) * v
            a12 += load_f32(values, k, 12) * v
            a13 += load_f32(values, k, 13) * v
            a14 += load_f32(values, k, 14) * v
            a15 += load_f32(values, k, 15) * v
        b = rb * 16
        out[b], out[b + 1], out[b + 2], out[b + 3] = a0, a1, a2, a3
        out[b + 4], out[b + 5], out[b + 6], out[b + 7] = a4, a5, a6, a7
        out[b + 8], out[b + 9], out[b + 10], out[b + 11] = a8, a9, a10, a11
        out[b + 12], out[b + 13], out[b + 14], out[b + 15] = a12, a13, a14, a15


@njit(**OPTS)
def _mv_8x1(values, col_idx, row_ptr, x, out, rb0, rb1):
    for rb in range(rb0, rb1):
        a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = np.float32(0.0)
        for k in range(row_ptr[rb], row_ptr[rb + 1]):
            v = x[col_idx[k]]
            a0 += load_f32(values, k, 0) * v
            a1 += load_f32(values, k, 1) * v
            a2 += load_f32(values, k, 2) * v
            a3 += load_f32(values, k, 3) * v
            a4 += load_f32(values, k, 4) * v
            a5 += load_f32(values, k, 5) * v
            a6 += load_f32(values, k, 6) * v
            a7 += load_f32(values, k, 7) * v
        b = rb * 8
        out[b], out[b + 1], out[b + 2], out[b + 3] = a0, a1, a2, a3
        out[b + 4], out[b + 5], out[b + 6], out[b + 7] = a4, a5, a6, a7


@njit(**OPTS)
def _mv_4x4(values, col_idx, row_ptr, x, out, rb0, rb1):
    for rb in range(rb0, rb1):
        a0 = a1 = a2 = a3 = np.float32(0.0)
        for k in range(row_ptr[rb], row_ptr[rb + 1]):
            c = col_idx[k] * 4
            x0, x1, x2, x3 = x[c], x[c + 1], x[c + 2], x[c + 3]
            a0 += (load_f32(values, k, 0) * x0 + load_f32(values, k, 1) * x1
                   + load_f32(values, k, 2) * x2 + load_f32(values, k, 3) * x3)
            a1 += (load_f32(values, k, 4) * x0 + load_f32(values, k, 5) * x1
                   + load_f32(values, k, 6) * x2 + load_f32(values, k, 7) * x3)
            a2 += (load_f32(values, k, 8) * x0 + load_f32(values, k, 9) * x1
                   + load_f32(values, k, 10) * x2 + load_f32(values, k, 11) * x3)
            a3 += (load_f32(values, k, 12) * x0 + load_f32(values, k, 13) * x1
                   + load_f32(values, k, 14) * x2 + load_f32(values, k, 15) * x3)
        b = rb * 4
        out[b], out[b + 1], out[b + 2], out[b + 3] = a0, a1, a2, a3


@njit(**OPTS)
def _mv_1x1(values, col_idx, row_ptr, x, out, rb0, rb1):
    for rb in range(rb0, rb1):
        a = np.float32(0.0)
        for k in range(row_ptr[rb], row_ptr[rb + 1]):
            a += load_f32(values, k, 0) * x[col_idx[k]]
        out[rb] = a


@njit(**OPTS)
def _mv_generic(values, col_idx, row_ptr, br, bc, x, out, rb0, rb1):
    """Any block shape; skips rows past out and columns past x (edge blocks)."""
    n_out, n_x = out.shape[0], x.shape[0]
    for rb in range(rb0, rb1):
        nr = min(br, n_out - rb * br)
        for r in range(nr):
            out[rb * br + r] = 0.0
        for k in range(row_ptr[rb], row_ptr[rb + 1]):
            c0 = col_idx[k] * bc
            nc = min(bc, n_x - c0)
            for r in range(nr):
                acc = np.float32(0.0)
                for c in range(nc):
                    acc += load_f32(values, k, r * bc + c) * x[c0 + c]
                out[rb * br + r] += acc


@njit(**OPTS)
def _mv_range(values, col_idx, row_ptr, br, bc, x, out, rb0, rb1):
    """Block rows rb0..rb1: the fast kernel for whole blocks, else the generic one."""
    nbr = row_ptr.shape[0] - 1
    full = min(nbr, out.shape[0] // br) if x.shape[0] % bc == 0 else 0
    f1 = min(rb1, max(rb0, full))
    if br == 16 and bc == 1:
        _mv_16x1(values, col_idx, row_ptr, x, out, rb0, f1)
    elif br == 8 and bc == 1:
        _mv_8x1(values, col_idx, row_ptr, x, out, rb0, f1)
    elif br == 4 and bc == 4:
        _mv_4x4(values, col_idx, row_ptr, x, out, rb0, f1)
    elif br == 1 and bc == 1:
        _mv_1x1(values, col_idx, row_ptr, x, out, rb0, f1)
    else:
        f1 = rb0
    _mv_generic(values, col_idx, row_ptr, br, bc, x, out, f1, rb1)


@njit(**OPTS)
def spmv_into(values, col_idx, row_ptr, br, bc, x, out):
    """out (R,) = S (R, C) @ x (C,); see the module docstring."""
    _mv_range(values, col_idx, row_ptr, br, bc, x, out, 0, row_ptr.shape[0] - 1)


@njit(parallel=True, **OPTS)
def spmv_into_parallel(values, col_idx, row_ptr, br, bc, x, out):
    """spmv_into with block rows in chunks over numba threads."""
    nbr = row_ptr.shape[0] - 1
    n_chunks = min(nbr, 4 * 64)
    for i in prange(n_chunks):
        _mv_range(values, col_idx, row_ptr, br, bc, x, out, i * nbr // n_chunks, (i + 1) * nbr // n_chunks)
