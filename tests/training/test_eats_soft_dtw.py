"""Soft-DTW with the EATS warp penalty: limit, gradient, kernels."""
import numpy as np
import pytest
import torch

from training.soft_dtw import dtw, l1_cost, soft_dtw, soft_dtw_loss


@pytest.mark.parametrize("kernel", ["numba", "wavefront"])
def test_soft_dtw_tends_to_dtw_as_temperature_goes_to_zero(kernel):
    cost = torch.rand(3, 9, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    exact = np.array([dtw(c.numpy(), warp=0.7) for c in cost])
    errors = [np.abs(soft_dtw(cost, gamma, 0.7, kernel=kernel).numpy() - exact).max() for gamma in (1.0, 0.1, 1e-3)]
    assert errors[0] > errors[1] > errors[2] and errors[2] < 1e-6
    # soft-min is below the min: soft-DTW never exceeds DTW
    assert np.all(soft_dtw(cost, 0.1, 0.7, kernel=kernel).numpy() <= exact + 1e-12)


@pytest.mark.parametrize("kernel", ["numba", "wavefront"])
def test_gradient_matches_finite_differences(kernel):
    cost = torch.rand(2, 6, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda c: soft_dtw(c, 0.3, 0.5, kernel=kernel), (cost,), eps=1e-6, atol=1e-6)


def test_kernels_agree_and_the_warp_penalty_counts():
    cost = torch.rand(2, 12, 7, generator=torch.Generator().manual_seed(2))
    a, b = (cost.clone().requires_grad_(True) for _ in range(2))
    va, vb = soft_dtw(a, 0.05, 1.0, kernel="numba"), soft_dtw(b, 0.05, 1.0, kernel="wavefront")
    (va.sum() + vb.sum()).backward()
    torch.testing.assert_close(va, vb, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-5)
    # 12 x 7 needs at least 5 non-diagonal moves: each costs the penalty
    zero = torch.zeros(1, 12, 7)
    assert soft_dtw(zero, 1e-3, 1.0).item() == pytest.approx(5.0, abs=1e-2)


def test_loss_is_zero_on_identical_sequences_and_grows_with_distance():
    x = torch.randn(2, 20, 8, generator=torch.Generator().manual_seed(3))
    assert soft_dtw_loss(x, x, gamma=1e-3).item() == pytest.approx(0.0, abs=1e-4)
    assert l1_cost(x, x + 1).diagonal(dim1=1, dim2=2).mean().item() == pytest.approx(8.0)
    near, far = soft_dtw_loss(x + 0.1, x, gamma=1e-3), soft_dtw_loss(x + 1.0, x, gamma=1e-3)
    assert 0 < near.item() < far.item()
    # a time-shifted copy costs about the warp penalties, far less than the frame-wise L1
    shifted = torch.cat([x[:, :1], x[:, :-1]], dim=1)
    assert soft_dtw_loss(shifted, x, gamma=1e-3).item() < (shifted - x).abs().sum(-1).mean().item()


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="gamma"):
        soft_dtw(torch.zeros(1, 2, 2), gamma=0.0)
    with pytest.raises(ValueError, match="kernel"):
        soft_dtw(torch.zeros(1, 2, 2), kernel="loops")
