"""The packed block-sparse format (BSR with row blocks).

A matrix of shape (R, C) is cut into blocks of (br, bc) = `block` (rows x
cols); edge blocks may be partial (R, C need not be multiples of the block)
and are zero-padded inside `values`. Block rows are stored in order:

    values  (nnzb, br, bc)  float32, bfloat16 or float16 (math is float32)
    col_idx (nnzb,)         int32, block column of each kept block
    row_ptr (nbr + 1,)      int32, blocks of block row i are row_ptr[i]:row_ptr[i+1]

with nbr = ceil(R / br). Supported blocks: 16x1, 8x1, 4x4, 1x1 (others
work through the generic paths). The numba kernels take values as a 2-D
array (nnzb, br * bc): float32, or uint16 holding bfloat16 bits, or int16
holding float16 bits (numba has no half types); `numpy_args()` returns them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

BLOCKS = ((16, 1), (8, 1), (4, 4), (1, 1))
STORAGE_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
SUFFIXES = (".bsr_values", ".bsr_col_idx", ".bsr_row_ptr", ".bsr_meta")


def _key(prefix: str, suffix: str) -> str:
    return prefix + suffix if prefix else suffix[1:]


def pad_to_blocks(dense: torch.Tensor, block: tuple[int, int]) -> torch.Tensor:
    """(R, C) -> (nbr * br, nbc * bc), zero-padded at the bottom and right."""
    br, bc = block
    return F.pad(dense, (0, (-dense.shape[1]) % bc, 0, (-dense.shape[0]) % br))


def block_view(dense: torch.Tensor, block: tuple[int, int]) -> torch.Tensor:
    """(R, C) -> (nbr, nbc, br, bc) blocks of the zero-padded matrix."""
    br, bc = block
    p = pad_to_blocks(dense, block)
    return p.reshape(p.shape[0] // br, br, p.shape[1] // bc, bc).transpose(1, 2)


@dataclass
class BlockSparseMatrix:
    values: torch.Tensor   # (nnzb, br, bc)
    col_idx: torch.Tensor  # (nnzb,) int32
    row_ptr: torch.Tensor  # (nbr + 1,) int32
    shape: tuple[int, int]
    block: tuple[int, int]

    # --- construction -----------------------------------------------------------
    @classmethod
    def from_dense(cls, weight: torch.Tensor, mask: torch.Tensor | None = None,
                   block: tuple[int, int] = (16, 1), dtype: torch.dtype = torch.float32) -> BlockSparseMatrix:
        """Pack weight (R, C) * (mask != 0). A block is kept if any element of
        its mask block is nonzero (mask defaults to weight != 0)."""
        if weight.dim() != 2:
            raise ValueError(f"expected a 2-D weight, got shape {tuple(weight.shape)}")
        if dtype not in STORAGE_DTYPES:
            raise ValueError(f"storage dtype must be one of {STORAGE_DTYPES}, got {dtype}")
        block = (int(block[0]), int(block[1]))
        w = weight.detach().float()
        m = (w != 0) if mask is None else (mask.detach().to(w.device) != 0)
        if m.shape != w.shape:
            raise ValueError(f"mask shape {tuple(m.shape)} != weight shape {tuple(w.shape)}")
        w = w * m
        keep = block_view(m.float(), block).amax(dim=(2, 3)) > 0  # (nbr, nbc)
        rows, cols = torch.nonzero(keep, as_tuple=True)
        row_ptr = torch.zeros(keep.shape[0] + 1, dtype=torch.int32, device=w.device)
        row_ptr[1:] = torch.cumsum(keep.sum(1), 0)
        values = block_view(w, block)[rows, cols].to(dtype).contiguous()
        return cls(values, cols.to(torch.int32).contiguous(), row_ptr, (int(w.shape[0]), int(w.shape[1])), block)

    # --- queries ----------------------------------------------------------------
    @property
    def n_block_rows(self) -> int:
        return self.row_ptr.shape[0] - 1

    @property
    def n_block_cols(self) -> int:
        return -(-self.shape[1] // self.block[1])

    @property
    def nnz_blocks(self) -> int:
        return self.values.shape[0]

    @property
    def dtype(self) -> torch.dtype:
        return self.values.dtype

    @property
    def device(self) -> torch.device:
        return self.values.device

    @property
    def density(self) -> float:
        """Stored elements (padding included) over R * C."""
        return self.values.numel() / max(1, self.shape[0] * self.shape[1])

    def nbytes(self) -> int:
        """Bytes of values, col_idx and row_ptr."""
        return sum(t.numel() * t.element_size() for t in (self.values, self.col_idx, self.row_ptr))

    def block_row_of(self) -> torch.Tensor:
        """(nnzb,) int64 block row of each stored block."""
        counts = (self.row_ptr[1:] - self.row_ptr[:-1]).long()
        return torch.repeat_interleave(torch.arange(self.n_block_rows, device=self.device), counts)

    # --- conversion -------------------------------------------------------------
    def to_dense(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """(R, C) dense matrix."""
        br, bc = self.block
        full = torch.zeros(self.n_block_rows, self.n_block_cols, br, bc, dtype=dtype, device=self.device)
        full[self.block_row_of(), self.col_idx.long()] = self.values.to(dtype)
        return full.transpose(1, 2).reshape(self.n_block_rows * br, -1)[: self.shape[0], : self.shape[1]]

    def to(self, device=None, dtype: torch.dtype | None = None) -> BlockSparseMatrix:
        """Move to a device and/or change the storage dtype of values."""
        values = self.values.to(device=device, dtype=dtype or self.values.dtype).contiguous()
        return BlockSparseMatrix(values, self.col_idx.to(device), self.row_ptr.to(device), self.shape, self.block)

    def to_tensors(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """Flat dict for safetensors: {prefix.bsr_values, .bsr_col_idx, .bsr_row_ptr,
        .bsr_meta (int64 [R, C, br, bc])}."""
        meta = torch.tensor([*self.shape, *self.block], dtype=torch.int64)
        tensors = (self.values, self.col_idx, self.row_ptr, meta)
        return {_key(prefix, s): t.detach().cpu().contiguous() for s, t in zip(SUFFIXES, tensors)}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], prefix: str = "") -> BlockSparseMatrix:
        """Inverse of to_tensors; checks the arrays agree with each other."""
        try:
            values, col_idx, row_ptr, meta = (tensors[_key(prefix, s)] for s in SUFFIXES)
        except KeyError as e:
            raise KeyError(f"no packed matrix {prefix!r}: missing {e}") from None
        R, C, br, bc = (int(v) for v in meta.tolist())
        nbr, nbc = -(-R // br), -(-C // bc)
        ok = (values.dim() == 3 and tuple(values.shape[1:]) == (br, bc) and row_ptr.numel() == nbr + 1
              and col_idx.numel() == values.shape[0] and int(row_ptr[-1]) == values.shape[0]
              and (col_idx.numel() == 0 or (int(col_idx.min()) >= 0 and int(col_idx.max()) < nbc)))
        if not ok:
            raise ValueError(f"packed matrix {prefix!r} is inconsistent with its shape {R}x{C} block {br}x{bc}")
        return cls(values.contiguous(), col_idx.to(torch.int32).contiguous(), row_ptr.to(torch.int32).contiguous(),
                   (R, C), (br, bc))

    def numpy_args(self) -> tuple:
        """(values (nnzb, br * bc) float32 | uint16 (bf16 bits) | int16 (fp16 bits),
        col_idx int32, row_ptr int32, br, bc): the leading arguments of the
        kernels.cpu functions. Views, no copies (the matrix must be on the CPU)."""
        v = self.values.detach().reshape(self.nnz_blocks, self.block[0] * self.block[1])
        if v.dtype == torch.bfloat16:
            a = v.view(torch.int16).numpy().view(np.uint16)
        elif v.dtype == torch.float16:
            a = v.view(torch.int16).numpy()
        else:
            a = v.numpy()
        return (np.ascontiguousarray(a), self.col_idx.numpy(), self.row_ptr.numpy(), self.block[0], self.block[1])
