import numpy as np
import pytest
import torch
from kernel_cases import BLOCKS, DTYPES, SHAPES, random_matrix

import kernels
from kernels import reference


@pytest.mark.parametrize("block", BLOCKS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_reference_matches_dense(block, dtype):
    for rows, cols, density in SHAPES:
        m, dense = random_matrix(rows, cols, density, block, dtype)
        x = torch.randn(cols, 5)
        torch.testing.assert_close(reference.spmm(m, x), dense @ x, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(reference.spmv(m, x[:, 0]), dense @ x[:, 0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("block", BLOCKS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("threads", [1, 2])
def test_numba_spmv_spmm(block, dtype, threads, monkeypatch):
    monkeypatch.setattr(kernels.ops, "PARALLEL_MIN_FLOPS", 0)  # small shapes, parallel kernels too
    for rows, cols, density in SHAPES:
        m, _ = random_matrix(rows, cols, density, block, dtype)
        assert kernels.pick_path(m, torch.zeros(1)) == "numba"
        x = torch.randn(cols)
        torch.testing.assert_close(kernels.spmv(m, x, threads), reference.spmv(m, x), atol=1e-5, rtol=1e-5)
        for n in (3, 16, 33) if rows != 37 else (1, 4, 16, 300):
            x = torch.randn(cols, n)
            torch.testing.assert_close(kernels.spmm(m, x, threads), reference.spmm(m, x), atol=1e-5, rtol=1e-5)


def test_numba_padded_buffers_and_nan():
    from kernels import cpu
    m, dense = random_matrix(37, 22, 0.5, (4, 4))
    v, ci, rp, br, bc = m.numpy_args()
    x = np.zeros(24, np.float32)  # padded to whole blocks: the fast kernel runs
    x[:22] = np.random.default_rng(0).standard_normal(22)
    out = np.full(40, 7.0, np.float32)  # padded rows are written too
    cpu.spmv_into(v, ci, rp, br, bc, x, out)
    np.testing.assert_allclose(out[:37], dense.numpy() @ x[:22], atol=1e-5)
    x[0] = np.nan
    cpu.spmv_into(v, ci, rp, br, bc, x, out)
    assert np.isnan(out[:37][(dense[:, 0] != 0).numpy()]).all()


@pytest.mark.parametrize("block", BLOCKS)
def test_sddmm(block):
    for rows, cols, density in SHAPES:
        m, _ = random_matrix(rows, cols, density, block)
        a, b = torch.randn(rows, 7), torch.randn(7, cols)
        ref = reference.sddmm(a, b, m)
        full = (a @ b) * (m.to_dense() != 0)  # the pattern's support (blocks of random values are nonzero)
        torch.testing.assert_close(ref.to_dense() * (m.to_dense() != 0), full, atol=1e-5, rtol=1e-5)
        got = kernels.sddmm(a, b, m)
        torch.testing.assert_close(got.values, ref.values, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("block", [(16, 1), (4, 4), (1, 1)])
def test_conv1x1(block):
    m, dense = random_matrix(20, 13, 0.4, block)
    x, bias = torch.randn(3, 13, 17), torch.randn(20)
    want = torch.nn.functional.conv1d(x, dense[:, :, None], bias)
    torch.testing.assert_close(reference.conv1x1(m, x, bias), want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(kernels.conv1x1(m, x, bias), want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(kernels.conv1x1(m, x, None, threads=2), want - bias[None, :, None], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("block", [(16, 1), (4, 4), (8, 1), (1, 1)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_gru_step(block, dtype):
    H = 24
    m, dense = random_matrix(3 * H, H, 0.3, block, dtype)
    bias, ix, h = torch.randn(3 * H), torch.randn(3 * H) * 3, torch.rand(H) * 2 - 1
    ref = reference.gru_step(m, bias, ix, h)
    gh = dense @ h + bias
    u, r = torch.sigmoid(gh[:H] + ix[:H]), torch.sigmoid(gh[H:2 * H] + ix[H:2 * H])
    e = torch.tanh(r * gh[2 * H:] + ix[2 * H:])
    torch.testing.assert_close(ref, u * h + (1 - u) * e, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(kernels.gru_step(m, bias, ix, h), ref, atol=2e-6, rtol=1e-5)


def test_gru_step_into_in_place_and_njit_callable():
    from numba import njit

    from kernels import cpu
    H = 32
    m, _ = random_matrix(3 * H, H, 0.3, (16, 1))
    bias, ix, h = (np.random.default_rng(i).standard_normal(n).astype(np.float32) for i, n in enumerate((3 * H, 3 * H, H)))
    want = reference.gru_step(m, torch.from_numpy(bias), torch.from_numpy(ix), torch.from_numpy(h)).numpy()

    @njit
    def two_steps(values, col_idx, row_ptr, br, bc, bias, ix, h, gh):
        cpu.gru_step_into(values, col_idx, row_ptr, br, bc, bias, ix, h, gh, h)  # in place

    h1 = h.copy()
    with cpu.slp_only():
        two_steps(*m.numpy_args(), bias, ix, h1, np.empty(3 * H, np.float32))
    np.testing.assert_allclose(h1, want, atol=2e-6)


def test_fallback_warns_once(caplog):
    m, dense = random_matrix(20, 9, 0.5, (4, 4))
    x = torch.randn(9, dtype=torch.float64)
    kernels.ops._WARNED.discard("activations of dtype ['torch.float64']; fast paths take float32")
    with caplog.at_level("WARNING", logger="kernels.ops"):
        for _ in range(3):
            torch.testing.assert_close(kernels.spmv(m, x), dense @ x.float(), atol=1e-5, rtol=1e-5)
    assert sum("reference" in r.message for r in caplog.records) == 1
    assert kernels.pick_path(m, torch.zeros(1, requires_grad=True)) == "reference"
