"""Run configs: YAML files under configs/, dotted overrides, typed dataclasses.

    sparsewave train wavernn --config configs/wavernn/sparse.yaml optim.lr=3e-4 loop.max_steps=100

Every task's config is a frozen dataclass with `model`, `data`, `optim`,
`loop` (and optionally `sparsity`) sections. Overrides are parsed as YAML
scalars, so `loop.precision=bf16`, `optim.lr=3e-4` and
`model.block_shape=[16,1]` all do what they say.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
from pathlib import Path
from typing import Any, TypeVar

import yaml

from models.config import config_from_dict, config_to_dict

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    name: str = "adam"  # adam | adamw | sgd
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    grad_clip: float = 1.0  # max global grad norm; 0 disables
    schedule: str = "constant"  # constant | cosine | exponential
    warmup_steps: int = 0
    min_lr_ratio: float = 0.1  # floor of cosine/exponential decay, as a fraction of lr


@dataclasses.dataclass(frozen=True)
class LoopConfig:
    max_steps: int = 1000
    batch_size: int = 16
    seed: int = 0
    precision: str = "fp32"  # fp32 | bf16 | fp16 (dynamic loss scaling; emulated, slow, on most CPUs)
    loss_scale: float = 65536.0  # fp16: the dynamic loss scale's start (halved on overflow, doubled after 2,000 good steps)
    device: str = "auto"  # auto | cpu | cuda
    log_every: int = 50
    val_every: int = 500
    val_batches: int = 0  # 0: the whole validation set
    ckpt_every: int = 500
    keep_checkpoints: int = 3
    num_workers: int = 0
    progress: bool = True


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """['a.b=1', 'c=x'] -> {'a.b': 1, 'c': 'x'}; values parsed as YAML."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise ValueError(f"override {item!r} is not of the form section.key=value")
        out[key] = yaml.safe_load(raw) if raw.strip() else ""
    return out


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    data = copy.deepcopy(data)
    for dotted, value in overrides.items():
        node = data
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {dotted}: {part} is not a section")
        node[leaf] = value
    return data


def load_config(cls: type[T], path: str | Path | None, overrides: list[str] | None = None) -> T:
    """Read YAML (or start from defaults), apply overrides, build `cls`."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist")
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a config must be a mapping at the top level")
    data = apply_overrides(data, parse_overrides(overrides or []))
    return config_from_dict(with_sparsity(cls), data)


@functools.cache
def with_sparsity(cls: type[T]) -> type[T]:
    """`cls` if it has a `sparsity` section, else a frozen subclass adding one
    (method none): every task can then be pruned from its config, and the
    shared loop builds the Sparsifier (training/objective.py `build`)."""
    if not dataclasses.is_dataclass(cls) or "sparsity" in {f.name for f in dataclasses.fields(cls)}:
        return cls
    from training.sparsity import SparsityConfig

    sub = dataclasses.make_dataclass(cls.__name__, [("sparsity", SparsityConfig, SparsityConfig())],
                                     bases=(cls,), frozen=True)
    sub.__module__, sub.__qualname__, sub.__doc__ = cls.__module__, cls.__qualname__, cls.__doc__
    return sub


def dump_config(config: Any) -> str:
    return yaml.safe_dump(config_to_dict(config), sort_keys=False)
