"""Sparse convolutions on the CPU (Elsen et al., "Fast Sparse ConvNets"): block-sparse
weights times dense channel-major activations, many time frames per product.

The weight of a Conv1d (Cout, Cin, k) is packed as the matrix (Cout, Cin * k)
(column c = cin * k + tap, the layout of weight.reshape(Cout, -1) and of
training/sparsity's masks) in (br, 1) blocks: br output channels share one
input column. A 1x1 convolution is k = 1; a dilated one (k > 1) is k shifted
pointwise products summed in one pass (column c reads input row c // k
shifted by (c % k) * dilation).

numba kernels (values from `BlockSparseMatrix.numpy_args()`; bc must be 1):

    conv1d_into(values, col_idx, row_ptr, br, ksize, dilation, x, bias, out)
        x (B, Cin, T_out + (ksize - 1) * dilation) zero-padded input,
        bias (Cout,), out (B, Cout, T_out) float32 C-contiguous:
        out[b, o, t] = bias[o] + sum_c S[o, c] x[b, c // k, t + (c % k) * dilation]
    conv1d_into_parallel(...same...)   (batch, column tile) work items over numba threads

Loop nest (measured on 256x256 at 90%, 1,000 frames, one thread: about 1.5x
faster than kernels/cpu_spmm's block-row tiles): per (column tile of <= TILE
frames, block row, row of the block), one output row slice stays in L1 and
is updated by four stored blocks at a time, so each output load/store pays
for four vector FMAs; the loop vectorizer (default flags, not slp_only)
vectorizes over time. Threads split the time axis, so no two threads write
the same output and the work is even whatever the row structure.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from numba import njit, prange

from .format import BlockSparseMatrix
from .numba_util import OPTS, load_f32

TILE = 256  # frames per work item: four input rows and one output row of it stay in L1


@njit(**OPTS)
def _conv_row(values, row_ptr, rb, r, x_row, shift, x, o, j0, j1, b0):
    """o[:] = b0 + row r of block row rb of S times the shifted inputs, frames j0..j1;
    stored block k reads input row x_row[k] from frame j0 + shift[k]."""
    n = j1 - j0
    for j in range(n):
        o[j] = b0
    k, k1 = row_ptr[rb], row_ptr[rb + 1]
    while k + 4 <= k1:
        s0, s1, s2, s3 = j0 + shift[k], j0 + shift[k + 1], j0 + shift[k + 2], j0 + shift[k + 3]
        x0, x1 = x[x_row[k], s0:s0 + n], x[x_row[k + 1], s1:s1 + n]
        x2, x3 = x[x_row[k + 2], s2:s2 + n], x[x_row[k + 3], s3:s3 + n]
        v0, v1 = load_f32(values, k, r), load_f32(values, k + 1, r)
        v2, v3 = load_f32(values, k + 2, r), load_f32(values, k + 3, r)
        for j in range(n):
            o[j] += (v0 * x0[j] + v1 * x1[j]) + (v2 * x2[j] + v3 * x3[j])
        k += 4
    while k < k1:
        s0 = j0 + shift[k]
        x0 = x[x_row[k], s0:s0 + n]
        v0 = load_f32(values, k, r)
        for j in range(n):
            o[j] += v0 * x0[j]
        k += 1


@njit(**OPTS)
def _conv_item(values, row_ptr, br, x_row, shift, x, bias, out, item, n_tiles):
    """Work item `item` = (batch, column tile): all output rows of those frames."""
    b, tile = item // n_tiles, item % n_tiles
    t_out = out.shape[2]
    n16 = (t_out + 15) // 16  # tile edges on multiples of 16 frames: no remainder loop inside
    j0, j1 = 16 * (tile * n16 // n_tiles), min(t_out, 16 * ((tile + 1) * n16 // n_tiles))
    n_rows = out.shape[1]
    xb, ob = x[b], out[b]
    for rb in range(row_ptr.shape[0] - 1):
        for r in range(min(br, n_rows - rb * br)):
            _conv_row(values, row_ptr, rb, r, x_row, shift, xb, ob[rb * br + r, j0:j1], j0, j1, bias[rb * br + r])


@njit(**OPTS)
def _prepare(col_idx, ksize, dilation, t_out):
    """(input row, frame shift) of every stored block (no division in the hot loop), tiles."""
    x_row = col_idx // ksize
    shift = (col_idx % ksize) * dilation
    return x_row, shift, max(1, (t_out + TILE - 1) // TILE)


@njit(**OPTS)
def conv1d_into(values, col_idx, row_ptr, br, ksize, dilation, x, bias, out):
    """See the module docstring; one thread."""
    x_row, shift, n_tiles = _prepare(col_idx, ksize, dilation, out.shape[2])
    for item in range(out.shape[0] * n_tiles):
        _conv_item(values, row_ptr, br, x_row, shift, x, bias, out, item, n_tiles)


@njit(parallel=True, **OPTS)
def conv1d_into_parallel(values, col_idx, row_ptr, br, ksize, dilation, x, bias, out):
    """conv1d_into with (batch, column tile) items over numba threads."""
    x_row, shift, n_tiles = _prepare(col_idx, ksize, dilation, out.shape[2])
    for item in prange(out.shape[0] * n_tiles):
        _conv_item(values, row_ptr, br, x_row, shift, x, bias, out, item, n_tiles)


# --- torch entry point ---------------------------------------------------------------
def supports(m: BlockSparseMatrix) -> bool:
    """The conv kernels need (br, 1) blocks."""
    return m.block[1] == 1


def conv1d(m: BlockSparseMatrix, x: torch.Tensor, bias: torch.Tensor | None = None, kernel_size: int = 1,
           dilation: int = 1, padding: int = 0, threads: int | None = None, taps=None) -> torch.Tensor:
    """Sparse Conv1d: m packs weight.reshape(Cout, Cin * kernel_size); x (B, Cin, T)
    -> (B, Cout, T + 2 * padding - dilation * (kernel_size - 1)) float32.

    CPU float32 without autograd and (br, 1) blocks: the C kernel (kernels/cpu_c.py,
    one thread; `taps` = its cpu_c.conv_taps, computed when None) when it is built,
    else these numba kernels; otherwise the torch reference (kernels.reference.conv1d)."""
    from . import ops, reference

    cout, cols = m.shape
    if x.dim() != 3 or x.shape[1] * kernel_size != cols:
        raise ValueError(f"x must be (B, {cols // kernel_size}, T) for a {cout}x{cols} matrix with "
                         f"kernel {kernel_size}, got {tuple(x.shape)}")
    tensors = (x,) if bias is None else (x, bias)
    if not supports(m) or ops.pick_path(m, *tensors) != "numba":
        return reference.conv1d(m, x, bias, kernel_size, dilation, padding)
    reach = dilation * (kernel_size - 1)
    t_out = x.shape[2] + 2 * padding - reach
    if t_out < 0:
        raise ValueError(f"input of {x.shape[2]} frames is shorter than the kernel's reach")
    out = torch.empty(x.shape[0], cout, t_out, dtype=torch.float32)
    lib = ops.c_spmm_lib()
    if lib is not None:  # 3-7x the numba kernel on one thread (docs/sparse_conv.md)
        from . import cpu_c
        b = None if bias is None else bias.detach().float().contiguous()
        cpu_c.conv1d_into(lib, m, taps or cpu_c.conv_taps(m, kernel_size, dilation), x.detach().contiguous(),
                          padding, reach, b, out)
        return out
    xp = F.pad(x, (padding, padding)) if padding else x
    xn = xp.detach().contiguous().numpy()
    bn = np.zeros(cout, np.float32) if bias is None else bias.detach().float().contiguous().numpy()
    values, col_idx, row_ptr, br, _ = m.numpy_args()
    with ops._numba_threads(threads) as n:
        parallel = n > 1 and m.values.numel() * x.shape[0] * t_out >= ops.PARALLEL_MIN_FLOPS
        fn = conv1d_into_parallel if parallel else conv1d_into
        fn(values, col_idx, row_ptr, br, kernel_size, dilation, xn, bn, out.numpy())
    return out
