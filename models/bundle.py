"""The bundle: the one format that training hands to serving.

A bundle is a directory:

    manifest.json          format version, model type, configs, defaults,
                           sparsity, provenance, licence, and a sha256 and
                           byte count for every other file
    weights.safetensors    the tensors (packed block-sparse ones stay packed)
    model.onnx             optional ONNX graph of a feed-forward model
    ...                    optional assets (an n-gram LM, say), also hashed

Only this module reads or writes bundles. Loading checks the format
version, every file's size (a short file is reported as truncated) and hash,
and the model type, and raises `BundleError` with a message that says what
is wrong and what to do.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

FORMAT_NAME = "sparsewave-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"
ONNX = "model.onnx"
SHIPPED_BUNDLES = Path(__file__).resolve().parents[1] / "bundles"  # the repo's trained defaults


class BundleError(ValueError):
    """A bundle that cannot be loaded; the message says why."""


@dataclasses.dataclass
class Bundle:
    """A loaded bundle: its manifest, tensors and directory."""

    path: Path
    manifest: dict[str, Any]
    tensors: dict[str, torch.Tensor]

    @property
    def model_type(self) -> str:
        return self.manifest["model_type"]

    def file(self, name: str) -> Path:
        """Path of an asset listed (and verified) in the manifest."""
        if name not in self.manifest["files"]:
            raise BundleError(f"{self.path}: bundle has no file {name!r}")
        return self.path / name

    @property
    def onnx_path(self) -> Path | None:
        return self.path / ONNX if ONNX in self.manifest["files"] else None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_bundle(
    path: str | os.PathLike,
    *,
    model_type: str,
    model_config: dict[str, Any],
    tensors: dict[str, torch.Tensor],
    task: str,
    feature_config: dict[str, Any] | None = None,
    frontend_config: dict[str, Any] | None = None,
    inference_defaults: dict[str, Any] | None = None,
    sparsity: dict[str, Any] | None = None,
    provenance: dict[str, Any] | None = None,
    licence: str = "unspecified",
    package_version: str = "0+unknown",
    assets: dict[str, str | os.PathLike | bytes] | None = None,
) -> Path:
    """Write a bundle directory atomically (into a temp dir, then rename).

    `tensors` are stored as given (contiguous, CPU); `assets` maps a file
    name to a path to copy or bytes to write (use "model.onnx" for ONNX).
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp / WEIGHTS))
        for name, source in (assets or {}).items():
            if "/" in name or name in (MANIFEST, WEIGHTS) or name.startswith("."):
                raise BundleError(f"bad asset name {name!r}")
            if isinstance(source, bytes):
                (tmp / name).write_bytes(source)
            else:
                shutil.copyfile(source, tmp / name)
        files = {p.name: {"sha256": _sha256(p), "bytes": p.stat().st_size} for p in sorted(tmp.iterdir())}
        manifest = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "model_type": model_type,
            "task": task,
            "model_config": model_config,
            "feature_config": feature_config or {},
            "frontend_config": frontend_config or {},
            "inference_defaults": inference_defaults or {},
            "sparsity": sparsity or {},
            "provenance": provenance or {},
            "licence": licence,
            "package_version": package_version,
            "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "files": files,
        }
        with open(tmp / MANIFEST, "w") as handle:
            json.dump(manifest, handle, indent=2, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        # mkdtemp makes the folder private (0700) and safetensors writes 0600;
        # a bundle is read by other users (the Docker image serves as uid 10001).
        for p in tmp.iterdir():
            p.chmod(0o644)
        tmp.chmod(0o755)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check a bundle's manifest without touching the weights."""
    root = Path(path)
    if not root.is_dir():
        raise BundleError(f"{root}: not a bundle directory (expected {MANIFEST} and {WEIGHTS} inside)")
    try:
        manifest = json.loads((root / MANIFEST).read_text())
    except FileNotFoundError:
        raise BundleError(f"{root}: no {MANIFEST}; is this a sparsewave bundle?") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{root}/{MANIFEST}: unreadable ({exc}); the file is truncated or corrupt") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise BundleError(f"{root}: {MANIFEST} is not a {FORMAT_NAME} manifest")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise BundleError(
            f"{root}: bundle format version {version!r}, this sparsewave reads version {FORMAT_VERSION}; "
            "re-export it with `sparsewave export` from this version"
        )
    for key in ("model_type", "model_config", "files"):
        if key not in manifest:
            raise BundleError(f"{root}: manifest lacks {key!r}")
    if WEIGHTS not in manifest["files"]:
        raise BundleError(f"{root}: manifest lists no {WEIGHTS}")
    return manifest


def verify_files(root: Path, manifest: dict[str, Any]) -> None:
    """Check each listed file's size and sha256."""
    for name, meta in manifest["files"].items():
        file = root / name
        if not file.is_file():
            raise BundleError(f"{root}: missing file {name}")
        size = file.stat().st_size
        if size != meta["bytes"]:
            kind = "truncated" if size < meta["bytes"] else "larger than recorded"
            raise BundleError(f"{root}/{name}: {kind} ({size} bytes, manifest says {meta['bytes']})")
        digest = _sha256(file)
        if digest != meta["sha256"]:
            raise BundleError(f"{root}/{name}: sha256 mismatch (got {digest[:12]}..., manifest says "
                              f"{meta['sha256'][:12]}...); the file was altered or corrupted")


def load_bundle(path: str | os.PathLike) -> Bundle:
    """Load and verify a bundle. Raises BundleError on any problem."""
    root = Path(path)
    manifest = read_manifest(root)
    verify_files(root, manifest)
    try:
        tensors = load_file(str(root / WEIGHTS))
    except Exception as exc:  # safetensors raises its own error types
        raise BundleError(f"{root}/{WEIGHTS}: cannot read tensors ({exc})") from None
    from models.registry import get_spec

    get_spec(manifest["model_type"])  # unknown types fail here, with the known ones listed
    return Bundle(path=root, manifest=manifest, tensors=tensors)
