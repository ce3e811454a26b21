"""WaveNet teacher and the discretized mixture of logistics."""
import dataclasses

import torch

from models.bundle import load_bundle, save_bundle
from models.config import config_to_dict
from models.logistic_mixture import BIN, discretized_mol_log_prob, mol_log_density, sample_mol
from models.registry import model_from_bundle
from models.wavenet import WaveNet, WaveNetConfig, WaveNetStack, shift_right, upsample_linear
from models.wavernn import upsample_frames


def tiny_config(**overrides) -> WaveNetConfig:
    base = dict(residual_channels=8, skip_channels=8, layers=6, dilation_cycle=3, n_mixtures=3, hop_length=4,
                cond_kind="mel", cond_channels=5, cond_hidden=6, n_speakers=2, speaker_dim=3)
    return WaveNetConfig(**{**base, **overrides})


def audio_sized(model: WaveNet) -> WaveNet:
    """Scale the output layer so the mixtures are audio-sized (not all clipped at +-1)."""
    with torch.no_grad():
        k = model.config.n_mixtures
        model.stack.out2.weight.mul_(0.1)
        model.stack.out2.bias[2 * k:] = -4.0
    return model


def test_discretized_log_prob_matches_direct_sum():
    g = torch.Generator().manual_seed(0)
    K = 3
    params = torch.cat([torch.randn(5, K, generator=g), 0.5 * torch.randn(5, K, generator=g),
                        -3 + torch.rand(5, K, generator=g)], -1).double()
    x = torch.tensor([-1.0, -0.3, 0.0, 0.41, 1 - BIN], dtype=torch.float64)
    got = discretized_mol_log_prob(params, x)
    logits, means, log_s = params[:, :K], params[:, K:2 * K], params[:, 2 * K:]
    pi, s = torch.softmax(logits, -1), torch.exp(log_s)
    upper = torch.sigmoid((x[:, None] + BIN / 2 - means) / s)
    lower = torch.sigmoid((x[:, None] - BIN / 2 - means) / s)
    upper[4] = 1.0  # the highest bin takes all mass above it
    lower[0] = 0.0  # the lowest all mass below it
    want = torch.log((pi * (upper - lower)).sum(-1))
    assert torch.allclose(got, want, rtol=0, atol=1e-6)


def test_discretized_probabilities_sum_to_one_over_all_16_bit_values():
    params = torch.tensor([[0.3, -0.2, 0.1, 0.05, -0.4, 0.98, -6.0, -4.0, -3.0]], dtype=torch.float64)
    x = torch.arange(-32768, 32768, dtype=torch.float64) / 32768
    total = torch.exp(discretized_mol_log_prob(params.expand(len(x), -1), x)).sum()
    assert abs(total.item() - 1.0) < 1e-4
    # the continuous density is the discretized mass over the bin width where it is smooth
    mid = x[30000:30010]
    disc = discretized_mol_log_prob(params.expand(len(mid), -1), mid)
    cont = mol_log_density(params.expand(len(mid), -1), mid) + torch.log(torch.tensor(BIN, dtype=torch.float64))
    assert torch.allclose(disc, cont, atol=1e-4)


def test_sample_mol_follows_the_mixture():
    params = torch.tensor([2.0, 0.0, -0.5, 0.4, -4.0, -4.0])  # 88% at -0.5, 12% at 0.4
    u = torch.rand(20000, 2, generator=torch.Generator().manual_seed(1))
    x = sample_mol(params.expand(len(u), -1), u)
    assert torch.all(x * 32768 == torch.round(x * 32768))  # on the 16-bit grid
    frac = (x > 0).double().mean().item()
    assert abs(frac - 1 / (1 + torch.e ** 2)) < 0.01


def test_forward_shapes_and_causality():
    cfg = tiny_config()
    model = WaveNet(cfg).eval()
    B, T = 2, 32
    audio = 0.1 * torch.randn(B, T)
    cond, speaker = torch.randn(B, T // cfg.hop_length + 2, cfg.cond_channels), torch.tensor([0, 1])
    params = model(audio, cond, speaker, cond_offset=1)
    assert params.shape == (B, T, 3 * cfg.n_mixtures)
    changed = audio.clone()
    changed[:, 10] += 0.5
    params2 = model(changed, cond, speaker, cond_offset=1)
    assert torch.equal(params[:, :11], params2[:, :11])  # sample 10 is predicted without seeing itself
    assert not torch.allclose(params[:, 11], params2[:, 11])
    assert cfg.receptive_field == 2 + sum(cfg.dilations)


def test_frame_rate_conditioning_equals_sample_rate_conditioning():
    """Projecting the frames per layer, then interpolating, is the same as interpolating first."""
    torch.manual_seed(0)
    frames = torch.randn(2, 6, 5, dtype=torch.float64)  # (B, C, K)
    for n in (5 * 7, 5 * 7 - 3, 5 * 7 + 9):  # K * hop, shorter, longer (the last frame held)
        want = upsample_frames(frames.transpose(1, 2), 7, n).transpose(1, 2)
        assert torch.allclose(upsample_linear(frames, 7, n), want, atol=1e-6)  # upsample_frames: float32 weights
    stack = WaveNetStack(1, 2, 4, 4, (1, 2, 4), 6).double()
    x = shift_right(torch.randn(2, 30, dtype=torch.float64))
    assert torch.allclose(stack(x, frames, 7), stack(x, upsample_linear(frames, 7, 30)), atol=1e-12)


def test_one_step_lowers_the_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    cfg = tiny_config()
    model = WaveNet(cfg)
    t = torch.arange(64) / 16000
    audio = torch.stack([0.3 * torch.sin(2 * torch.pi * 440 * t), 0.2 * torch.sin(2 * torch.pi * 300 * t)])
    audio = torch.round(audio * 32768) / 32768
    cond, speaker = torch.randn(2, 16, cfg.cond_channels), torch.tensor([0, 1])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    before = -model.log_prob(audio, cond, speaker).mean()
    opt.zero_grad()
    before.backward()
    opt.step()
    after = -model.log_prob(audio, cond, speaker).mean()
    assert after.item() < before.item()


def test_fast_generation_equals_naive_generation_for_the_same_draws():
    torch.manual_seed(0)
    cfg = tiny_config()
    model = audio_sized(WaveNet(cfg)).double().eval()
    B, T = 3, 45  # several conditioning frames, past the receptive field (2 + 1+2+4+1+2+4)
    cond = torch.randn(B, 12, cfg.cond_channels, dtype=torch.float64)
    speaker = torch.tensor([0, 1, 1])
    u = torch.rand(B, T, 2, dtype=torch.float64)
    fast = model.generate(cond, speaker, u)
    naive = model.generate_naive(cond, speaker, u)
    assert fast.shape == (B, T)
    assert torch.equal(fast, naive)
    assert fast.abs().max() < 1  # audio-sized, not clipped
    # and the generated audio is what teacher forcing would sample with the same draws
    params = model(fast, cond, speaker)
    assert torch.equal(sample_mol(params, u), fast)


def test_fast_generation_in_float32_tracks_teacher_forcing():
    torch.manual_seed(1)
    model = audio_sized(WaveNet(tiny_config(layers=4))).eval()
    cond, speaker = torch.randn(2, 8, 5), torch.tensor([1, 0])
    u = torch.rand(2, 30, 2)
    fast = model.generate(cond, speaker, u)
    params = model(fast, cond, speaker)
    mismatch = (sample_mol(params, u) != fast).float().mean().item()
    assert mismatch < 0.05  # float32 rounding may flip a rare draw at a bin edge


def test_bundle_round_trip(tmp_path):
    cfg = tiny_config()
    model = WaveNet(cfg).eval()
    save_bundle(tmp_path / "b", model_type="wavenet", model_config=config_to_dict(cfg),
                tensors=dict(model.state_dict()), task="tts")
    loaded = model_from_bundle(load_bundle(tmp_path / "b"))
    assert dataclasses.asdict(loaded.config) == dataclasses.asdict(cfg)
    audio, cond, speaker = 0.1 * torch.randn(1, 20), torch.randn(1, 5, 5), torch.tensor([1])
    assert torch.equal(loaded(audio, cond, speaker), model(audio, cond, speaker))
