"""GPU fast paths in Triton: SpMM, sparse 1x1 convolution and SDDMM.

One program per (block row, column tile, batch) for SpMM/conv: it walks the
block row's stored blocks, multiplies each (br, bc) block by the matching
(bc, BLOCK_N) rows of x in float32 and stores a (br, BLOCK_N) output tile
(the 1-D row tiling of Sputnik; Elsen et al.'s channel-major 1x1 conv is the
same kernel with a batch axis). SDDMM: one program per stored block.
Block dims must be powers of two (16x1, 8x1, 4x4, 1x1). Runs on the CPU
under TRITON_INTERPRET=1 (set before triton is imported), which is how the
tests check it.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .format import BlockSparseMatrix


def supports(m: BlockSparseMatrix) -> bool:
    """Triton needs power-of-two block dims."""
    return all(d & (d - 1) == 0 for d in m.block)


@triton.jit
def _spmm_kernel(values, col_idx, row_ptr, x, y, bias, R, C, N,
                 sxb, sxc, sxn, syb, syr, syn,
                 BR: tl.constexpr, BC: tl.constexpr, BLOCK_N: tl.constexpr, HAS_BIAS: tl.constexpr,
                 MAX_ROW_BLOCKS: tl.constexpr):
    rb = tl.program_id(0)
    cn = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    b = tl.program_id(2)
    r_in = tl.arange(0, BR)
    c_in = tl.arange(0, BC)
    rows = rb * BR + r_in
    n_ok = cn < N
    acc = tl.zeros((BR, BLOCK_N), dtype=tl.float32)
    start = tl.load(row_ptr + rb)
    end = tl.load(row_ptr + rb + 1)
    # bounded by the longest block row (a power of two, to bound recompiles),
    # masked past this row's end: the interpreter (with numpy 2.4) can only
    # loop over compile-time bounds
    for i in range(0, MAX_ROW_BLOCKS):
        k = start + i
        ok = k < end
        xc = tl.load(col_idx + k, mask=ok, other=0) * BC + c_in  # (BC,)
        v = tl.load(values + k * (BR * BC) + r_in[:, None] * BC + c_in[None, :],
                    mask=ok, other=0.0).to(tl.float32)  # (BR, BC)
        xv = tl.load(x + b * sxb + xc[:, None] * sxc + cn[None, :] * sxn,
                     mask=ok & (xc[:, None] < C) & n_ok[None, :], other=0.0).to(tl.float32)  # (BC, BLOCK_N)
        acc += tl.sum(v[:, :, None] * xv[None, :, :], axis=1)
    if HAS_BIAS:
        acc += tl.load(bias + rows, mask=rows < R, other=0.0).to(tl.float32)[:, None]
    tl.store(y + b * syb + rows[:, None] * syr + cn[None, :] * syn, acc,
             mask=(rows[:, None] < R) & n_ok[None, :])


@triton.jit
def _sddmm_kernel(a, bmat, block_row, col_idx, out, R, C, K, sar, sak, sbk, sbc,
                  BR: tl.constexpr, BC: tl.constexpr, BLOCK_K: tl.constexpr, K_TILES: tl.constexpr):
    k = tl.program_id(0)
    r_in = tl.arange(0, BR)
    c_in = tl.arange(0, BC)
    rows = tl.load(block_row + k) * BR + r_in
    cols = tl.load(col_idx + k) * BC + c_in
    acc = tl.zeros((BR, BC), dtype=tl.float32)
    for kt in range(0, K_TILES):
        t = kt * BLOCK_K + tl.arange(0, BLOCK_K)
        av = tl.load(a + rows[:, None] * sar + t[None, :] * sak,
                     mask=(rows[:, None] < R) & (t[None, :] < K), other=0.0).to(tl.float32)  # (BR, BLOCK_K)
        bv = tl.load(bmat + t[:, None] * sbk + cols[None, :] * sbc,
                     mask=(t[:, None] < K) & (cols[None, :] < C), other=0.0).to(tl.float32)  # (BLOCK_K, BC)
        acc += tl.sum(av[:, :, None] * bv[None, :, :], axis=1)
    tl.store(out + k * (BR * BC) + r_in[:, None] * BC + c_in[None, :], acc)


def max_row_blocks(m: BlockSparseMatrix) -> int:
    """Blocks in the longest block row (one host sync; cache it with the matrix in hot loops)."""
    return int((m.row_ptr[1:] - m.row_ptr[:-1]).max()) if m.n_block_rows else 0


def _check(m: BlockSparseMatrix) -> None:
    if not supports(m):
        raise ValueError(f"triton kernels need power-of-two block dims, got {m.block}")


def _launch_spmm(m: BlockSparseMatrix, x: torch.Tensor, y: torch.Tensor, bias, strides_x, strides_y, batch: int):
    br, bc = m.block
    n = y.shape[-1]
    block_n = min(64, max(16, triton.next_power_of_2(n)))
    grid = (m.n_block_rows, triton.cdiv(n, block_n), batch)
    _spmm_kernel[grid](m.values, m.col_idx, m.row_ptr, x, y, bias if bias is not None else y,
                       m.shape[0], m.shape[1], n, *strides_x, *strides_y,
                       BR=br, BC=bc, BLOCK_N=block_n, HAS_BIAS=bias is not None,
                       MAX_ROW_BLOCKS=triton.next_power_of_2(max_row_blocks(m)))


def spmm(m: BlockSparseMatrix, x: torch.Tensor) -> torch.Tensor:
    """S (R, C) @ x (C, N) -> (R, N) float32."""
    _check(m)
    y = torch.empty(m.shape[0], x.shape[1], dtype=torch.float32, device=x.device)
    if y.numel():
        _launch_spmm(m, x, y, None, (0, x.stride(0), x.stride(1)), (0, y.stride(0), y.stride(1)), 1)
    return y


def conv1x1(m: BlockSparseMatrix, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Weights (Cout, Cin), x (B, Cin, T) channel-major -> (B, Cout, T) float32 (+ bias (Cout,))."""
    _check(m)
    y = torch.empty(x.shape[0], m.shape[0], x.shape[2], dtype=torch.float32, device=x.device)
    if y.numel():
        _launch_spmm(m, x, y, bias, x.stride(), y.stride(), x.shape[0])
    return y


def sddmm(a: torch.Tensor, b: torch.Tensor, pattern: BlockSparseMatrix) -> BlockSparseMatrix:
    """(a (R, K) @ b (K, C)) at pattern's blocks -> float32 values (nnzb, br, bc)."""
    _check(pattern)
    br, bc = pattern.block
    out = torch.empty(pattern.nnz_blocks, br, bc, dtype=torch.float32, device=a.device)
    if pattern.nnz_blocks:
        k = a.shape[1]
        block_k = min(64, max(16, triton.next_power_of_2(k)))
        rows = pattern.block_row_of().to(torch.int32)
        _sddmm_kernel[(pattern.nnz_blocks,)](a, b, rows, pattern.col_idx, out, pattern.shape[0], pattern.shape[1], k,
                                             a.stride(0), a.stride(1), b.stride(0), b.stride(1),
                                             BR=br, BC=bc, BLOCK_K=block_k, K_TILES=triton.cdiv(k, block_k))
    return BlockSparseMatrix(out, pattern.col_idx, pattern.row_ptr, pattern.shape, pattern.block)
