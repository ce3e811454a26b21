"""The speech corpus and the objective base of the feed-forward TTS models (GAN-TTS, EATS).

`TTSCorpus` picks the train split's rows a model can use (`usable`), fixes the
speaker order (the config's voices, else all usable voices sorted), holds out
the last `val_items` rows for validation and loads each row with `load`.
"""
from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kernels import pack_sparse_layers
from models.audio import read_audio, resample
from models.bundle import save_bundle
from models.config import config_to_dict
from models.registry import bundle_tensors
from training.data.readers import read_labels
from training.objective import Objective


class TTSCorpus:
    hint = ""  # the voices to suggest when the corpus is missing

    def __init__(self, data: Any, model: Any):
        self.data, self.model = data, model
        rows = [r for r in read_labels(data.root, data.train_split, self.hint) if self.usable(r)]
        self.voices = list(data.voices) or sorted({r["speaker"] for r in rows})
        self.rows = [r for r in rows if r["speaker"] in self.voices]
        if not self.rows:
            raise ValueError(f"{data.root}/labels.jsonl: no usable {data.train_split} utterances for voices "
                             f"{self.voices}")
        self.check_model()
        self.licences = sorted({r.get("licence", "unknown") for r in self.rows})

    def usable(self, row: dict) -> bool:
        return True

    def check_model(self) -> None:
        """Raise ValueError when the model config does not fit the corpus."""

    def load(self, row: dict) -> tuple[np.ndarray, np.ndarray, int]:
        raise NotImplementedError

    def audio(self, row: dict) -> np.ndarray:
        """The row's audio at the model's rate."""
        audio, sr = read_audio(row["wav_path"])
        return resample(audio, sr, self.model.sample_rate) if sr != self.model.sample_rate else audio

    def items(self, split: str, limit: int = 0) -> list[tuple[np.ndarray, np.ndarray, int]]:
        """The train rows (all but the last `val_items`) or the held-out ones, loaded."""
        n_val = min(self.data.val_items, len(self.rows) // 2)
        rows = self.rows[:len(self.rows) - n_val] if split == self.data.train_split else self.rows[-n_val:]
        return [self.load(row) for row in (rows[:limit] if limit else rows)]

    def licence(self) -> str:
        return "; ".join(self.licences)


class CorpusTTSObjective(Objective):
    """What the GAN-TTS and EATS objectives share: the corpus (`corpus_cls`, read once), the
    bundle's frontend, feature and licence sections, and validation audio in TensorBoard.
    A subclass sets `corpus_cls`, `feature_extra` and `example_audio`."""
    corpus_cls: type[TTSCorpus] = TTSCorpus
    feature_extra: dict[str, Any] = {}

    def corpus(self) -> TTSCorpus:
        if getattr(self, "_corpus", None) is None:
            self._corpus = self.corpus_cls(self.config.data, self.config.model)
        return self._corpus

    def example_audio(self, model: torch.nn.Module, example: tuple, device: torch.device) -> torch.Tensor:
        """Generated audio (1, N) for one validation example, seeded."""
        raise NotImplementedError

    @torch.no_grad()
    def log_media(self, modules, writer, step):
        dataset = self.val_dataset()
        if len(dataset) == 0:
            return
        example = dataset[0]
        model = modules["model"]
        audio = self.example_audio(model, example, next(model.parameters()).device)
        writer.add_audio("val/generated", audio[0].cpu(), step, sample_rate=self.config.model.sample_rate)
        writer.add_audio("val/real", example[1], step, sample_rate=self.config.model.sample_rate)

    def frontend_config(self) -> dict[str, Any]:
        return self.corpus().frontend_config()

    def feature_config(self) -> dict[str, Any]:
        cfg = self.config.model
        return {"sample_rate": cfg.sample_rate, "hop_length": cfg.hop_length, "frame_rate_hz": 200,
                **self.feature_extra}

    def inference_defaults(self) -> dict[str, Any]:
        return {"seed": 0, "noise_scale": 1.0, "engine": "onnx"}

    def licence(self) -> str:
        return self.corpus().licence()

    def export(self, modules, out, provenance, package_version):
        """The bundle: dense, with `export_assets` (the ONNX graph); pruned (a `sparsity` run), with
        the pruned layers packed for kernels/conv.py, engine torch and no ONNX graph."""
        model = modules["model"].cpu().eval()
        sparsity, defaults = {}, self.inference_defaults()
        if self.sparsifier is not None:
            sparsity = self.sparsity_report(modules)
            model = copy.deepcopy(model)
            sparsity["packed"] = pack_sparse_layers(model, min_sparsity=0.5)
            defaults["engine"] = "torch"
        with tempfile.TemporaryDirectory() as tmp:
            assets = {} if sparsity else self.export_assets(model, Path(tmp))
            return save_bundle(
                out, model_type=self.model_type, task=self.task, model_config=config_to_dict(self.config.model),
                tensors=bundle_tensors(model), feature_config=self.feature_config(),
                frontend_config=self.frontend_config(), inference_defaults=defaults, sparsity=sparsity or None,
                provenance=provenance, licence=self.licence(), package_version=package_version, assets=assets)
