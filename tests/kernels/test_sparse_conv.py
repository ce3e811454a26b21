"""kernels/conv.py and kernels/sparse_layers.py against kernels.reference and torch's dense conv."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from kernel_cases import random_matrix
from torch import nn

from kernels import (BlockSparseLinear, SparseConv1d, conv1x1, load_packed_state, pack_sparse_layers,
                     packed_state_dict, reference, spmm)
from kernels import conv as sconv
from kernels import cpu_c, ops
from kernels.sparse_layers import set_threads

# (Cout, Cin, kernel, dilation, padding, batch, frames): odd channel counts leave partial
# block rows; frames span one and several column tiles (numba) and chunks (C); padding wider
# than the signal leaves only the C kernel's padded edges
CASES = [(37, 23, 1, 1, 0, 2, 300), (20, 9, 3, 2, 2, 1, 41), (40, 12, 3, 4, 0, 3, 600), (5, 7, 2, 1, 1, 1, 3),
         (33, 17, 3, 8, 8, 2, 1100), (21, 4, 3, 1, 3, 1, 2)]


@pytest.fixture(params=["c", "numba"])
def kernel(request, monkeypatch):
    """Run conv.conv1d on the C kernel (when it is built) or with it switched off (numba)."""
    if request.param == "c" and ops.c_spmm_lib() is None:
        pytest.skip("the C kernels are not built here")
    if request.param == "numba":
        monkeypatch.setattr(ops, "c_spmm_lib", lambda: None)
    return request.param


@pytest.mark.parametrize("block", [(16, 1), (8, 1), (4, 1)])
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_conv1d_matches_reference_and_dense(block, case, dtype, kernel):
    cout, cin, k, d, p, b, t = case
    m, dense = random_matrix(cout, cin * k, 0.35, block, dtype)
    g = torch.Generator().manual_seed(1)
    x, bias = torch.randn(b, cin, t, generator=g), torch.randn(cout, generator=g)
    want = F.conv1d(x, dense.reshape(cout, cin, k), bias, padding=p, dilation=d)
    ref = reference.conv1d(m, x, bias, k, d, p)
    torch.testing.assert_close(ref, want, atol=1e-4, rtol=1e-4)
    for threads in (1, 2):
        got = sconv.conv1d(m, x, bias, k, d, p, threads=threads)
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(sconv.conv1d(m, x, None, k, d, p), want - bias[:, None], atol=1e-4, rtol=1e-4)


def test_ops_route_long_products_through_the_conv_kernel():
    m, dense = random_matrix(48, 32, 0.2, (8, 1))
    x = torch.randn(2, 32, 500)
    torch.testing.assert_close(conv1x1(m, x, threads=2), dense @ x, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(spmm(m, x[0], threads=1), reference.spmm(m, x[0]), atol=1e-4, rtol=1e-4)


def test_empty_and_degenerate_inputs():
    m, _ = random_matrix(16, 12, 0.0, (4, 1))  # no stored block: output is the bias
    bias = torch.arange(16.0)
    out = sconv.conv1d(m, torch.randn(1, 12, 70), bias)
    torch.testing.assert_close(out, bias[None, :, None].expand(1, 16, 70))
    with pytest.raises(ValueError):
        sconv.conv1d(m, torch.randn(1, 11, 70))


def _pruned_model(seed=0) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv1d(12, 32, 3, padding=2, dilation=2), nn.ReLU(), nn.Conv1d(32, 24, 1),
                          nn.ReLU(), nn.Conv1d(24, 8, 1))  # the last stays dense
    with torch.no_grad():
        for layer, (br, keep) in ((model[0], (4, 0.2)), (model[2], (8, 0.1))):
            w = layer.weight.reshape(layer.out_channels, -1)
            blocks = torch.rand(w.shape[0] // br, w.shape[1]) < keep
            w.mul_(blocks.repeat_interleave(br, 0))
    return model.eval()


def test_pack_sparse_layers_swaps_only_sparse_ones_and_keeps_outputs():
    model = _pruned_model()
    x = torch.randn(2, 12, 150)
    with torch.no_grad():
        want = model(x)
        names = pack_sparse_layers(model, min_sparsity=0.5)
        assert names == ["0", "2"]
        assert isinstance(model[0], SparseConv1d) and model[0].packed.block == (4, 1)
        assert model[2].packed.block == (8, 1) and isinstance(model[4], nn.Conv1d)
        set_threads(model, 2)
        torch.testing.assert_close(model(x), want, atol=1e-4, rtol=1e-4)


def test_packed_state_round_trip_into_a_fresh_model():
    model = _pruned_model()
    x = torch.randn(1, 12, 90)
    with torch.no_grad():
        want = model(x)
        pack_sparse_layers(model)
        tensors = packed_state_dict(model)
        assert "0.weight" not in tensors and "0.weight.bsr_values" in tensors and "4.weight" in tensors
        fresh = _pruned_model(seed=1)
        state = load_packed_state(fresh, tensors)
        fresh.load_state_dict(state, strict=True)
        torch.testing.assert_close(fresh(x), want, atol=1e-4, rtol=1e-4)


def test_sparse_linear_layers_pack_and_reload():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(40, 64), nn.Tanh(), nn.Linear(64, 16))
    with torch.no_grad():
        model[0].weight.mul_((torch.rand(16, 40) < 0.2).repeat_interleave(4, 0))
        x = torch.randn(3, 100, 40)
        want = model(x)
        assert pack_sparse_layers(model) == ["0"]
        assert isinstance(model[0], BlockSparseLinear) and model[0].packed is not None
        torch.testing.assert_close(model(x), want, atol=1e-4, rtol=1e-4)
        fresh = nn.Sequential(nn.Linear(40, 64), nn.Tanh(), nn.Linear(64, 16))
        fresh.load_state_dict(load_packed_state(fresh, packed_state_dict(model)), strict=True)
        torch.testing.assert_close(fresh(x), want, atol=1e-4, rtol=1e-4)


def test_sparse_conv_under_autograd_uses_the_reference():
    layer = _pruned_model()[0]
    sparse = SparseConv1d.from_conv(layer, (4, 1))
    x = torch.randn(1, 12, 30, requires_grad=True)
    sparse(x).sum().backward()
    torch.testing.assert_close(x.grad, torch.autograd.grad(layer(x).sum(), x)[0], atol=1e-4, rtol=1e-4)


def test_affine_relu_upsamples_in_one_pass():
    lib = ops.c_spmm_lib()
    if lib is None:
        pytest.skip("the C kernels are not built here")
    x, a, b = torch.randn(2, 5, 33), torch.randn(2, 5), torch.randn(2, 5)
    want = torch.relu(a[..., None] * x + b[..., None])
    torch.testing.assert_close(cpu_c.affine_relu(lib, x, a, b), want)
    torch.testing.assert_close(cpu_c.affine_relu(lib, x, a, b, 3), want.repeat_interleave(3, dim=2))
    with pytest.raises(ValueError):
        cpu_c.affine_relu(lib, x, a[:, :4], b)
