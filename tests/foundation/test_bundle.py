import json

import pytest
import torch

from models.bundle import FORMAT_VERSION, BundleError, load_bundle, read_manifest, save_bundle
from models.config import config_to_dict
from models.registry import bundle_tensors, model_from_bundle
from tiny_task import TinyConfig, TinyMLP, install

install()


def _write(tmp_path, **kw):
    torch.manual_seed(0)
    model = TinyMLP(TinyConfig())
    path = save_bundle(tmp_path / "tiny.bundle", model_type="tiny-mlp", task="test",
                       model_config=config_to_dict(model.config), tensors=bundle_tensors(model),
                       inference_defaults={"temperature": 1.0}, licence="CC0-1.0",
                       provenance={"data": "synthetic"}, assets={"notes.txt": b"hello"}, **kw)
    return model, path


def test_round_trip_gives_the_same_outputs(tmp_path):
    model, path = _write(tmp_path)
    bundle = load_bundle(path)
    assert bundle.manifest["format_version"] == FORMAT_VERSION
    assert bundle.manifest["licence"] == "CC0-1.0"
    assert bundle.file("notes.txt").read_bytes() == b"hello"
    loaded = model_from_bundle(bundle)
    x = torch.randn(4, 8)
    model.eval()
    assert torch.equal(model(x), loaded(x))


def test_bundle_is_readable_by_other_users(tmp_path):
    _, path = _write(tmp_path)
    assert path.stat().st_mode & 0o777 == 0o755
    assert {p.name: p.stat().st_mode & 0o777 for p in path.iterdir()} == {
        "manifest.json": 0o644, "weights.safetensors": 0o644, "notes.txt": 0o644}


def test_wrong_version_is_refused(tmp_path):
    _, path = _write(tmp_path)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["format_version"] = FORMAT_VERSION + 1
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="format version"):
        load_bundle(path)


def test_altered_weights_fail_the_hash(tmp_path):
    _, path = _write(tmp_path)
    data = bytearray((path / "weights.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (path / "weights.safetensors").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="sha256 mismatch"):
        load_bundle(path)


def test_truncated_weights_are_named_truncated(tmp_path):
    _, path = _write(tmp_path)
    data = (path / "weights.safetensors").read_bytes()
    (path / "weights.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(BundleError, match="truncated"):
        load_bundle(path)


def test_truncated_manifest(tmp_path):
    _, path = _write(tmp_path)
    text = (path / "manifest.json").read_text()
    (path / "manifest.json").write_text(text[: len(text) // 2])
    with pytest.raises(BundleError, match="truncated or corrupt"):
        read_manifest(path)


def test_unknown_model_type(tmp_path):
    _, path = _write(tmp_path)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["model_type"] = "no-such-model"
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="unknown model type 'no-such-model'"):
        load_bundle(path)


def test_not_a_bundle(tmp_path):
    with pytest.raises(BundleError, match="not a bundle directory"):
        load_bundle(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match="no manifest.json"):
        load_bundle(tmp_path / "empty")


def test_config_mismatch_is_reported(tmp_path):
    _, path = _write(tmp_path)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["model_config"]["hidden"] = 32
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="do not match"):
        model_from_bundle(load_bundle(path))
