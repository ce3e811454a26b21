"""The per-objective part of training: what each model family writes.

The shared loop (training/loop.py) owns devices, precision, optimizers,
schedules, clipping, checkpoints, resume, logging and DDP. An `Objective`
builds the modules and datasets from its config and, each step, computes
losses and hands each one to `steps.step(name, loss)`.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from models.bundle import save_bundle
from models.config import config_to_dict
from models.registry import bundle_tensors
from training.sparsity import Sparsifier


class Objective:
    """Subclass per objective (teacher forcing, distillation, GAN, CTC, ...).

    Class attributes: `name` (the task name on the CLI), `config_cls` (the
    run config dataclass with model/data/optim/loop sections) and
    `model_type` (the registry name written into bundles).
    """

    name: str = ""
    config_cls: type = object
    model_type: str = ""
    task: str = ""  # tts | asr | piano

    def __init__(self, config: Any):
        self.config = config
        # Set by build() when the config's sparsity section prunes
        # (training/sparsity); the hooks below then drive it, checkpoint it
        # and report it in bundles.
        self.sparsifier = None

    # --- built once per run -------------------------------------------------
    def build(self) -> dict[str, nn.Module]:
        """build_modules() plus, when the config's `sparsity` section asks for
        it, a Sparsifier over modules["model"] (what the loop and export call)."""
        self.sparsifier = None
        modules = self.build_modules()
        section = getattr(self.config, "sparsity", None)
        if self.sparsifier is None and section is not None and section.method != "none":
            self.sparsifier = Sparsifier(section, modules["model"])
        return modules

    def build_modules(self) -> dict[str, nn.Module]:
        """Named modules; "model" is the one exported."""
        raise NotImplementedError

    def optimizer_groups(self, modules: dict[str, nn.Module]) -> dict[str, list[nn.Parameter]]:
        """Parameters per optimizer; one optimizer "main" by default."""
        return {"main": [p for m in modules.values() for p in m.parameters() if p.requires_grad]}

    def train_dataset(self) -> Dataset:
        raise NotImplementedError

    def val_dataset(self) -> Dataset | None:
        return None

    def collate(self, items: list[Any]) -> Any:
        return torch.utils.data.default_collate(items)

    # --- every step -----------------------------------------------------------
    def train_step(self, modules: dict[str, nn.Module], batch: Any, step: int, steps) -> dict[str, float]:
        """Compute losses, call `steps.step(optimizer_name, loss)` for each; return logs."""
        raise NotImplementedError

    @torch.no_grad()
    def val_step(self, modules: dict[str, nn.Module], batch: Any) -> dict[str, float]:
        """Metrics for one validation batch; the loop averages them."""
        raise NotImplementedError

    def after_step(self, modules: dict[str, nn.Module], step: int) -> dict[str, float]:
        """Hook after the optimizer steps (pruning schedules live here)."""
        return self.sparsifier.after_step(step) if self.sparsifier is not None else {}

    def log_media(self, modules: dict[str, nn.Module], writer, step: int) -> None:
        """Optional audio or figures for TensorBoard at validation time."""

    # --- objective state kept in checkpoints (masks, say) ---------------------
    def state_dict(self) -> dict[str, Any]:
        return {"sparsifier": self.sparsifier.state_dict()} if self.sparsifier is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.sparsifier is not None and "sparsifier" in state:
            self.sparsifier.load_state_dict(state["sparsifier"])

    # --- export ---------------------------------------------------------------
    def export(self, modules: dict[str, nn.Module], out: str, provenance: dict[str, Any], package_version: str):
        model = modules["model"]
        model.eval()
        with tempfile.TemporaryDirectory() as tmp:
            return save_bundle(
                out,
                model_type=self.model_type,
                task=self.task,
                model_config=config_to_dict(self.config.model),
                tensors=bundle_tensors(model),
                feature_config=self.feature_config(),
                frontend_config=self.frontend_config(),
                inference_defaults=self.inference_defaults(),
                sparsity=self.sparsity_report(modules),
                provenance=provenance,
                licence=self.licence(),
                package_version=package_version,
                assets=self.export_assets(model, Path(tmp)),
            )

    def export_assets(self, model: nn.Module, tmp: Path) -> dict[str, Path]:
        """Extra bundle files (e.g. {"model.onnx": path}) written under `tmp`, which lives through the save."""
        return {}

    def feature_config(self) -> dict[str, Any]:
        return {}

    def frontend_config(self) -> dict[str, Any]:
        return {}

    def inference_defaults(self) -> dict[str, Any]:
        return {}

    def sparsity_report(self, modules: dict[str, nn.Module]) -> dict[str, Any]:
        return self.sparsifier.describe() if self.sparsifier is not None else {}

    def licence(self) -> str:
        return "unspecified"
