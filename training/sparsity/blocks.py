"""Block structure of masks: scores per block, top-k block masks, ERK densities.

A block is (rows, cols) of a 2-D weight (out, in); conv weights (out, in, k)
are seen as (out, in * k). Blocks at the edges may be partial (shapes need
not be multiples of the block); the kernels pack such masks as they are.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def as_matrix(weight: torch.Tensor) -> torch.Tensor:
    """(out, in, *k) -> (out, in * prod(k)), a view."""
    return weight.reshape(weight.shape[0], -1)


def block_scores(matrix: torch.Tensor, block: tuple[int, int]) -> torch.Tensor:
    """Sum of |x| per block: (R, C) -> (ceil(R / br), ceil(C / bc))."""
    br, bc = block
    rows, cols = matrix.shape
    padded = F.pad(matrix.abs().float(), (0, (-cols) % bc, 0, (-rows) % br))
    return padded.reshape(padded.shape[0] // br, br, padded.shape[1] // bc, bc).sum(dim=(1, 3))


def expand_blocks(block_mask: torch.Tensor, block: tuple[int, int], shape: tuple[int, int]) -> torch.Tensor:
    """A (nbr, nbc) block mask as an element mask of `shape`."""
    br, bc = block
    full = block_mask.repeat_interleave(br, 0).repeat_interleave(bc, 1)
    return full[: shape[0], : shape[1]]


def n_keep(n_blocks: int, density: float) -> int:
    return max(0, min(n_blocks, int(round(density * n_blocks))))


def topk_blocks(scores: torch.Tensor, keep: int, among: torch.Tensor | None = None) -> torch.Tensor:
    """Boolean block mask of the `keep` highest scores (restricted to `among`)."""
    flat = scores.flatten().clone()
    if among is not None:
        flat[~among.flatten()] = -math.inf
    mask = torch.zeros_like(flat, dtype=torch.bool)
    if keep > 0:
        mask[torch.topk(flat, keep, sorted=False).indices] = True
    return mask.reshape(scores.shape)


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
