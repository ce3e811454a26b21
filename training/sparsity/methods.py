"""Sparse training methods, all producing block-structured masks.

- gmp: gradual magnitude pruning, s_t = target (1 - (1 - (t - t0) / (t1 - t0))^3),
  every `every` steps from start_step to end_step (Zhu and Gupta; Narang et al.;
  the WaveRNN paper's schedule).
- random: a static random block mask at the target from the first step (the baseline).
- rigl: a random mask at the target; every `every` steps until end_step, drop the
  fraction alpha/2 (1 + cos(pi t / end_step)) of active blocks with the smallest
  magnitude and grow as many where the dense gradient is largest (Evci et al.).
- topkast: forward with the top-D blocks by magnitude, update the larger
  top-(D + M) set, with the exploration penalty scaled up outside the forward
  set (Jayakumar et al.).
- dsd: dense until start_step, magnitude-pruned sparse until dsd_redense_step,
  then dense again (Han et al.).

Masked weights are zeroed after every optimizer step, so they stay zero.
"""
from __future__ import annotations

import dataclasses
import math
import re

import torch
from torch import nn

from training.sparsity.blocks import (as_matrix, block_magnitude_mask, block_scores, erk_densities, expand_blocks,
                                     n_keep, topk_blocks)

METHODS = ("none", "gmp", "random", "rigl", "topkast", "dsd")


@dataclasses.dataclass(frozen=True)
class SparsityConfig:
    method: str = "none"
    include: tuple[str, ...] = (r".*weight.*",)  # regexes over parameter names of the exported model
    exclude: tuple[str, ...] = ()
    min_size: int = 1024  # smaller parameters (biases, norms) are left dense
    block: tuple[int, int] = (16, 1)  # (rows, cols) of the (out, in) matrix
    target: float = 0.9  # final fraction of zeros
    distribution: str = "uniform"  # uniform | erk
    start_step: int = 1000
    end_step: int = 20000
    every: int = 500
    rigl_alpha: float = 0.3
    topkast_backward_extra: float = 0.1  # M, as a fraction of each layer's blocks
    topkast_penalty: float = 1e-4
    dsd_redense_step: int = 0
    seed: int = 0


class Sparsifier:
    """Holds the masks of one model and updates them on the configured schedule."""

    def __init__(self, config: SparsityConfig, model: nn.Module):
        if config.method not in METHODS:
            raise ValueError(f"sparsity.method={config.method!r}; choose one of {', '.join(METHODS)}")
        if not 0.0 <= config.target < 1.0:
            raise ValueError("sparsity.target must be in [0, 1)")
        self.config = config
        self.params = self._select(model) if config.method != "none" else {}
        self.masks = {n: torch.ones_like(as_matrix(p), dtype=torch.bool) for n, p in self.params.items()}
        self.dense_copy: dict[str, torch.Tensor] = {}  # Top-KAST's dense weights
        self.backward_masks: dict[str, torch.Tensor] = {}
        self._hooks = []
        if config.method in ("random", "rigl"):
            self._random_masks()
            self.apply()
        if config.method == "topkast":
            self.dense_copy = {n: p.detach().clone() for n, p in self.params.items()}
            self._topkast_masks()
            self.apply()
            self._hooks = [p.register_hook(self._topkast_grad(n)) for n, p in self.params.items()]

    # --- which parameters -----------------------------------------------------
    def _select(self, model: nn.Module) -> dict[str, nn.Parameter]:
        inc = [re.compile(p) for p in self.config.include]
        exc = [re.compile(p) for p in self.config.exclude]
        chosen = {n: p for n, p in model.named_parameters()
                  if p.dim() >= 2 and p.numel() >= self.config.min_size
                  and any(r.fullmatch(n) for r in inc) and not any(r.fullmatch(n) for r in exc)}
        if not chosen:
            raise ValueError(f"sparsity.include {self.config.include} matches no weight matrix of the model")
        return chosen

    def densities(self, sparsity: float) -> dict[str, float]:
        if self.config.distribution == "uniform":
            return {n: 1.0 - sparsity for n in self.params}
        if self.config.distribution == "erk":
            return erk_densities({n: tuple(p.shape) for n, p in self.params.items()}, 1.0 - sparsity)
        raise ValueError(f"sparsity.distribution={self.config.distribution!r}; choose uniform or erk")

    # --- mask construction ----------------------------------------------------
    def _magnitude_masks(self, sparsity: float, weights: dict[str, torch.Tensor] | None = None) -> None:
        for name, density in self.densities(sparsity).items():
            matrix = as_matrix(weights[name] if weights else self.params[name].detach())
            self.masks[name] = block_magnitude_mask(matrix, 1.0 - density, self.config.block)

    def _random_masks(self) -> None:
        gen = torch.Generator().manual_seed(self.config.seed)
        for name, density in self.densities(self.config.target).items():
            matrix = as_matrix(self.params[name])
            scores = torch.rand(block_scores(matrix, self.config.block).shape, generator=gen)
            keep = topk_blocks(scores, n_keep(scores.numel(), density))
            self.masks[name] = expand_blocks(keep, self.config.block, matrix.shape).to(matrix.device)

    def _topkast_masks(self) -> None:
        extra = self.config.topkast_backward_extra
        for name, density in self.densities(self.config.target).items():
            matrix = as_matrix(self.dense_copy[name])
            scores = block_scores(matrix, self.config.block)
            fwd = topk_blocks(scores, n_keep(scores.numel(), density))
            bwd = topk_blocks(scores, n_keep(scores.numel(), min(1.0, density + extra)))
            self.masks[name] = expand_blocks(fwd, self.config.block, matrix.shape)
            self.backward_masks[name] = expand_blocks(bwd | fwd, self.config.block, matrix.shape)

    def _topkast_grad(self, name: str):
        def hook(grad: torch.Tensor) -> torch.Tensor:
            return grad * self.backward_masks[name].view(grad.shape).to(grad.device, grad.dtype)
        return hook

    def _topkast_penalty(self, name: str) -> torch.Tensor:
        """Gradient of the L2 exploration penalty, scaled by 1/D outside the forward set."""
        theta = self.dense_copy[name]
        fwd = self.masks[name].view(theta.shape).to(theta.device, theta.dtype)
        bwd = self.backward_masks[name].view(theta.shape).to(theta.device, theta.dtype)
        density = max(fwd.mean().item(), 1e-6)
        return self.config.topkast_penalty * theta * (fwd + (bwd - fwd) / density)

    # --- the schedule ---------------------------------------------------------
    def gmp_sparsity(self, step: int) -> float:
        c = self.config
        if step < c.start_step:
            return 0.0
        if step >= c.end_step:
            return c.target
        progress = (step - c.start_step) / max(1, c.end_step - c.start_step)
        return c.target * (1.0 - (1.0 - progress) ** 3)

    def rigl_fraction(self, step: int) -> float:
        return self.config.rigl_alpha / 2 * (1 + math.cos(math.pi * step / max(1, self.config.end_step)))

    @torch.no_grad()
    def before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Top-KAST updates the dense weights: put them back before the step and
        add the penalty here, after the loss scaler has unscaled the gradients."""
        if not self.dense_copy:
            return
        owned = {id(p) for group in optimizer.param_groups for p in group["params"]}
        for name, p in self.params.items():
            if id(p) in owned:
                self.dense_copy[name] = self.dense_copy[name].to(p.device)
                p.data.copy_(self.dense_copy[name])
                if p.grad is not None:
                    p.grad.add_(self._topkast_penalty(name).to(p.grad.dtype))

    @torch.no_grad()
    def after_step(self, step: int) -> dict[str, float]:
        c = self.config
        if c.method == "none":
            return {}
        on_schedule = step % c.every == 0 or step == c.end_step
        if c.method == "gmp" and c.start_step <= step <= c.end_step and on_schedule:
            self._magnitude_masks(self.gmp_sparsity(step))
        elif c.method == "rigl" and step < c.end_step and step % c.every == 0:
            self._rigl_update(self.rigl_fraction(step))
        elif c.method == "topkast":
            for name, p in self.params.items():
                if self.dense_copy[name].device != p.device:
                    self.dense_copy[name] = self.dense_copy[name].to(p.device)
                self.dense_copy[name].copy_(p.data)
            self._topkast_masks()
        elif c.method == "dsd" and step == c.start_step:
            self._magnitude_masks(c.target)
        elif c.method == "dsd" and step == c.dsd_redense_step:
            self.masks = {n: torch.ones_like(m) for n, m in self.masks.items()}
        self.apply()
        return self.report()

    def _rigl_update(self, fraction: float) -> None:
        for name, p in self.params.items():
            if p.grad is None:
                continue
            matrix, grad = as_matrix(p.detach()), as_matrix(p.grad.detach())
            active = block_scores(as_matrix(self.masks[name]).float(), self.config.block) > 0
            n_active = int(active.sum())
            n_swap = int(round(fraction * n_active))
            if n_swap == 0:
                continue
            magnitude = block_scores(matrix, self.config.block)
            kept = topk_blocks(magnitude, n_active - n_swap, among=active)
            grown = topk_blocks(block_scores(grad, self.config.block), n_swap, among=~kept)
            self.masks[name] = expand_blocks(kept | grown, self.config.block, matrix.shape)
            # Grown blocks start from zero: they were masked, so they are.

    @torch.no_grad()
    def apply(self) -> None:
        for name, p in self.params.items():
            if self.masks[name].device != p.device:
                self.masks[name] = self.masks[name].to(p.device)
            p.data.mul_(self.masks[name].view(p.shape).to(p.dtype))

    # --- reporting and state ----------------------------------------------------
    def report(self) -> dict[str, float]:
        if not self.params:
            return {}
        logs, zeros, total = {}, 0, 0
        for name, p in self.params.items():
            z = int((p.detach() == 0).sum())
            logs[f"sparsity/{name}"] = z / p.numel()
            zeros, total = zeros + z, total + p.numel()
        logs["sparsity/overall"] = zeros / total
        return logs

    def state_dict(self) -> dict:
        return {"masks": {n: m.to(torch.uint8) for n, m in self.masks.items()},
                "backward_masks": {n: m.to(torch.uint8) for n, m in self.backward_masks.items()},
                "dense_copy": dict(self.dense_copy)}

    def load_state_dict(self, state: dict) -> None:
        self.masks = {n: m.bool() for n, m in state["masks"].items()}
        self.backward_masks = {n: m.bool() for n, m in state.get("backward_masks", {}).items()}
        for n, t in state.get("dense_copy", {}).items():
            self.dense_copy[n].copy_(t)

    def describe(self) -> dict:
        """What a bundle's manifest records about the sparsity."""
        report = self.report()
        return {"method": self.config.method, "block": list(self.config.block), "target": self.config.target,
                "overall": report.get("sparsity/overall", 0.0),
                "layers": {k.removeprefix("sparsity/"): v for k, v in report.items() if k != "sparsity/overall"}}
