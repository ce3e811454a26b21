"""BlockSparseLinear: trains dense with a block mask, packs for inference."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import ops
from .format import BlockSparseMatrix, block_view


def block_scores(weight: torch.Tensor, block: tuple[int, int]) -> torch.Tensor:
    """Sum of |w| per block: (R, C) -> (nbr, nbc) float32; edge padding counts as zero."""
    return block_view(weight.detach().abs().float(), block).sum(dim=(2, 3))


def topk_blocks(scores: torch.Tensor, keep: int, among: torch.Tensor | None = None) -> torch.Tensor:
    """Bool block mask (nbr, nbc) of the `keep` highest scores (only where `among`, if given)."""
    flat = scores.flatten().clone()
    if among is not None:
        flat[~among.flatten()] = -math.inf
    mask = torch.zeros_like(flat, dtype=torch.bool)
    if keep > 0:
        mask[torch.topk(flat, keep, sorted=False).indices] = True
    return mask.reshape(scores.shape)


def expand_blocks(block_mask: torch.Tensor, block: tuple[int, int], shape: tuple[int, int]) -> torch.Tensor:
    """A (nbr, nbc) block mask as the (R, C) = `shape` element mask."""
    br, bc = block
    full = block_mask.repeat_interleave(br, 0).repeat_interleave(bc, 1)
    return full[: shape[0], : shape[1]].contiguous()


def block_magnitude_mask(weight: torch.Tensor, sparsity: float, block: tuple[int, int]) -> torch.Tensor:
    """Bool mask (R, C) keeping the round((1 - sparsity) * n_blocks) blocks of
    largest L1 norm; edge blocks may be partial (their padding counts as zero)."""
    if not 0.0 <= sparsity <= 1.0:
        raise ValueError(f"sparsity must be in [0, 1], got {sparsity}")
    scores = block_scores(weight, block)
    keep = int(round((1.0 - sparsity) * scores.numel()))
    return expand_blocks(topk_blocks(scores, keep), block, tuple(weight.shape))


class BlockSparseLinear(nn.Module):
    """y = x W^T + b with W (out, in) masked by blocks of `block` (rows x cols).

    Training: a dense weight and a `mask` buffer; forward uses weight * mask,
    so masked weights get no gradient and `apply_mask_()` keeps them zero.
    Inference: `pack()` stores the packed matrix and forward runs the kernels
    (x (..., in) -> (..., out)); outputs equal the unpacked ones.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 block: tuple[int, int] = (16, 1)):
        super().__init__()
        self.in_features, self.out_features, self.block = in_features, out_features, tuple(block)
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        self.register_buffer("mask", torch.ones(out_features, in_features, dtype=torch.bool))
        nn.init.kaiming_uniform_(self.weight, a=5 ** 0.5)
        self.packed: BlockSparseMatrix | None = None

    @torch.no_grad()
    def set_mask(self, mask: torch.Tensor) -> None:
        """Replace the mask (R, C) and zero the weights it removes."""
        self.mask.copy_(mask.to(self.mask.device) != 0)
        self.apply_mask_()

    @torch.no_grad()
    def prune_(self, sparsity: float) -> torch.Tensor:
        """Mask the smallest blocks by magnitude to reach `sparsity`; returns the mask."""
        self.set_mask(block_magnitude_mask(self.weight * self.mask, sparsity, self.block))
        return self.mask

    @torch.no_grad()
    def apply_mask_(self) -> None:
        self.weight.mul_(self.mask)

    def masked_weight(self) -> torch.Tensor:
        return self.weight * self.mask

    def pack(self, dtype: torch.dtype = torch.float32) -> BlockSparseMatrix:
        """Pack the masked weight (values in `dtype`); forward then uses the kernels."""
        self.packed = BlockSparseMatrix.from_dense(self.weight.detach(), self.mask, self.block, dtype)
        return self.packed

    def unpack(self) -> None:
        self.packed = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.packed is None:
            return F.linear(x, self.masked_weight(), self.bias)
        lead = x.shape[:-1]
        flat = x.reshape(-1, self.in_features)
        if flat.shape[0] == 1:
            y = ops.spmv(self.packed, flat[0])[None]
        else:
            y = ops.spmm(self.packed, flat.t().contiguous()).t()
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*lead, self.out_features)

    def extra_repr(self) -> str:
        density = float(self.mask.float().mean())
        return (f"in_features={self.in_features}, out_features={self.out_features}, block={self.block}, "
                f"density={density:.3f}, packed={self.packed is not None}")
