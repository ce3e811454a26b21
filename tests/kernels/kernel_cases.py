"""Shared small cases for the kernel tests: odd shapes, every block and dtype."""
from __future__ import annotations

import torch

from kernels import BlockSparseMatrix

BLOCKS = [(16, 1), (8, 1), (4, 4), (1, 1), (2, 3)]
DTYPES = [torch.float32, torch.bfloat16, torch.float16]
# (rows, cols, density): not multiples of the blocks, fully dense, fully empty
SHAPES = [(37, 23, 0.3), (48, 32, 0.1), (20, 9, 1.0), (16, 12, 0.0), (1, 5, 0.5)]


def random_matrix(rows: int, cols: int, density: float, block, dtype=torch.float32, seed: int = 0):
    """(BlockSparseMatrix, dense float32 (rows, cols) it represents after storage rounding)."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, cols, generator=g)
    br, bc = block
    nb = torch.rand(-(-rows // br), -(-cols // bc), generator=g) < density
    if rows > 8 and 0 < density < 1:
        nb[1] = False  # an empty block row
    mask = nb.repeat_interleave(br, 0).repeat_interleave(bc, 1)[:rows, :cols]
    m = BlockSparseMatrix.from_dense(w, mask, block, dtype)
    return m, (w * mask).to(dtype).float()


