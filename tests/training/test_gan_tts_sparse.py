"""Sparse GAN-TTS (issue 13): gradual magnitude pruning from the config, packed export
without ONNX, and a bundle whose generator runs on kernels/conv.py with the same output."""
import torch

from kernels import SparseConv1d
from models.bundle import load_bundle
from models.gan_discriminators import DiscriminatorConfig
from models.gan_tts import GanTTSConfig
from models.registry import model_from_bundle
from training.objectives.gan_tts import GanTTSObjective, GanTTSRunConfig
from training.sparsity import SparsityConfig


class NoCorpusObjective(GanTTSObjective):
    def frontend_config(self):
        return {"voices": ["a", "b"]}

    def licence(self):
        return "test"


def test_sparse_generator_exports_packed_and_reloads_on_the_kernels(tmp_path):
    default = GanTTSRunConfig().sparsity
    cfg = GanTTSRunConfig(
        model=GanTTSConfig(in_channels=5, noise_dim=4, n_speakers=2, speaker_dim=2, channels=(16, 16, 8, 8, 8, 8, 8)),
        disc=DiscriminatorConfig(cond_channels=5, channels=4, max_channels=8, post_blocks=1),
        sparsity=SparsityConfig(method="gmp", include=default.include, block=default.block, min_size=128,
                                target=0.75, start_step=0, end_step=1, every=1))
    objective = NoCorpusObjective(cfg)
    modules = objective.build()
    objective.sparsifier.after_step(1)  # the end of the schedule: 75% of 4x1 blocks gone
    model = modules["model"].eval()
    assert model.blocks[0].conv1.weight.eq(0).float().mean() > 0.7
    feats, noise, speaker = torch.randn(1, 5, 12), torch.randn(1, 4), torch.tensor([1])
    with torch.no_grad():
        want = model(feats, noise, speaker)
    path = objective.export(modules, str(tmp_path / "bundle"), {"test": True}, "0+test")
    bundle = load_bundle(path)
    assert bundle.onnx_path is None and bundle.manifest["inference_defaults"]["engine"] == "torch"
    sparsity = bundle.manifest["sparsity"]
    assert sparsity["method"] == "gmp" and "blocks.0.conv1" in sparsity["packed"]
    assert "blocks.0.conv1.weight" not in bundle.tensors and "blocks.0.conv1.weight.bsr_values" in bundle.tensors
    loaded = model_from_bundle(bundle)
    assert isinstance(loaded.blocks[0].conv1, SparseConv1d) and loaded.blocks[0].conv1.packed.block == (4, 1)
    with torch.no_grad():
        torch.testing.assert_close(loaded(feats, noise, speaker), want, atol=1e-5, rtol=1e-4)
