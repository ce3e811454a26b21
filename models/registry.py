"""The explicit registry from model type name to (Config, Module).

Each model family adds one entry to `_builtin_specs`. `register` exists for
models defined outside the package (tests, plugins); it refuses to replace
an entry silently.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import torch
from torch import nn

from models.config import config_from_dict


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    name: str
    config_cls: type
    module_cls: type[nn.Module]
    task: str  # "tts", "asr" or "piano"
    runtime: Callable[[Any], Any] | None = None  # bundle -> Synthesizer/Transcriber (models/inference.py)


_EXTRA: dict[str, ModelSpec] = {}


def _builtin_specs() -> dict[str, ModelSpec]:
    # One line per model family; imports stay inside so that loading one
    # model type does not import every other family.
    return {
        "deepspeech2": __import__("models.deepspeech2", fromlist=["model_spec"]).model_spec(),
        "wavernn": __import__("models.wavernn", fromlist=["model_spec"]).model_spec(),
        "gan-tts": __import__("models.gan_tts", fromlist=["model_spec"]).model_spec(),
        "wavenet": __import__("models.wavenet", fromlist=["model_spec"]).model_spec(),
        "parallel-wavenet": __import__("models.parallel_wavenet", fromlist=["model_spec"]).model_spec(),
        "onsets-frames": __import__("models.onsets_frames", fromlist=["model_spec"]).model_spec(),
        "eats": __import__("models.eats", fromlist=["model_spec"]).model_spec(),
    }


class UnknownModelType(ValueError):
    pass


def register(name: str, config_cls: type, module_cls: type[nn.Module], task: str,
             runtime: Callable[[Any], Any] | None = None) -> None:
    if name in _builtin_specs() or (name in _EXTRA and _EXTRA[name].module_cls is not module_cls):
        raise ValueError(f"model type {name!r} is already registered")
    _EXTRA[name] = ModelSpec(name, config_cls, module_cls, task, runtime)


def known_types() -> list[str]:
    return sorted({**_builtin_specs(), **_EXTRA})


def get_spec(name: str) -> ModelSpec:
    specs = {**_builtin_specs(), **_EXTRA}
    if name not in specs:
        from models.bundle import BundleError

        known = ", ".join(sorted(specs)) or "none"
        raise BundleError(f"unknown model type {name!r}; this sparsewave knows: {known}")
    return specs[name]


def build_model(model_type: str, config: dict[str, Any] | Any) -> tuple[Any, nn.Module]:
    """Instantiate a model of `model_type` from a config (dict or dataclass)."""
    spec = get_spec(model_type)
    if isinstance(config, dict):
        config = config_from_dict(spec.config_cls, config)
    return config, spec.module_cls(config)


def model_from_bundle(bundle) -> nn.Module:
    """The module of a loaded bundle, weights in place, in eval mode.

    A module that stores weights differently in bundles (packed sparse
    matrices, say) defines `load_bundle_tensors(tensors)`.
    """
    _, module = build_model(bundle.model_type, bundle.manifest["model_config"])
    loader = getattr(module, "load_bundle_tensors", None)
    if loader is not None:
        loader(bundle.tensors)
    else:
        from kernels.sparse_layers import has_packed, load_packed_state
        from models.bundle import BundleError

        tensors = bundle.tensors
        if has_packed(tensors):  # packed sparse layers (kernels/sparse_layers.py) replace the dense ones
            tensors = load_packed_state(module, tensors)
        try:
            missing, unexpected = module.load_state_dict(tensors, strict=False)
        except RuntimeError as exc:  # shape mismatches
            raise BundleError(f"{bundle.path}: weights do not match the {bundle.model_type} config: "
                              f"{str(exc).splitlines()[-1].strip()}") from None
        if missing or unexpected:
            raise BundleError(f"{bundle.path}: weights do not match the {bundle.model_type} config "
                              f"(missing {missing[:5]}, unexpected {unexpected[:5]})")
    module.eval()
    return module


@torch.no_grad()
def bundle_tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    """The tensors a module stores in a bundle (its packed form if it has one)."""
    from kernels.sparse_layers import packed_state_dict

    exporter = getattr(module, "bundle_tensors", None)
    return exporter() if exporter is not None else packed_state_dict(module)
