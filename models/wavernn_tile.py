"""Block-sparse matrix times several streams, 16x1 blocks, 8 streams at a time.

`tile16x8(values, col_idx, row_ptr, X, Y, n0)`: Y[n0 + t, :] = S X[n0 + t, :]
for t = 0..7, every block row of S (packed as in kernels/format.py, float32
values (nnzb, 16)); X (N, C) and Y (N, >= 16 * block rows) hold one stream
per row. Each weight block is loaded once for the 8 streams and multiplied
into 8 x 16 register accumulators (8 zmm registers with AVX-512), so the
product runs at FMA throughput instead of the FMA latency that bounds a
one-stream SpMV (one chain of 16-lane FMAs per block row): 2688 x 896 at 4%
for 16 streams took 35 us against 125 us for 16 `spmv_into` calls (one
thread, load average 5). Compile it under kernels.numba_util.slp_only():
LLVM's SLP vectorizer turns each stream's 16 scalar accumulators into one
vector (with the loop vectorizer on instead: 320 us).

The statements are written out because numba has no register arrays: a
local array would live in memory (490 us for the same product).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from kernels.numba_util import OPTS


@njit(**OPTS)
def tile16x8(values, col_idx, row_ptr, X, Y, n0):
    z = np.float32(0.0)
    for rb in range(row_ptr.shape[0] - 1):
        a0_0 = a0_1 = a0_2 = a0_3 = a0_4 = a0_5 = a0_6 = a0_7 = a0_8 = a0_9 = a0_10 = a0_11 = a0_12 = a0_13 = a0_14 = a0_15 = z
        a1_0 = a1_1 = a1_2 = a1_3 = a1_4 = a1_5 = a1_6 = a1_7 = a1_8 = a1_9 = a1_10 = a1_11 = a1_12 = a1_13 = a1_14 = a1_15 = z
        a2_0 = a2_1 = a2_2 = a2_3 = a2_4 = a2_5 = a2_6 = a2_7 = a2_8 = a2_9 = a2_10 = a2_11 = a2_12 = a2_13 = a2_14 = a2_15 = z
        a3_0 = a3_1 = a3_2 = a3_3 = a3_4 = a3_5 = a3_6 = a3_7 = a3_8 = a3_9 = a3_10 = a3_11 = a3_12 = a3_13 = a3_14 = a3_15 = z
        a4_0 = a4_1 = a4_2 = a4_3 = a4_4 = a4_5 = a4_6 = a4_7 = a4_8 = a4_9 = a4_10 = a4_11 = a4_12 = a4_13 = a4_14 = a4_15 = z
        a5_0 = a5_1 = a5_2 = a5_3 = a5_4 = a5_5 = a5_6 = a5_7 = a5_8 = a5_9 = a5_10 = a5_11 = a5_12 = a5_13 = a5_14 = a5_15 = z
        a6_0 = a6_1 = a6_2 = a6_3 = a6_4 = a6_5 = a6_6 = a6_7 = a6_8 = a6_9 = a6_10 = a6_11 = a6_12 = a6_13 = a6_14 = a6_15 = z
        a7_0 = a7_1 = a7_2 = a7_3 = a7_4 = a7_5 = a7_6 = a7_7 = a7_8 = a7_9 = a7_10 = a7_11 = a7_12 = a7_13 = a7_14 = a7_15 = z
        for k in range(row_ptr[rb], row_ptr[rb + 1]):
            c = col_idx[k]
            x0, x1, x2, x3, x4, x5, x6, x7 = X[n0 + 0, c], X[n0 + 1, c], X[n0 + 2, c], X[n0 + 3, c], X[n0 + 4, c], X[n0 + 5, c], X[n0 + 6, c], X[n0 + 7, c]
            w0, w1, w2, w3, w4, w5, w6, w7 = values[k, 0], values[k, 1], values[k, 2], values[k, 3], values[k, 4], values[k, 5], values[k, 6], values[k, 7]
            w8, w9, w10, w11, w12, w13, w14, w15 = values[k, 8], values[k, 9], values[k, 10], values[k, 11], values[k, 12], values[k, 13], values[k, 14], values[k, 15]
            a0_0 += w0 * x0; a0_1 += w1 * x0; a0_2 += w2 * x0; a0_3 += w3 * x0; a0_4 += w4 * x0; a0_5 += w5 * x0; a0_6 += w6 * x0; a0_7 += w7 * x0
            a0_8 += w8 * x0; a0_9 += w9 * x0; a0_10 += w10 * x0; a0_11 += w11 * x0; a0_12 += w12 * x0; a0_13 += w13 * x0; a0_14 += w14 * x0; a0_15 += w15 * x0
            a1_0 += w0 * x1; a1_1 += w1 * x1; a1_2 += w2 * x1; a1_3 += w3 * x1; a1_4 += w4 * x1; a1_5 += w5 * x1; a1_6 += w6 * x1; a1_7 += w7 * x1
            a1_8 += w8 * x1; a1_9 += w9 * x1; a1_10 += w10 * x1; a1_11 += w11 * x1; a1_12 += w12 * x1; a1_13 += w13 * x1; a1_14 += w14 * x1; a1_15 += w15 * x1
            a2_0 += w0 * x2; a2_1 += w1 * x2; a2_2 += w2 * x2; a2_3 += w3 * x2; a2_4 += w4 * x2; a2_5 += w5 * x2; a2_6 += w6 * x2; a2_7 += w7 * x2
            a2_8 += w8 * x2; a2_9 += w9 * x2; a2_10 += w10 * x2; a2_11 += w11 * x2; a2_12 += w12 * x2; a2_13 += w13 * x2; a2_14 += w14 * x2; a2_15 += w15 * x2
            a3_0 += w0 * x3; a3_1 += w1 * x3; a3_2 += w2 * x3; a3_3 += w3 * x3; a3_4 += w4 * x3; a3_5 += w5 * x3; a3_6 += w6 * x3; a3_7 += w7 * x3
            a3_8 += w8 * x3; a3_9 += w9 * x3; a3_10 += w10 * x3; a3_11 += w11 * x3; a3_12 += w12 * x3; a3_13 += w13 * x3; a3_14 += w14 * x3; a3_15 += w15 * x3
            a4_0 += w0 * x4; a4_1 += w1 * x4; a4_2 += w2 * x4; a4_3 += w3 * x4; a4_4 += w4 * x4; a4_5 += w5 * x4; a4_6 += w6 * x4; a4_7 += w7 * x4
            a4_8 += w8 * x4; a4_9 += w9 * x4; a4_10 += w10 * x4; a4_11 += w11 * x4; a4_12 += w12 * x4; a4_13 += w13 * x4; a4_14 += w14 * x4; a4_15 += w15 * x4
            a5_0 += w0 * x5; a5_1 += w1 * x5; a5_2 += w2 * x5; a5_3 += w3 * x5; a5_4 += w4 * x5; a5_5 += w5 * x5; a5_6 += w6 * x5; a5_7 += w7 * x5
            a5_8 += w8 * x5; a5_9 += w9 * x5; a5_10 += w10 * x5; a5_11 += w11 * x5; a5_12 += w12 * x5; a5_13 += w13 * x5; a5_14 += w14 * x5; a5_15 += w15 * x5
            a6_0 += w0 * x6; a6_1 += w1 * x6; a6_2 += w2 * x6; a6_3 += w3 * x6; a6_4 += w4 * x6; a6_5 += w5 * x6; a6_6 += w6 * x6; a6_7 += w7 * x6
            a6_8 += w8 * x6; a6_9 += w9 * x6; a6_10 += w10 * x6; a6_11 += w11 * x6; a6_12 += w12 * x6; a6_13 += w13 * x6; a6_14 += w14 * x6; a6_15 += w15 * x6
            a7_0 += w0 * x7; a7_1 += w1 * x7; a7_2 += w2 * x7; a7_3 += w3 * x7; a7_4 += w4 * x7; a7_5 += w5 * x7; a7_6 += w6 * x7; a7_7 += w7 * x7
            a7_8 += w8 * x7; a7_9 += w9 * x7; a7_10 += w10 * x7; a7_11 += w11 * x7; a7_12 += w12 * x7; a7_13 += w13 * x7; a7_14 += w14 * x7; a7_15 += w15 * x7
        b = rb * 16
        y = Y[n0 + 0]
        y[b + 0], y[b + 1], y[b + 2], y[b + 3], y[b + 4], y[b + 5], y[b + 6], y[b + 7] = a0_0, a0_1, a0_2, a0_3, a0_4, a0_5, a0_6, a0_7
        y[b + 8], y[b + 9], y[b + 10], y[b + 11], y[b + 12], y[b + 13], y[b + 14], y[b + 15] = a0_8, a0_9, a0_10, a0_11, a0_12, a0_13, a0_14, a0_15
        y = Y[n0 + 1]
        y[b + 0], y[b + 1], y[b + 2], y[b + 3], y[b + 4], y[b + 5], y[b + 6], y[b + 7] = a1_0, a1_1, a1_2, a1_3, a1_4, a1_5, a1_6, a1_7
        y[b + 8], y[b + 9], y[b + 10], y[b + 11], y[b + 12], y[b + 13], y[b + 14], y[b + 15] = a1_8, a1_9, a1_10, a1_11, a1_12, a1_13, a1_14, a1_15
        y = Y[n0 + 2]
        y[b + 0], y[b + 1], y[b + 2], y[b + 3], y[b + 4], y[b + 5], y[b + 6], y[b + 7] = a2_0, a2_1, a2_2, a2_3, a2_4, a2_5, a2_6, a2_7
        y[b + 8], y[b + 9], y[b + 10], y[b + 11], y[b + 12], y[b + 13], y[b + 14], y[b + 15] = a2_8, a2_9, a2_10, a2_11, a2_12, a2_13, a2_14, a2_15
        y = Y[n0 + 3]
        y[b + 0], y[b + 1], y[b + 2], y[b + 3], y[b + 4], y[b + 5], y[b + 6], y[b + 7] = a3_0, a3_1, a3_2, a3_3, a3_4, a3_5, a3_6, a3_7
        y[b + 8], y[b + 9], y[b + 10], y[b + 11], y[b + 12], y[b + 13], y[b + 14], y[b + 15] = a3_8, a3_9, a3_10, a3_11, a3_12, a3_13, a3_14, a3_15
        y = Y[n0 + 4]
        y[b + 0], y[b + 1], y[b + 2], y[b + 3], y[b + 4], y[b + 5], y[b + 6], y[b + 7] = a4_0, a4_1, a4_2, a4_3, a4_4, a4_5, a4_6, a4_7
        y[b + 8], y[b + 9], y[b + 10], y[b + 11], y[b + 12], y[b + 13], y[b + 14], y[b + 15] = a4_8, a4_9, a4_10, a4_11, a4_12, a4_13, a4_14, a4_15
        y = Y[n0 + 5]
        y[b + 0], y[b + 1], y[b + 2], y[b + 3], y[b + 4], y[b + 5], y[b + 6], y[b + 7] = a5_0, a5_1, a5_2, a5_3, a5_4, a5_5, a5_6, a5_7
        y[b + 8], y[b + 9], y[b + 10], y[b + 11], y[b + 12], y[b + 13], y[b + 14], y[b + 15] = a5_8, a5_9, a5_10, a5_11, a5_12, a5_13, a5_14, a5_15
        y = Y[n0 + 6]
        y[b + 0], y[b + 1], y[b + 2], y[b + 3], y[b + 4], y[b + 5], y[b + 6], y[b + 7] = a6_0, a6_1, a6_2, a6_3, a6_4, a6_5, a6_6, a6_7
        y[b + 8], y[b + 9], y[b + 10], y[b + 11], y[b + 12], y[b + 13], y[b + 14], y[b + 15] = a6_8, a6_9, a6_10, a6_11, a6_12, a6_13, a6_14, a6_15
        y = Y[n0 + 7]
        y[b + 0], y[b + 1], y[b + 2], y[b + 3], y[b + 4], y[b + 5], y[b + 6], y[b + 7] = a7_0, a7_1, a7_2, a7_3, a7_4, a7_5, a7_6, a7_7
        y[b + 8], y[b + 9], y[b + 10], y[b + 11], y[b + 12], y[b + 13], y[b + 14], y[b + 15] = a7_8, a7_9, a7_10, a7_11, a7_12, a7_13, a7_14, a7_15
