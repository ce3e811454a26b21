"""The bundles a running service holds, and the ones that failed to load."""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from models.bundle import read_manifest
from models.inference import load_runtime

log = logging.getLogger("sparsewave.service")


@dataclasses.dataclass
class LoadedModel:
    name: str
    path: Path
    manifest: dict[str, Any]
    runtime: Any

    @property
    def task(self) -> str:
        return self.manifest.get("task", "")

    def describe(self) -> dict[str, Any]:
        """The model in OpenAI's /v1/models shape, plus sparsewave's facts."""
        return {
            "id": self.name,
            "object": "model",
            "created": 0,
            "owned_by": "sparsewave",
            "kind": self.task,
            "model_type": self.manifest["model_type"],
            "sample_rate": getattr(self.runtime, "sample_rate", None),
            "voices": list(getattr(self.runtime, "voices", []) or []),
            "streaming": bool(getattr(self.runtime, "streaming", False)),
            "sparsity": self.manifest.get("sparsity", {}),
            "licence": self.manifest.get("licence", "unspecified"),
        }


@dataclasses.dataclass
class ModelRegistry:
    models: dict[str, LoadedModel] = dataclasses.field(default_factory=dict)
    failed: dict[str, str] = dataclasses.field(default_factory=dict)

    def load_dir(self, directory: Path) -> None:
        """Load every bundle under `directory` (each subdirectory with a manifest)."""
        if not directory.is_dir():
            return
        for path in sorted(p for p in directory.iterdir() if (p / "manifest.json").is_file()):
            self.load(path)

    def load(self, path: Path) -> None:
        name = path.name.removesuffix(".bundle")
        if name in self.models:
            log.warning("bundle %s: a model named %r is already loaded; skipped", path, name)
            return
        try:
            read_manifest(path)
            bundle, runtime = load_runtime(path)
        except Exception as exc:  # one broken bundle must not stop the others
            self.failed[name] = f"{type(exc).__name__}: {exc}"
            log.error("bundle %s failed to load: %s", path, exc)
            return
        self.models[name] = LoadedModel(name, path, bundle.manifest, runtime)
        log.info("loaded %s (%s, %s) from %s", name, bundle.model_type, bundle.manifest.get("task"), path)

    def of_task(self, task: str) -> list[LoadedModel]:
        return [m for m in self.models.values() if m.task == task]
