"""Pure-torch reference ops: the spec every fast path is tested against.

They read only the packed arrays (never the dense matrix), compute in
float32 and work on any device and with autograd (through x, not through
the packed values' structure).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .format import BlockSparseMatrix


def spmm(m: BlockSparseMatrix, x: torch.Tensor) -> torch.Tensor:
    """S (R, C) @ x (C, N) -> (R, N) float32."""
    br, bc = m.block
    R, C = m.shape
    if x.dim() != 2 or x.shape[0] != C:
        raise ValueError(f"x must be ({C}, N), got {tuple(x.shape)}")
    n = x.shape[1]
    xp = F.pad(x.float(), (0, 0, 0, m.n_block_cols * bc - C)).reshape(m.n_block_cols, bc, n)
    prod = m.values.float() @ xp[m.col_idx.long()]  # (nnzb, br, N)
    y = torch.zeros(m.n_block_rows, br, n, dtype=torch.float32, device=x.device)
    y = y.index_add(0, m.block_row_of(), prod)
    return y.reshape(-1, n)[:R]


def spmv(m: BlockSparseMatrix, x: torch.Tensor) -> torch.Tensor:
    """S (R, C) @ x (C,) -> (R,) float32."""
    return spmm(m, x.reshape(-1, 1))[:, 0]


def sddmm(a: torch.Tensor, b: torch.Tensor, pattern: BlockSparseMatrix) -> BlockSparseMatrix:
    """(a (R, K) @ b (K, C)) sampled at the blocks of `pattern` (R, C).

    Returns a matrix with pattern's structure and float32 values; padding
    positions of edge blocks are zero.
    """
    br, bc = pattern.block
    R, C = pattern.shape
    if a.shape[0] != R or b.shape[1] != C or a.shape[1] != b.shape[0]:
        raise ValueError(f"sddmm shapes {tuple(a.shape)} @ {tuple(b.shape)} vs pattern {R}x{C}")
    k = a.shape[1]
    ap = F.pad(a.float(), (0, 0, 0, pattern.n_block_rows * br - R)).reshape(-1, br, k)
    bp = F.pad(b.float(), (0, pattern.n_block_cols * bc - C)).reshape(k, -1, bc).transpose(0, 1)
    values = ap[pattern.block_row_of()] @ bp[pattern.col_idx.long()]  # (nnzb, br, bc)
    return BlockSparseMatrix(values, pattern.col_idx, pattern.row_ptr, pattern.shape, pattern.block)


def conv1x1(m: BlockSparseMatrix, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Sparse 1x1 convolution: weights (Cout, Cin), x (B, Cin, T) -> (B, Cout, T)."""
    bsz, cin, t = x.shape
    y = spmm(m, x.transpose(0, 1).reshape(cin, bsz * t))  # (Cout, B * T)
    y = y.reshape(-1, bsz, t).transpose(0, 1)
    return y + bias.float()[None, :, None] if bias is not None else y


def conv1d(m: BlockSparseMatrix, x: torch.Tensor, bias: torch.Tensor | None = None, kernel_size: int = 1,
           dilation: int = 1, padding: int = 0) -> torch.Tensor:
    """Sparse Conv1d: m packs weight.reshape(Cout, Cin * kernel_size) (column cin * k + tap);
    x (B, Cin, T) -> (B, Cout, T + 2 padding - dilation (kernel_size - 1))."""
    xp = F.pad(x.float(), (padding, padding))
    t_out = xp.shape[2] - dilation * (kernel_size - 1)
    taps = torch.stack([xp[:, :, i * dilation: i * dilation + t_out] for i in range(kernel_size)], 2)
    return conv1x1(m, taps.reshape(x.shape[0], -1, t_out), bias)  # (B, Cin * k, T_out) rows cin * k + tap


def gru_gates(gh: torch.Tensor, ix: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """WaveRNN gates from gh = R h + b (3H,), ix (3H,), h (H,); order u, r, e."""
    H = h.shape[-1]
    u = torch.sigmoid(gh[..., :H] + ix[..., :H])
    r = torch.sigmoid(gh[..., H:2 * H] + ix[..., H:2 * H])
    e = torch.tanh(r * gh[..., 2 * H:] + ix[..., 2 * H:])
    return u * h + (1 - u) * e


def gru_step(m: BlockSparseMatrix, bias: torch.Tensor, ix: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """One WaveRNN GRU step: R (3H, H) packed, bias (3H,), ix = I x (3H,), h (H,) -> h' (H,).

    u = sigm(R_u h + b_u + Ix_u), r = sigm(R_r h + b_r + Ix_r),
    e = tanh(r * (R_e h + b_e) + Ix_e), h' = u * h + (1 - u) * e.
    """
    gh = spmv(m, h) + bias.float()
    return gru_gates(gh, ix.float(), h.float())
