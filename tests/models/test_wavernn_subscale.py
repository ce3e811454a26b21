"""Subscale WaveRNN: the ordering, its schedule, causality, reference vs
teacher forcing, fused vs reference (one and two threads)."""
import numpy as np
import torch

from models.subscale import FusedSubscale, fold, n_steps, step_of, unfold, windows
from models.wavernn import WaveRNN, WaveRNNConfig, sample_byte


def tiny_subscale(seed=0, **overrides) -> WaveRNN:
    base = dict(hidden_size=32, cond_channels=6, cond_hidden=8, hop_length=16, n_speakers=2, speaker_dim=4,
                cond_layers=1, cond_kernel=3, subscale=4, subscale_future=2, subscale_past=1, ctx_hidden=4)
    torch.manual_seed(seed)
    model = WaveRNN(WaveRNNConfig(**{**base, **overrides})).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
    return model


def test_fold_is_a_permutation_undone_exactly():
    x = torch.randperm(16 * 7)[None]
    y = fold(x, 16)
    assert y.shape == (1, 16, 7)
    assert torch.equal(y[0, 5, 3], x[0, 3 * 16 + 5])
    assert torch.equal(unfold(y), x)
    assert torch.equal(torch.sort(y.flatten()).values, torch.arange(16 * 7))


def test_schedule_makes_each_position_once_after_what_it_reads():
    B, n, Fh, P = 16, 9, 3, 2
    steps = {(i, j): step_of(i, j, Fh) for i in range(B) for j in range(n)}
    assert max(steps.values()) == n_steps(n, B, Fh) - 1
    for s in range(n_steps(n, B, Fh)):  # at most B per step: one per sub-tensor
        assert len({i for (i, j), v in steps.items() if v == s}) == sum(1 for v in steps.values() if v == s) <= B
    for (i, j), s in steps.items():
        for k in range(i):
            for jj in range(max(0, j - P), min(n, j + Fh + 1)):
                assert steps[(k, jj)] < s


def test_windows_see_only_earlier_subtensors():
    v = torch.randn(1, 4, 6)
    w = windows(v, 1, 2)
    assert w.shape == (1, 4, 6, 4 * 4)
    v2 = v.clone()
    v2[:, 2] += 1.0
    w2 = windows(v2, 1, 2)
    assert torch.equal(w[:, :3], w2[:, :3]) and not torch.equal(w[:, 3], w2[:, 3])


def test_subscale_forward_is_causal_in_subscale_order():
    model = tiny_subscale()
    g = torch.Generator().manual_seed(0)
    samples = torch.randint(0, 65536, (2, 65), generator=g)
    cond, spk = torch.randn(2, 4, 6, generator=g), torch.tensor([0, 1])
    lc, lf = model(samples, cond, spk)
    assert lc.shape == (2, 64, 256)
    other = samples.clone()
    other[:, 1:][:, 3::4] = torch.randint(0, 65536, (2, 16), generator=g)  # the last sub-tensor
    lc2, lf2 = model(other, cond, spk)
    first_three = torch.arange(64) % 4 != 3
    assert torch.allclose(lc[:, first_three], lc2[:, first_three])
    assert torch.allclose(lf[:, first_three], lf2[:, first_three])


def test_subscale_reference_matches_teacher_forcing_and_fused():
    model = tiny_subscale()
    g = torch.Generator().manual_seed(1)
    cond, spk = torch.randn(2, 6, 6, generator=g), torch.tensor([1, 0])
    u = torch.rand(2, 96, 2, generator=g, dtype=torch.float64)
    out = model.generate(cond, spk, u)
    prev = torch.cat([torch.full((2, 1), 32768), out], 1)
    lc, lf = model(prev, cond, spk)
    c = torch.stack([sample_byte(lc[:, t], u[:, t, 0]) for t in range(96)], 1)
    f = torch.stack([sample_byte(lf[:, t], u[:, t, 1]) for t in range(96)], 1)
    assert torch.equal(c * 256 + f, out)
    for threads in (1, 2, 3):
        fused = FusedSubscale(model, sparse=False).generate(cond, spk, u.numpy(), threads=threads)
        np.testing.assert_array_equal(fused, out.numpy())


def test_fused_subscale_sparse_batched_products_equal_reference(monkeypatch):
    """B = 16 streams: two 8-stream tiles of the 16x1 product (one per thread
    with two threads), partial tiles in the ramps; hidden 40 leaves partial
    16-row blocks (3H = 120, H / 2 = 20); 4x4 blocks take the one-stream path."""
    from kernels.linear import block_magnitude_mask
    from models import subscale

    for block in ((16, 1), (4, 4)):
        model = tiny_subscale(seed=2, hidden_size=40, subscale=16, subscale_future=1, sparse_block=block)
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name in model.SPARSE:
                params[name].mul_(block_magnitude_mask(params[name], 0.5, block))
        g = torch.Generator().manual_seed(3)
        cond, spk = torch.randn(1, 6, 6, generator=g), torch.tensor([1])
        u = torch.rand(1, 96, 2, generator=g, dtype=torch.float64)
        out = model.generate(cond, spk, u).numpy()
        fused = FusedSubscale(model, sparse=True)
        assert fused.density < 0.6
        for threads, lag in ((1, 0), (2, 0), (2, 3), (2, 128)):  # lag: steps a group may run ahead
            monkeypatch.setattr(subscale, "LAG", lag)
            np.testing.assert_array_equal(fused.generate(cond, spk, u.numpy(), threads=threads), out)
