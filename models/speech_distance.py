"""Frechet and Kernel DeepSpeech Distance (Binkowski et al. 2019).

Both compare two sets of utterance-level features from a speech recognizer
(the paper: Deep Speech 2 activations averaged over time):

- FDSD: the Frechet distance between Gaussians fitted to the two sets,
  |mu_x - mu_y|^2 + Tr(S_x + S_y - 2 (S_x S_y)^(1/2)).
- KDSD: an unbiased estimate of the squared MMD with the cubic polynomial
  kernel k(x, y) = (x.y / d + 1)^3 (as in KID); its expectation is zero for
  equal distributions, so small sets do not bias it upward.
- The conditional variants (cFDSD, cKDSD) use the same formulas on paired
  sets: generated audio against the real audio of the very same sentences,
  where the unconditional ones compare against real audio of other
  sentences.

The recognizer is passed in as a callable (audio -> feature vector), so this
module does not depend on which recognizer or checkpoint is used; report
that next to every figure.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from scipy import linalg

FeatureFn = Callable[[np.ndarray], np.ndarray]  # mono float32 audio (T,) -> (d,)


def frechet_distance(x: np.ndarray, y: np.ndarray, eps: float = 1e-6) -> float:
    """FD between Gaussians fitted to x (N, d) and y (M, d)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"expected (N, d) and (M, d) features, got {x.shape} and {y.shape}")
    if len(x) < 2 or len(y) < 2:
        raise ValueError("each set needs at least two feature vectors")
    mu_x, mu_y = x.mean(0), y.mean(0)
    s_x, s_y = np.atleast_2d(np.cov(x, rowvar=False)), np.atleast_2d(np.cov(y, rowvar=False))
    covmean = linalg.sqrtm(s_x @ s_y)
    if not np.isfinite(covmean).all():  # singular product (few samples): regularize, as FID does
        offset = np.eye(len(s_x)) * eps
        covmean = linalg.sqrtm((s_x + offset) @ (s_y + offset))
    covmean = np.real(covmean)
    value = float(np.sum((mu_x - mu_y) ** 2) + np.trace(s_x) + np.trace(s_y) - 2 * np.trace(covmean))
    return max(value, 0.0)


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """k(x, y) = (x.y / d + 1)^3 for all pairs: (N, d), (M, d) -> (N, M)."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def kernel_distance(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 estimate with the cubic kernel; can be slightly negative."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    m, n = len(x), len(y)
    if m < 2 or n < 2:
        raise ValueError("each set needs at least two feature vectors")
    k_xx, k_yy, k_xy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    within_x = (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
    within_y = (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
    return float(within_x + within_y - 2 * k_xy.mean())


def kernel_distance_splits(x: np.ndarray, y: np.ndarray, n_splits: int = 10, subset: int | None = None,
                           seed: int = 0) -> tuple[float, float]:
    """Mean and standard deviation of the unbiased MMD^2 over random subsets (KID's protocol)."""
    rng = np.random.default_rng(seed)
    size = subset or min(len(x), len(y))
    values = [kernel_distance(x[rng.choice(len(x), size, replace=False)],
                              y[rng.choice(len(y), size, replace=False)]) for _ in range(n_splits)]
    return float(np.mean(values)), float(np.std(values))


def features(audio: Sequence[np.ndarray], feature_fn: FeatureFn) -> np.ndarray:
    """Stack one feature vector per utterance: (N, d)."""
    return np.stack([np.asarray(feature_fn(a), np.float64).reshape(-1) for a in audio])


def distances(generated: np.ndarray, real: np.ndarray) -> dict[str, float]:
    """FDSD and KDSD between two feature sets (N, d), (M, d)."""
    return {"fdsd": frechet_distance(generated, real), "kdsd": kernel_distance(generated, real)}


def speech_distances(generated: np.ndarray, real_same: np.ndarray, real_other: np.ndarray) -> dict[str, float]:
    """All four figures from features: generated audio for some sentences, real audio
    of the same sentences (conditional) and of other sentences (unconditional)."""
    plain, paired = distances(generated, real_other), distances(generated, real_same)
    return {**plain, "cfdsd": paired["fdsd"], "ckdsd": paired["kdsd"]}


def real_floor(real: np.ndarray, seed: int = 0) -> dict[str, float]:
    """The same distances for real audio against itself, split at random in two halves."""
    order = np.random.default_rng(seed).permutation(len(real))
    half = len(real) // 2
    return distances(real[order[:half]], real[order[half:2 * half]])
