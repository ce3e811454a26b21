"""Discretized mixture of logistics over 16-bit audio, and the logistic pieces
of the Parallel WaveNet student.

Audio values are x = pcm / 32768 in [-1, 1 - 1/32768] (models/features.py,
`float_to_int16`): 65536 bins of width 1/32768. Bin k of the mixture gets
sum_i pi_i (sigma((x + w/2 - mu_i)/s_i) - sigma((x - w/2 - mu_i)/s_i)),
the lowest bin taking all mass below it and the highest all mass above it
(PixelCNN++, Salimans et al. 2017, eq. 2; Parallel WaveNet Sec. 2.1).

Parameters are laid out along the last axis as (K logits, K means, K log
scales): `(..., 3K)`.
"""
from __future__ import annotations

import math

import torch
from torch.nn import functional as F

N_LEVELS = 65536
BIN = 1.0 / 32768  # spacing of the 16-bit grid in [-1, 1)
X_MIN, X_MAX = -1.0, 1.0 - BIN


def split_params(params: torch.Tensor, log_scale_min: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(..., 3K) -> logits, means, log_scales, each (..., K); log scales floored."""
    k = params.shape[-1] // 3
    logits, means, log_scales = params[..., :k], params[..., k:2 * k], params[..., 2 * k:3 * k]
    return logits, means, torch.clamp(log_scales, min=log_scale_min)


def discretized_mol_log_prob(params: torch.Tensor, x: torch.Tensor, log_scale_min: float = -9.0) -> torch.Tensor:
    """log P(x) of 16-bit values x (...,) under the mixture params (..., 3K) -> (...,).

    Where a bin's mass underflows (tiny scales far from the mean) the log of
    pdf(centre) * width stands in for it, as in PixelCNN++.
    """
    logits, means, log_scales = split_params(params, log_scale_min)
    x = x.unsqueeze(-1)
    centered = x - means
    inv_s = torch.exp(-log_scales)
    plus_in = inv_s * (centered + BIN / 2)
    min_in = inv_s * (centered - BIN / 2)
    log_cdf_plus = plus_in - F.softplus(plus_in)  # log sigma(plus_in): mass of the lowest bin
    log_one_minus_cdf_min = -F.softplus(min_in)  # log(1 - sigma(min_in)): mass of the highest bin
    cdf_delta = torch.sigmoid(plus_in) - torch.sigmoid(min_in)
    mid_in = inv_s * centered
    log_pdf_mid = mid_in - log_scales - 2.0 * F.softplus(mid_in)
    inner = torch.where(cdf_delta > 1e-5, torch.log(torch.clamp(cdf_delta, min=1e-12)),
                        log_pdf_mid + math.log(BIN))
    log_probs = torch.where(x < X_MIN + BIN / 2, log_cdf_plus,
                            torch.where(x > X_MAX - BIN / 2, log_one_minus_cdf_min, inner))
    return torch.logsumexp(log_probs + F.log_softmax(logits, dim=-1), dim=-1)


def mol_log_density(params: torch.Tensor, x: torch.Tensor, log_scale_min: float = -9.0) -> torch.Tensor:
    """Continuous log density of the mixture at x (...,) -> (...,).

    The distillation compares it with the student's continuous logistic; on
    the 16-bit grid it equals the discretized log-probability minus log(BIN)
    wherever the density is smooth over a bin.
    """
    logits, means, log_scales = split_params(params, log_scale_min)
    comp = logistic_log_pdf(x.unsqueeze(-1), means, log_scales)
    return torch.logsumexp(comp + F.log_softmax(logits, dim=-1), dim=-1)


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Round to the 16-bit grid in [X_MIN, X_MAX]."""
    return torch.clamp(torch.round(x * 32768.0), -32768, 32767) / 32768.0


def sample_mol(params: torch.Tensor, uniforms: torch.Tensor, log_scale_min: float = -9.0) -> torch.Tensor:
    """Draw from the mixture: params (..., 3K), uniforms (..., 2) in [0, 1) -> (...,) on the 16-bit grid.

    uniforms[..., 0] picks the component by inverse CDF of the mixture
    weights, uniforms[..., 1] the logistic value (inverse CDF), so equal
    draws give equal samples whichever code path computed the params.
    """
    logits, means, log_scales = split_params(params, log_scale_min)
    cdf = torch.cumsum(torch.softmax(logits.double(), dim=-1), dim=-1)
    target = uniforms[..., :1].double() * cdf[..., -1:]
    idx = torch.clamp(torch.searchsorted(cdf.contiguous(), target.contiguous(), right=True),
                      max=logits.shape[-1] - 1)
    mean = torch.gather(means, -1, idx).squeeze(-1)
    log_s = torch.gather(log_scales, -1, idx).squeeze(-1)
    u = torch.clamp(uniforms[..., 1].to(means.dtype), 1e-5, 1 - 1e-5)
    return quantize(mean + torch.exp(log_s) * (torch.log(u) - torch.log1p(-u)))


# --- the plain logistic (student output, Parallel WaveNet Sec. 2.2) -------------------------

def logistic_log_pdf(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """log of (e^-y / (s (1 + e^-y)^2)), y = (x - mean) / s; broadcasting."""
    y = (x - mean) * torch.exp(-log_scale)
    return -y - log_scale - 2.0 * F.softplus(-y)


def logistic_entropy(log_scale: torch.Tensor) -> torch.Tensor:
    """Differential entropy of Logistic(mu, s): ln s + 2, elementwise."""
    return log_scale + 2.0


def logistic_noise(shape, generator: torch.Generator | None = None, dtype=torch.float32,
                   device=None) -> torch.Tensor:
    """Standard logistic noise log(u) - log(1 - u), the student's input z."""
    u = torch.rand(shape, generator=generator, dtype=dtype)
    u = torch.clamp(u, 1e-5, 1 - 1e-5).to(device) if device is not None else torch.clamp(u, 1e-5, 1 - 1e-5)
    return torch.log(u) - torch.log1p(-u)
