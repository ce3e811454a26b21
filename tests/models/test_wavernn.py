"""WaveRNN: shapes, the causal input mask, teacher forcing vs the reference
sampler, fused vs reference sampler, packed bundle round trip."""
import numpy as np
import torch

from models.bundle import load_bundle, save_bundle
from models.config import config_to_dict
from models.registry import bundle_tensors, model_from_bundle, register
from models.wavernn import WaveRNN, WaveRNNConfig, sample_byte, split_samples
from models.wavernn_fused import FusedWaveRNN


def tiny_config(**overrides) -> WaveRNNConfig:
    base = dict(hidden_size=32, cond_channels=6, cond_hidden=8, hop_length=10, n_speakers=2, speaker_dim=4,
                cond_layers=1, cond_kernel=3)
    return WaveRNNConfig(**{**base, **overrides})


def tiny_model(seed=0, scale=3.0, **overrides) -> WaveRNN:
    torch.manual_seed(seed)
    model = WaveRNN(tiny_config(**overrides)).eval()
    with torch.no_grad():  # larger weights: peakier distributions, a sharper test
        for p in model.parameters():
            p.mul_(scale)
    return model


def prune(model: WaveRNN, density: float, block=(16, 1)) -> None:
    """Zero all but the largest blocks of each sparse matrix."""
    br, bc = block
    with torch.no_grad():
        for name in model.SPARSE:
            w = dict(model.named_parameters())[name]
            R, C = w.shape
            scores = w.abs().reshape(R // br, br, C // bc, bc).sum((1, 3))
            keep = max(1, int(density * scores.numel()))
            mask = torch.zeros(scores.numel(), dtype=torch.bool)
            mask[scores.flatten().topk(keep).indices] = True
            w.mul_(mask.reshape(scores.shape).repeat_interleave(br, 0).repeat_interleave(bc, 1))


def batch(B=2, T=40, K=5, C=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 65536, (B, T + 1), generator=g), torch.randn(B, K, C, generator=g),
            torch.arange(B) % 2)


def test_forward_shapes():
    model = tiny_model()
    samples, cond, spk = batch()
    logits_c, logits_f = model(samples, cond, spk)
    assert logits_c.shape == (2, 40, 256) and logits_f.shape == (2, 40, 256)


def test_current_coarse_reaches_only_the_fine_half():
    model = tiny_model()
    samples, cond, spk = batch(T=20)
    c, f = split_samples(samples)
    other = samples.clone()
    other[:, 1:] = ((c[:, 1:] + 7) % 256) * 256 + f[:, 1:]  # every current coarse byte changed
    # Coarse logits at step t depend on c_{<t}, f_{<t} only: identical at step 0.
    lc_a, lf_a = model(samples, cond, spk)
    lc_b, lf_b = model(other, cond, spk)
    assert torch.allclose(lc_a[:, 0], lc_b[:, 0])
    assert not torch.allclose(lf_a[:, 0], lf_b[:, 0])


def test_one_step_lowers_the_loss():
    model = tiny_model(scale=1.0).train()
    samples, cond, spk = batch(B=4, T=60, K=6)
    c, f = split_samples(samples[:, 1:])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)

    def loss_fn():
        lc, lf = model(samples, cond, spk)
        return torch.nn.functional.cross_entropy(lc.transpose(1, 2), c) + \
            torch.nn.functional.cross_entropy(lf.transpose(1, 2), f)
    before = loss_fn()
    opt.zero_grad()
    before.backward()
    opt.step()
    assert loss_fn().item() < before.item()


def test_reference_sampler_matches_teacher_forcing():
    """Redrawing from the teacher-forced logits with the same uniforms gives
    back the generated samples: generate() and forward() are one model."""
    model = tiny_model()
    _, cond, spk = batch(K=4)
    u = torch.rand(2, 40, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    out = model.generate(cond, spk, u)
    prev = torch.cat([torch.full((2, 1), 32768), out], dim=1)
    lc, lf = model(prev, cond, spk)
    c = torch.stack([sample_byte(lc[:, t], u[:, t, 0]) for t in range(40)], 1)
    f = torch.stack([sample_byte(lf[:, t], u[:, t, 1]) for t in range(40)], 1)
    assert torch.equal(c * 256 + f, out)


def test_fused_sampler_equals_reference_dense_and_sparse():
    model = tiny_model()
    _, cond, spk = batch(K=20)
    u = torch.rand(2, 200, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    ref = model.generate(cond, spk, u).numpy()
    dense = FusedWaveRNN(model, sparse=False).generate(cond, spk, u.numpy())
    np.testing.assert_array_equal(dense, ref)
    for block in ((16, 1), (4, 4)):
        pruned = tiny_model()
        prune(pruned, 0.25, block)
        ref = pruned.generate(cond, spk, u).numpy()
        fused = FusedWaveRNN(pruned, sparse=True, block=block)
        assert fused.density < 0.3
        np.testing.assert_array_equal(fused.generate(cond, spk, u.numpy()), ref)
        np.testing.assert_array_equal(fused.generate(cond, spk, u.numpy(), threads=2), ref)


def test_chunked_fused_sampler_equals_one_piece():
    """Streaming in pieces carries the recurrence: same samples as one call."""
    model = tiny_model()
    prune(model, 0.25)
    _, cond, spk = batch(B=1, K=20)
    u = torch.rand(1, 200, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64).numpy()
    fused = FusedWaveRNN(model)
    pieces = list(fused.generate_chunks(cond, spk, u, chunk=37))
    assert [len(p) for p in pieces] == [37] * 5 + [15]
    # the first piece reads conditioning computed on the first frames only: rows before
    # the cut minus the net's reach are the same numbers as on the whole sentence
    cut = fused.cond.reach + 3
    np.testing.assert_array_equal(fused.frames(cond[:, :cut], spk)[0, :3], fused.frames(cond, spk)[0, :3])
    np.testing.assert_array_equal(np.concatenate(pieces), fused.generate(cond, spk, u)[0])


def test_packed_bundle_round_trip(tmp_path):
    register("wavernn-test", WaveRNNConfig, WaveRNN, task="tts")
    model = tiny_model()
    prune(model, 0.25)
    tensors = bundle_tensors(model)
    assert "weight_hh" not in tensors and "weight_hh.bsr_values" in tensors
    dense_floats = sum(p.numel() for n, p in model.named_parameters() if n in model.SPARSE)
    packed_floats = sum(tensors[n + ".bsr_values"].numel() for n in model.SPARSE)
    assert packed_floats <= 0.3 * dense_floats
    save_bundle(tmp_path / "b", model_type="wavernn-test", model_config=config_to_dict(model.config),
                tensors=tensors, task="tts")
    loaded = model_from_bundle(load_bundle(tmp_path / "b"))
    for name, p in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], p), name
