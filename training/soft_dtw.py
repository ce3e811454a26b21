"""Soft dynamic time warping (Cuturi and Blondel 2017) with the warp penalty of EATS.

    r(i, j) = d(i, j) + softmin_gamma(r(i-1, j-1), r(i-1, j) + w, r(i, j-1) + w)
    softmin_gamma(a) = -gamma log sum exp(-a / gamma)

EATS (Donahue et al. 2020) adds the penalty `w` to the non-diagonal moves so
that the alignment prefers to advance in both sequences. As gamma -> 0 the
value is plain DTW with that penalty (`dtw`, the exact reference).

On CPU both passes are numba kernels (one compiled double loop per pass);
elsewhere they run as an anti-diagonal wavefront in torch: all cells (i, j)
with i + j = k depend only on diagonals k - 1 and k - 2, so each diagonal is
one vectorized step over the batch and the cells of that diagonal. The
backward pass is Cuturi and Blondel's E recursion (expected alignment), not
autograd through the recursion, so memory is that of R and E: (B, N + 2, M + 2).
"""
from __future__ import annotations

import numba
import numpy as np
import torch

_BIG = 1e30  # "infinite" but finite, so that inf - inf never appears


@numba.njit(cache=True)
def _forward_cpu(cost, gamma, warp):
    b, n, m = cost.shape
    r = np.full((b, n + 2, m + 2), _BIG)
    for s in range(b):
        r[s, 0, 0] = 0.0
        for i in range(1, n + 1):
            for j in range(1, m + 1):
                a, c, d = -r[s, i - 1, j - 1] / gamma, -(r[s, i - 1, j] + warp) / gamma, -(r[s, i, j - 1] + warp) / gamma
                top = max(a, max(c, d))
                r[s, i, j] = cost[s, i - 1, j - 1] - gamma * (top + np.log(np.exp(a - top) + np.exp(c - top)
                                                                           + np.exp(d - top)))
    return r


@numba.njit(cache=True)
def _backward_cpu(cost, r, gamma, warp):
    b, n, m = cost.shape
    e = np.zeros((b, n + 2, m + 2))
    for s in range(b):
        e[s, n, m] = 1.0
        for i in range(n, 0, -1):
            for j in range(m, 0, -1):
                if i == n and j == m:
                    continue
                here, acc = r[s, i, j], 0.0
                if i < n:
                    acc += e[s, i + 1, j] * np.exp((r[s, i + 1, j] - here - cost[s, i, j - 1] - warp) / gamma)
                if j < m:
                    acc += e[s, i, j + 1] * np.exp((r[s, i, j + 1] - here - cost[s, i - 1, j] - warp) / gamma)
                if i < n and j < m:
                    acc += e[s, i + 1, j + 1] * np.exp((r[s, i + 1, j + 1] - here - cost[s, i, j]) / gamma)
                e[s, i, j] = acc
    return e


def _diagonal(k: int, n: int, m: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """1-based cell indices (i, j) of anti-diagonal i + j = k inside an n x m grid."""
    i = torch.arange(max(1, k - m), min(n, k - 1) + 1, device=device)
    return i, k - i


def _softmin3(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, gamma: float) -> torch.Tensor:
    stacked = torch.stack([a, b, c]) / -gamma
    return -gamma * torch.logsumexp(stacked, dim=0)


class _SoftDTW(torch.autograd.Function):
    @staticmethod
    def forward(ctx, cost: torch.Tensor, gamma: float, warp: float, use_numba: bool) -> torch.Tensor:
        b, n, m = cost.shape
        ctx.gamma, ctx.warp, ctx.use_numba = gamma, warp, use_numba
        if use_numba:
            c64 = cost.detach().double().numpy()
            r = torch.from_numpy(_forward_cpu(c64, gamma, warp))
            ctx.save_for_backward(cost, r)
            return r[:, n, m].to(cost.dtype)
        r = torch.full((b, n + 2, m + 2), _BIG, dtype=cost.dtype, device=cost.device)
        r[:, 0, 0] = 0.0
        for k in range(2, n + m + 1):
            i, j = _diagonal(k, n, m, cost.device)
            best = _softmin3(r[:, i - 1, j - 1], r[:, i - 1, j] + warp, r[:, i, j - 1] + warp, gamma)
            r[:, i, j] = cost[:, i - 1, j - 1] + best
        ctx.save_for_backward(cost, r)
        return r[:, n, m].clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        cost, r = ctx.saved_tensors
        gamma, warp = ctx.gamma, ctx.warp
        b, n, m = cost.shape
        if ctx.use_numba:
            e = torch.from_numpy(_backward_cpu(cost.detach().double().numpy(), r.numpy(), gamma, warp))
            return (grad[:, None, None].double() * e[:, 1:n + 1, 1:m + 1]).to(cost.dtype), None, None, None
        d = torch.zeros((b, n + 2, m + 2), dtype=cost.dtype, device=cost.device)
        d[:, 1:n + 1, 1:m + 1] = cost
        r = r.clone()
        r[:, n + 1, :] = -torch.inf  # cells past the end contribute exp(-inf) = 0
        r[:, :, m + 1] = -torch.inf
        r[:, n + 1, m + 1] = r[:, n, m]
        e = torch.zeros_like(r)
        e[:, n + 1, m + 1] = 1.0
        for k in range(n + m, 1, -1):
            i, j = _diagonal(k, n, m, cost.device)
            here = r[:, i, j]
            down = torch.exp((r[:, i + 1, j] - here - d[:, i + 1, j] - warp) / gamma)
            right = torch.exp((r[:, i, j + 1] - here - d[:, i, j + 1] - warp) / gamma)
            diag = torch.exp((r[:, i + 1, j + 1] - here - d[:, i + 1, j + 1]) / gamma)
            e[:, i, j] = e[:, i + 1, j] * down + e[:, i, j + 1] * right + e[:, i + 1, j + 1] * diag
        return grad[:, None, None] * e[:, 1:n + 1, 1:m + 1], None, None, None


def soft_dtw(cost: torch.Tensor, gamma: float = 0.01, warp: float = 1.0, kernel: str = "auto") -> torch.Tensor:
    """Soft-DTW value of pairwise costs (B, N, M) -> (B,); differentiable in `cost`.
    kernel: "numba" (CPU tensors), "wavefront" (torch, any device) or "auto"."""
    if cost.dim() != 3:
        raise ValueError(f"cost must be (B, N, M), got {tuple(cost.shape)}")
    if gamma <= 0:
        raise ValueError("gamma must be positive (use dtw() for the hard minimum)")
    if kernel not in ("auto", "numba", "wavefront"):
        raise ValueError(f"kernel={kernel!r}; choose auto, numba or wavefront")
    use_numba = kernel == "numba" or (kernel == "auto" and cost.device.type == "cpu")
    return _SoftDTW.apply(cost, float(gamma), float(warp), use_numba)


def l1_cost(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Pairwise L1 distances of frames: (B, N, F), (B, M, F) -> (B, N, M)."""
    return torch.cdist(x, y, p=1)  # 6x faster than broadcasting (B, N, M, F), forward and backward


def soft_dtw_loss(x: torch.Tensor, y: torch.Tensor, gamma: float = 0.01, warp: float = 1.0) -> torch.Tensor:
    """EATS's spectrogram prediction loss: soft-DTW of L1 frame costs between generated
    frames x (B, N, F) and real frames y (B, M, F), divided by M; mean over the batch."""
    return (soft_dtw(l1_cost(x, y), gamma, warp) / y.shape[1]).mean()


def dtw(cost: np.ndarray, warp: float = 1.0) -> float:
    """Plain DTW with the same warp penalty (N, M) -> value; the exact reference for tests."""
    n, m = cost.shape
    r = np.full((n + 1, m + 1), np.inf)
    r[0, 0] = 0.0
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            r[i, j] = cost[i - 1, j - 1] + min(r[i - 1, j - 1], r[i - 1, j] + warp, r[i, j - 1] + warp)
    return float(r[n, m])
