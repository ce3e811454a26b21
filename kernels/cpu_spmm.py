"""numba SpMM kernels: out (R, N) = S (R, C) @ x (C, N) (see kernels/cpu.py for the API).

Which loop nest is fastest was measured (2688x896, 5%, N = 16, one thread):
for Nx1 blocks and N <= SMALL_N, one register-accumulating SpMV per column of
a transposed copy of x; for 4x4 blocks a 4-column register tile; otherwise
(and for many columns) a (block row, 256-column) tile accumulated in L1
with the loop vectorizer on. numba's SLP vectorizer did not turn wider
register tiles for 16x1 blocks into vector code (2-3x slower). Where the C
SpMM (kernels/csrc/spmm.c) is built, kernels.ops runs it instead for 2 or
more columns (2-5x faster); these kernels are the fallback and @njit API.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .cpu_spmv import _mv_range
from .numba_util import OPTS, load_f32

COL_TILE = 256  # columns per work item: an output tile of br x 256 stays in L1
SMALL_N = 32    # up to this many columns, Nx1 blocks go column by column


@njit(**OPTS)
def _mm_4x4_c4(values, col_idx, row_ptr, x, out, rb0, rb1, j0):
    """Block rows rb0..rb1, columns j0..j0+4 of out = S x for whole 4x4 blocks."""
    z = np.float32(0.0)
    for rb in range(rb0, rb1):
        a0_0 = a0_1 = a0_2 = a0_3 = z
        a1_0 = a1_1 = a1_2 = a1_3 = z
        a2_0 = a2_1 = a2_2 = a2_3 = z
        a3_0 = a3_1 = a3_2 = a3_3 = z
        for k in range(row_ptr[rb], row_ptr[rb + 1]):
            c0 = col_idx[k] * 4
            for c in range(4):
                x0, x1, x2, x3 = x[c0 + c, j0], x[c0 + c, j0 + 1], x[c0 + c, j0 + 2], x[c0 + c, j0 + 3]
                v = load_f32(values, k, 0 + c)
                a0_0 += v * x0; a0_1 += v * x1; a0_2 += v * x2; a0_3 += v * x3
                v = load_f32(values, k, 4 + c)
                a1_0 += v * x0; a1_1 += v * x1; a1_2 += v * x2; a1_3 += v * x3
                v = load_f32(values, k, 8 + c)
                a2_0 += v * x0; a2_1 += v * x1; a2_2 += v * x2; a2_3 += v * x3
                v = load_f32(values, k, 12 + c)
                a3_0 += v * x0; a3_1 += v * x1; a3_2 += v * x2; a3_3 += v * x3
        b = rb * 4
        out[b + 0, j0], out[b + 0, j0 + 1] = a0_0, a0_1
        out[b + 0, j0 + 2], out[b + 0, j0 + 3] = a0_2, a0_3
        out[b + 1, j0], out[b + 1, j0 + 1] = a1_0, a1_1
        out[b + 1, j0 + 2], out[b + 1, j0 + 3] = a1_2, a1_3
        out[b + 2, j0], out[b + 2, j0 + 1] = a2_0, a2_1
        out[b + 2, j0 + 2], out[b + 2, j0 + 3] = a2_2, a2_3
        out[b + 3, j0], out[b + 3, j0 + 1] = a3_0, a3_1
        out[b + 3, j0 + 2], out[b + 3, j0 + 3] = a3_2, a3_3


@njit(**OPTS)
def _mm_tile(values, col_idx, row_ptr, br, bc, x, out, rb, j0, j1):
    """Rows of block row rb, columns j0..j1 of out = S x; any block, edge blocks guarded."""
    r0 = rb * br
    nr = min(br, out.shape[0] - r0)
    n_x = x.shape[0]
    n = j1 - j0
    for r in range(nr):
        orow = out[r0 + r, j0:j1]  # 1-D views: the inner loop vectorizes, 2-D indexing did not
        for j in range(n):
            orow[j] = 0.0
    for k in range(row_ptr[rb], row_ptr[rb + 1]):
        c0 = col_idx[k] * bc
        nc = min(bc, n_x - c0)
        for c in range(nc):
            xrow = x[c0 + c, j0:j1]
            for r in range(nr):
                v = load_f32(values, k, r * bc + c)
                orow = out[r0 + r, j0:j1]
                for j in range(n):
                    orow[j] += v * xrow[j]


@njit(**OPTS)
def _mm_rows(values, col_idx, row_ptr, br, bc, x, out, rb0, rb1, xt, yt):
    """Block rows rb0..rb1 of out = S x, all columns; xt (N, C), yt (N, R) scratch."""
    n = x.shape[1]
    if bc == 1 and n <= SMALL_N:
        for j in range(n):
            _mv_range(values, col_idx, row_ptr, br, bc, xt[j], yt[j], rb0, rb1)
        for r in range(rb0 * br, min(rb1 * br, out.shape[0])):
            for j in range(n):
                out[r, j] = yt[j, r]
        return
    full = rb0
    if br == 4 and bc == 4 and x.shape[0] % 4 == 0:
        full = min(rb1, max(rb0, out.shape[0] // 4))
        for j0 in range(0, n - 3, 4):
            _mm_4x4_c4(values, col_idx, row_ptr, x, out, rb0, full, j0)
        for rb in range(rb0, full):
            _mm_tile(values, col_idx, row_ptr, br, bc, x, out, rb, n - n % 4, n)
    for rb in range(full, rb1):
        for j0 in range(0, n, COL_TILE):
            _mm_tile(values, col_idx, row_ptr, br, bc, x, out, rb, j0, min(n, j0 + COL_TILE))


@njit(**OPTS)
def _scratch(x, out):
    """(x transposed (N, C), an (N, R) buffer) when the per-column path needs them."""
    n = x.shape[1] if x.shape[1] <= SMALL_N else 0
    return np.ascontiguousarray(x[:, :n].T), np.empty((n, out.shape[0]), np.float32)


@njit(**OPTS)
def spmm_into(values, col_idx, row_ptr, br, bc, x, out):
    """out (R, N) = S (R, C) @ x (C, N), one thread."""
    xt, yt = _scratch(x, out)
    _mm_rows(values, col_idx, row_ptr, br, bc, x, out, 0, row_ptr.shape[0] - 1, xt, yt)


@njit(parallel=True, **OPTS)
def spmm_into_parallel(values, col_idx, row_ptr, br, bc, x, out):
    """spmm_into with chunks of block rows over numba threads."""
    xt, yt = _scratch(x, out)
    nbr = row_ptr.shape[0] - 1
    n_chunks = min(nbr, 256)
    for i in prange(n_chunks):
        _mm_rows(values, col_idx, row_ptr, br, bc, x, out, i * nbr // n_chunks, (i + 1) * nbr // n_chunks, xt, yt)
