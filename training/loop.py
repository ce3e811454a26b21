"""The one shared training loop.

Mixed precision (bf16 autocast; fp16 autocast with dynamic loss scaling,
weights kept in fp32 as master copies - Micikevicius et al.; both on CPU or
CUDA, fp16 being the CUDA choice: CPUs without fp16 arithmetic emulate it), gradient clipping, LR schedules, periodic validation, TensorBoard
scalars, a progress bar, atomic checkpoints, exact resume and DDP under
torchrun. Objectives (training/objective.py) supply the rest.
"""
from __future__ import annotations

import contextlib
import json
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from models.config import config_to_dict
from training import checkpoint as ckpt
from training.config import OptimConfig, dump_config
from training.distributed import DistInfo, barrier, init_distributed, mean_across, shutdown
from training.objective import Objective
from training.sampling import EpochBatches, Position, SeededDataset
from training.version import package_version


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("loop.device=cuda but no CUDA device is available")
    return torch.device(name)


def make_optimizer(cfg: OptimConfig, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    kinds = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
    if cfg.name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    if cfg.name not in kinds:
        raise ValueError(f"optim.name={cfg.name!r}; choose adam, adamw or sgd")
    return kinds[cfg.name](params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)


def lr_factor(cfg: OptimConfig, step: int, max_steps: int) -> float:
    """Multiplier of cfg.lr at `step` (0-based): linear warmup, then decay."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    span = max(1, max_steps - cfg.warmup_steps)
    t = min(1.0, (step - cfg.warmup_steps) / span)
    if cfg.schedule == "constant":
        return 1.0
    if cfg.schedule == "cosine":
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))
    if cfg.schedule == "exponential":
        return cfg.min_lr_ratio ** t
    raise ValueError(f"optim.schedule={cfg.schedule!r}; choose constant, cosine or exponential")


class Steps:
    """What an objective calls to apply a loss: backward, unscale, clip, step."""

    def __init__(self, optimizers, schedulers, scalers, grad_clip: float):
        self.optimizers, self.schedulers, self.scalers = optimizers, schedulers, scalers
        self.grad_clip = grad_clip
        self.grad_norms: dict[str, float] = {}
        self.pre_step_hooks: list = []  # called with the optimizer just before it steps

    def step(self, name: str, loss: torch.Tensor) -> None:
        if not torch.isfinite(loss.detach()).all() and name not in self.scalers:
            raise FloatingPointError(f"non-finite loss for optimizer {name!r}: {loss.item()}")
        opt = self.optimizers[name]
        scaler = self.scalers.get(name)
        opt.zero_grad(set_to_none=True)
        (scaler.scale(loss) if scaler else loss).backward()
        if scaler:
            scaler.unscale_(opt)
        params = [p for group in opt.param_groups for p in group["params"] if p.grad is not None]
        if self.grad_clip > 0 and params:
            self.grad_norms[name] = float(torch.nn.utils.clip_grad_norm_(params, self.grad_clip))
        for hook in self.pre_step_hooks:
            hook(opt)
        if scaler:
            scaler.step(opt)  # skipped when the grads overflowed
            scaler.update()
        else:
            opt.step()
        self.schedulers[name].step()


def _autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision == "fp16":
        return torch.autocast(device.type, dtype=torch.float16)
    raise ValueError(f"loop.precision={precision!r}; choose fp32, bf16 or fp16")


class Run:
    """One training run in a run directory; `fit()` trains to loop.max_steps."""

    def __init__(self, objective: Objective, run_dir: str | Path, resume: bool = False):
        self.objective, self.cfg = objective, objective.config
        self.loop = self.cfg.loop
        self.run_dir = Path(run_dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.device = pick_device(self.loop.device)
        self.dist: DistInfo = init_distributed(self.device)
        if self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
        self.resume = resume
        self.step = 0
        self.position = Position()

    # --- set-up ---------------------------------------------------------------
    def _write_run_files(self) -> None:
        if not self.dist.is_main:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.yaml").write_text(dump_config(self.cfg))
        meta = {"task": self.objective.name, "package_version": package_version(),
                "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "world_size": self.dist.world_size}
        (self.run_dir / "meta.json").write_text(json.dumps(meta, indent=2))

    def _build(self) -> None:
        torch.manual_seed(self.loop.seed)
        self.modules = {k: m.to(self.device) for k, m in self.objective.build().items()}
        groups = self.objective.optimizer_groups(self.modules)
        optim_cfg = self.cfg.optim
        self.optimizers = {k: make_optimizer(optim_cfg, ps) for k, ps in groups.items()}
        self.schedulers = {
            k: torch.optim.lr_scheduler.LambdaLR(o, lambda s: lr_factor(optim_cfg, s, self.loop.max_steps))
            for k, o in self.optimizers.items()
        }
        self.scalers = {}
        if self.loop.precision == "fp16":
            self.scalers = {k: torch.amp.GradScaler(self.device.type, init_scale=self.loop.loss_scale)
                            for k in self.optimizers}
        self.steps = Steps(self.optimizers, self.schedulers, self.scalers, optim_cfg.grad_clip)
        if self.objective.sparsifier is not None:
            self.steps.pre_step_hooks.append(self.objective.sparsifier.before_optimizer_step)

    def _state(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "position": [self.position.epoch, self.position.batch],
            "modules": {k: m.state_dict() for k, m in self.modules.items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
            "scalers": {k: s.state_dict() for k, s in self.scalers.items()},
            "objective": self.objective.state_dict(),
            "rng": ckpt.rng_state(),
            "config": config_to_dict(self.cfg),
        }

    def _restore(self, state: dict[str, Any]) -> None:
        for k, m in self.modules.items():
            m.load_state_dict(state["modules"][k])
        for group in ("optimizers", "schedulers", "scalers"):
            for k, obj in getattr(self, group).items():
                obj.load_state_dict(state[group][k])
        self.objective.load_state_dict(state["objective"])
        self.step = int(state["step"])
        self.position = Position(*[int(v) for v in state["position"]])
        ckpt.set_rng_state(state["rng"])

    def save(self) -> None:
        if self.dist.is_main:
            ckpt.save_checkpoint(self.ckpt_dir, self.step, self._state(), self.loop.keep_checkpoints)
        barrier(self.dist)

    # --- the loop -------------------------------------------------------------
    def fit(self) -> dict[str, float]:
        self._build()
        latest = ckpt.latest_checkpoint(self.ckpt_dir)
        if self.resume:
            if latest is None:
                raise FileNotFoundError(f"{self.ckpt_dir}: no checkpoint to resume from")
            self._restore(ckpt.load_checkpoint(latest))
        elif latest is not None:
            raise FileExistsError(f"{self.run_dir} already holds checkpoints; use `sparsewave resume {self.run_dir}`")
        if not self.resume:
            self._write_run_files()
        wrapped = self._wrap()
        train_set = self.objective.train_dataset()
        batches = EpochBatches(len(train_set), self.loop.batch_size, self.loop.seed,
                               self.dist.rank, self.dist.world_size,
                               lengths=getattr(train_set, "lengths", None),
                               sorta_grad=getattr(self.objective, "sorta_grad", False))
        writer, bar = self._loggers()
        last_val: dict[str, float] = {}
        window = _Window()
        try:
            while self.step < self.loop.max_steps:
                loader = self._loader(train_set, batches)
                for batch in loader:
                    logs = self._one_step(wrapped, batch)
                    window.add(logs)
                    if self.step % self.loop.log_every == 0 or self.step == self.loop.max_steps:
                        self._log(writer, bar, "train", mean_across(self.dist, window.mean()))
                        window = _Window()
                    if self.loop.val_every and (self.step % self.loop.val_every == 0
                                                or self.step == self.loop.max_steps):
                        last_val = self.validate(wrapped, writer) or last_val
                    if self.step % self.loop.ckpt_every == 0 or self.step == self.loop.max_steps:
                        self.save()
                    if bar is not None:
                        bar.update(1)
                    if self.step >= self.loop.max_steps:
                        break
                else:
                    self.position = Position(self.position.epoch + 1, 0)
        finally:
            if bar is not None:
                bar.close()
            if writer is not None:
                writer.close()
        if self.dist.is_main:
            (self.run_dir / "final.json").write_text(json.dumps({"step": self.step, "val": last_val}, indent=2))
        barrier(self.dist)
        shutdown(self.dist)
        return last_val

    def _wrap(self) -> dict[str, nn.Module]:
        if not self.dist.enabled:
            return self.modules
        ids = [self.device.index] if self.device.type == "cuda" else None
        return {k: DistributedDataParallel(m, device_ids=ids) if any(p.requires_grad for p in m.parameters()) else m
                for k, m in self.modules.items()}

    def _loader(self, dataset, batches: EpochBatches) -> DataLoader:
        sampler = list(batches.epoch(self.position.epoch, self.position.batch))
        # A generator of its own keeps the loader from drawing on the global
        # RNG, so a resumed run sees the same random stream as an unbroken one.
        generator = torch.Generator().manual_seed(self.loop.seed * 1_000_003 + self.position.epoch)
        return DataLoader(SeededDataset(dataset), batch_sampler=sampler, collate_fn=self.objective.collate,
                          num_workers=self.loop.num_workers, generator=generator)

    def _one_step(self, wrapped, batch) -> dict[str, float]:
        batch = _to_device(batch, self.device)
        for m in self.modules.values():
            m.train()
        t0 = time.perf_counter()
        with _autocast(self.device, self.loop.precision):
            logs = dict(self.objective.train_step(wrapped, batch, self.step, self.steps))
        self.step += 1
        self.position.batch += 1
        logs.update(self.objective.after_step(self.modules, self.step))
        logs.update({f"grad_norm/{k}": v for k, v in self.steps.grad_norms.items()})
        logs["lr"] = self.schedulers[next(iter(self.schedulers))].get_last_lr()[0]
        logs["items_per_s"] = self.loop.batch_size * self.dist.world_size / max(time.perf_counter() - t0, 1e-9)
        return logs

    @torch.no_grad()
    def validate(self, wrapped, writer) -> dict[str, float]:
        dataset = self.objective.val_dataset()
        if dataset is None or len(dataset) == 0:
            return {}
        saved_rng = ckpt.rng_state()  # validation must not shift the training RNG stream
        for m in self.modules.values():
            m.eval()
        batch_size = min(self.loop.batch_size, len(dataset))
        keys = [(i, i) for i in range(len(dataset))]
        chunks = [keys[i:i + batch_size] for i in range(0, len(keys), batch_size)]
        if self.loop.val_batches:
            chunks = chunks[: self.loop.val_batches]
        loader = DataLoader(SeededDataset(dataset), batch_sampler=chunks, collate_fn=self.objective.collate)
        window = _Window()
        for batch in loader:
            window.add(self.objective.val_step(self.modules, _to_device(batch, self.device)))
        metrics = window.mean()
        self._log(writer, None, "val", metrics)
        if writer is not None:
            self.objective.log_media(self.modules, writer, self.step)
        ckpt.set_rng_state(saved_rng)
        return metrics

    def _loggers(self):
        if not self.dist.is_main:
            return None, None
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(self.run_dir / "tb"))
        bar = None
        if self.loop.progress:
            from tqdm import tqdm

            bar = tqdm(total=self.loop.max_steps, initial=self.step, desc=self.objective.name, dynamic_ncols=True)
        return writer, bar

    def _log(self, writer, bar, split: str, metrics: dict[str, float]) -> None:
        if not self.dist.is_main or not metrics:
            return
        for key, value in metrics.items():
            writer.add_scalar(f"{split}/{key}", value, self.step)
        with open(self.run_dir / "metrics.jsonl", "a") as handle:
            handle.write(json.dumps({"step": self.step, "split": split, **metrics}) + "\n")
        if bar is not None and "loss" in metrics:
            postfix = {"loss": f"{metrics['loss']:.4f}", "items_s": f"{metrics.get('items_per_s', 0):.1f}"}
            if "sparsity/overall" in metrics:
                postfix["sparsity"] = f"{metrics['sparsity/overall']:.3f}"
            bar.set_postfix(postfix)


class _Window:
    """Running means of scalar logs."""

    def __init__(self):
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, logs: dict[str, float]) -> None:
        for k, v in logs.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v)
            self.counts[k] = self.counts.get(k, 0) + 1

    def mean(self) -> dict[str, float]:
        return {k: self.sums[k] / self.counts[k] for k in self.sums}


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch
