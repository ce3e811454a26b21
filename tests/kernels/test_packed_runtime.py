"""models.gan_tts.packed_runtime (the torch engine of packed bundles) against the plain forward."""
from __future__ import annotations

import pytest
import torch

from kernels import SparseConv1d, ops, pack_sparse_layers
from models.gan_tts import GanTTSConfig, GanTTSGenerator, packed_runtime


@pytest.mark.parametrize("c_kernels", [True, False])
def test_packed_runtime_keeps_the_generator_output(c_kernels, monkeypatch):
    if c_kernels and ops.c_spmm_lib() is None:
        pytest.skip("the C kernels are not built here")
    if not c_kernels:  # numba convs and torch glue
        monkeypatch.setattr(ops, "c_spmm_lib", lambda: None)
    torch.manual_seed(0)
    cfg = GanTTSConfig(in_channels=10, noise_dim=8, speaker_dim=4, channels=(16, 16, 12, 8, 8, 8, 4))
    model = GanTTSGenerator(cfg).eval()
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, torch.nn.BatchNorm1d):  # eval statistics away from the identity
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
            if isinstance(m, torch.nn.Conv1d) and name.endswith(("conv1", "conv2", "skip")):  # 90% of 4x1 blocks
                w = m.weight.reshape(m.out_channels, -1)
                w.mul_((torch.rand(w.shape[0] // 4, w.shape[1]) < 0.1).repeat_interleave(4, 0))
        features, noise, speaker = torch.randn(2, 10, 23), torch.randn(2, 8), torch.tensor([0, 0])
        want = model(features, noise, speaker)
        assert pack_sparse_layers(model)
        packed_runtime(model)
        assert model.blocks[0].fast_glue and isinstance(model.blocks[0].conv1, SparseConv1d)
        assert isinstance(model.post, SparseConv1d) == c_kernels  # dense convs move to C only
        threads = torch.get_num_threads()
        torch.testing.assert_close(model(features, noise, speaker), want, atol=1e-4, rtol=1e-4)
        assert torch.get_num_threads() == threads  # the one-thread hook puts the count back


def test_packed_runtime_puts_the_thread_count_back_after_an_error():
    cfg = GanTTSConfig(in_channels=10, noise_dim=8, speaker_dim=4, channels=(16, 16, 12, 8, 8, 8, 4))
    model = packed_runtime(GanTTSGenerator(cfg))
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with torch.no_grad(), pytest.raises((ValueError, RuntimeError)):
            model(torch.randn(1, 9, 5), torch.randn(1, 8), torch.tensor([0]))  # wrong channel count
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
