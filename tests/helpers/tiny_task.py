"""A tiny regression task for testing the shared loop, bundles and the CLI.

Run as a script it is the `sparsewave` CLI with the task "tiny" and the
model type "tiny-mlp" registered:  python tests/helpers/tiny_task.py train tiny ...
"""
from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from models.registry import register  # noqa: E402
from training.config import LoopConfig, OptimConfig  # noqa: E402
from training.objective import Objective  # noqa: E402
from training.sparsity import SparsityConfig  # noqa: E402
from training.tasks import register_task  # noqa: E402


@dataclasses.dataclass(frozen=True)
class TinyConfig:
    n_in: int = 8
    hidden: int = 64
    dropout: float = 0.1


class TinyMLP(nn.Module):
    def __init__(self, config: TinyConfig):
        super().__init__()
        self.config = config
        self.net = nn.Sequential(nn.Linear(config.n_in, config.hidden), nn.Tanh(),
                                 nn.Dropout(config.dropout), nn.Linear(config.hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, n_in) -> (B,)
        return self.net(x).squeeze(-1)


@dataclasses.dataclass(frozen=True)
class TinyData:
    n_items: int = 256
    noise: float = 0.05
    step_sleep_s: float = 0.0  # slows steps so a test can kill a run midway


@dataclasses.dataclass(frozen=True)
class TinyRunConfig:
    model: TinyConfig = TinyConfig()
    data: TinyData = TinyData()
    optim: OptimConfig = OptimConfig(lr=1e-2)
    loop: LoopConfig = LoopConfig(max_steps=100, batch_size=16, log_every=10, val_every=50, ckpt_every=20,
                                  progress=False)
    sparsity: SparsityConfig = SparsityConfig(include=(r"net\.0\.weight",), block=(4, 1), min_size=64,
                                              start_step=10, end_step=60, every=10)


class TinyDataset:
    """y = sin(x . w) + noise; the noise comes from the item's own generator."""

    def __init__(self, n_items: int, noise: float, offset: int = 0):
        g = np.random.default_rng(1234 + offset)
        self.x = g.standard_normal((n_items, 8)).astype(np.float32)
        self.w = np.random.default_rng(99).standard_normal(8).astype(np.float32) / 3
        self.noise = noise

    def __len__(self) -> int:
        return len(self.x)

    def get(self, index: int, rng: np.random.Generator):
        y = np.sin(self.x[index] @ self.w) + self.noise * rng.standard_normal()
        return torch.from_numpy(self.x[index]), torch.tensor(y, dtype=torch.float32)


class TinyObjective(Objective):
    name = "tiny"
    config_cls = TinyRunConfig
    model_type = "tiny-mlp"
    task = "test"

    def build_modules(self):
        return {"model": TinyMLP(self.config.model)}

    def train_dataset(self):
        return TinyDataset(self.config.data.n_items, self.config.data.noise)

    def val_dataset(self):
        return TinyDataset(64, 0.0, offset=1)

    def train_step(self, modules, batch, step, steps):
        x, y = batch
        loss = torch.mean((modules["model"](x) - y) ** 2)
        steps.step("main", loss)
        if self.config.data.step_sleep_s:
            time.sleep(self.config.data.step_sleep_s)
        return {"loss": loss.item()}

    def val_step(self, modules, batch):
        x, y = batch
        return {"loss": torch.mean((modules["model"](x) - y) ** 2).item()}


def install() -> None:
    register_task(TinyObjective)
    register("tiny-mlp", TinyConfig, TinyMLP, task="test")


if __name__ == "__main__":
    install()
    from training.cli import main

    sys.exit(main())
