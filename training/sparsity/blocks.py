"""Block structure of masks for training: matrix views, keep counts, ERK.

The block primitives themselves (scores per block, top-k block masks, their
expansion, magnitude masks) are the kernels' (kernels/linear.py), so that a
trained mask is exactly what the packed format and BlockSparseLinear expect.
A block is (rows, cols) of a 2-D weight (out, in); conv weights (out, in, k)
are seen as (out, in * k). Edge blocks may be partial.
"""
from __future__ import annotations

import math

import torch

from kernels.linear import block_magnitude_mask, block_scores, expand_blocks, topk_blocks

__all__ = ["as_matrix", "block_magnitude_mask", "block_scores", "erk_densities", "expand_blocks", "n_keep",
           "topk_blocks"]


def as_matrix(weight: torch.Tensor) -> torch.Tensor:
    """(out, in, *k) -> (out, in * prod(k)), a view."""
    return weight.reshape(weight.shape[0], -1)


def n_keep(n_blocks: int, density: float) -> int:
    return max(0, min(n_blocks, int(round(density * n_blocks))))


def erk_densities(shapes: dict[str, tuple[int, ...]], density: float) -> dict[str, float]:
    """Erdos-Renyi-Kernel layer densities (Evci et al.) averaging to `density`.

    Density of a layer is proportional to sum(shape) / prod(shape); layers
    that would exceed 1 are made dense and the rest rescaled.
    """
    sizes = {k: math.prod(s) for k, s in shapes.items()}
    raw = {k: sum(s) / math.prod(s) for k, s in shapes.items()}
    dense: set[str] = set()
    while True:
        budget = density * sum(sizes.values()) - sum(sizes[k] for k in dense)
        free = {k: raw[k] * sizes[k] for k in shapes if k not in dense}
        scale = budget / max(sum(free.values()), 1e-12)
        over = [k for k in free if raw[k] * scale > 1.0]
        if not over:
            return {k: 1.0 if k in dense else raw[k] * scale for k in shapes}
        dense.update(over)
