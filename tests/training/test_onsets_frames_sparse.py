"""Sparse Onsets and Frames (issue 13): the config's sparsity section prunes the dense layers,
export packs them (no ONNX graph, engine torch) and the bundle's model runs them on the kernels."""
import torch

from kernels import BlockSparseLinear
from models.bundle import load_bundle
from models.registry import model_from_bundle
from training.config import load_config
from training.objectives.onsets_frames import OnsetsFramesObjective, OnsetsFramesRunConfig


def test_pruned_dense_layers_export_packed_and_reload(tmp_path):
    cfg = load_config(OnsetsFramesRunConfig, None, [
        "model.n_mels=16", "features.n_mels=16", "model.conv_channels=[4,4,8]", "model.dense=64", "model.lstm=8",
        "model.shared_acoustic=true", "decode.tune=false", f"data.root={tmp_path / 'none'}",
        "sparsity.method=gmp", "sparsity.include=['acoustic\\..*fc\\.0\\.weight','velocity_head\\.weight']",
        "sparsity.block=[16,1]", "sparsity.min_size=64", "sparsity.target=0.75", "sparsity.start_step=0",
        "sparsity.end_step=1", "sparsity.every=1"])
    objective = OnsetsFramesObjective(cfg)
    modules = objective.build()
    objective.sparsifier.after_step(1)
    model = modules["model"].eval()
    mel = torch.randn(1, 150, 16)
    with torch.no_grad():
        want = model(mel)
    bundle = load_bundle(objective.export(modules, str(tmp_path / "bundle"), {"test": True}, "0+test"))
    assert bundle.onnx_path is None and bundle.manifest["inference_defaults"]["engine"] == "torch"
    assert sorted(bundle.manifest["sparsity"]["packed"]) == ["acoustic.shared.fc.0", "velocity_head"]
    loaded = model_from_bundle(bundle)
    assert isinstance(loaded.velocity_head, BlockSparseLinear) and loaded.velocity_head.packed is not None
    with torch.no_grad():
        got = loaded(mel)
    for key in want:
        torch.testing.assert_close(got[key], want[key], atol=1e-5, rtol=1e-4)
