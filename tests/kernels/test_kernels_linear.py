import pytest
import torch

from kernels import BlockSparseLinear


@pytest.mark.parametrize("block", [(16, 1), (4, 4), (8, 1), (1, 1)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_packed_equals_unpacked(block, dtype):
    torch.manual_seed(0)
    layer = BlockSparseLinear(37, 50, block=block)
    layer.prune_(0.8)
    if dtype != torch.float32:  # round the weights so both paths see the same values
        with torch.no_grad():
            layer.weight.copy_(layer.weight.to(dtype).float())
    x = torch.randn(5, 3, 37)
    with torch.no_grad():
        dense = layer(x)
        layer.pack(dtype)
        packed = layer(x)
        one = layer(x[0, 0])
    torch.testing.assert_close(packed, dense, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(one, dense[0, 0], atol=1e-5, rtol=1e-5)


def test_masked_weights_stay_zero_in_training():
    torch.manual_seed(0)
    layer = BlockSparseLinear(32, 48, block=(16, 1))
    mask = layer.prune_(0.75)
    assert float(mask.float().mean()) == pytest.approx(0.25, abs=0.02)
    assert torch.all(layer.weight[~mask] == 0)
    opt = torch.optim.AdamW(layer.parameters(), lr=0.1, weight_decay=0.1)
    for _ in range(3):
        loss = layer(torch.randn(8, 32)).pow(2).sum()
        opt.zero_grad()
        loss.backward()
        assert torch.all(layer.weight.grad[~mask] == 0)
        opt.step()
    assert torch.all(layer.weight[~mask] == 0)
    m = layer.pack()
    assert m.nnz_blocks == int(mask[::16].sum())
