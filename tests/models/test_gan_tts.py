"""GAN-TTS generator and random-window discriminators: shapes, steps, ONNX."""
import numpy as np
import pytest
import torch

from models.gan_discriminators import DiscriminatorConfig, RandomWindowDiscriminators, hinge_d_loss, hinge_g_loss
from models.gan_tts import GanTTSConfig, GanTTSGenerator, default_upsample, export_onnx, onnx_session, run_onnx


def tiny_config(**overrides) -> GanTTSConfig:
    sr = overrides.get("sample_rate", 16000)
    base = dict(in_channels=6, noise_dim=4, n_speakers=3, speaker_dim=2, channels=(8, 8, 6, 6, 4, 4, 4),
                upsample=default_upsample(sr))
    return GanTTSConfig(**{**base, **overrides})


def tiny_disc_config(**overrides) -> DiscriminatorConfig:
    return DiscriminatorConfig(**{**dict(cond_channels=6, channels=4, max_channels=8, post_blocks=1), **overrides})


@pytest.mark.parametrize("sample_rate,hop", [(16000, 80), (24000, 120)])
def test_shapes_at_both_rates(sample_rate, hop):
    gen = GanTTSGenerator(tiny_config(sample_rate=sample_rate))
    feats = torch.randn(2, 6, 31)
    audio = gen(feats, torch.randn(2, 4), torch.tensor([0, 2]))
    assert audio.shape == (2, 31 * hop)
    assert audio.abs().max() <= 1
    disc = RandomWindowDiscriminators(tiny_disc_config(sample_rate=sample_rate))
    assert disc.config.windows == tuple(f * hop for f in (2, 4, 8, 16, 30))
    scores = disc(audio, feats)
    assert sorted(scores) == sorted([f"{k}{w}" for w in disc.config.windows for k in "uc"])
    assert all(s.shape == (2,) for s in scores.values())
    assert set(disc(audio)) == {f"u{w}" for w in disc.config.windows}  # no conditioning: unconditional half


def test_bad_upsampling_is_refused():
    with pytest.raises(ValueError, match="multiply"):
        GanTTSConfig(sample_rate=16000, upsample=(1, 1, 2, 2, 2, 3, 5))


def test_conditional_windows_see_the_matching_conditioning():
    disc = RandomWindowDiscriminators(tiny_disc_config(unconditional=False))
    audio, cond = torch.randn(2, 40 * 80), torch.randn(2, 6, 40)
    offsets = disc.sample_offsets(2, audio.shape[1], torch.Generator().manual_seed(0))
    base = disc(audio, cond, offsets)
    changed = cond.clone()
    name = "c160"
    frame = int(offsets[name][0]) // 80
    changed[0, :, frame:frame + 2] += 1.0  # inside the window of item 0
    outside = [f for f in range(40) if not frame <= f < frame + 2][0]
    assert not torch.allclose(disc(audio, changed, offsets)[name][0], base[name][0])
    cond2 = cond.clone()
    cond2[0, :, outside] += 1.0
    assert torch.allclose(disc(audio, cond2, offsets)[name][0], base[name][0])


def _fixed_batch():
    torch.manual_seed(0)
    return torch.randn(4, 6, 32), torch.randn(4, 4), torch.tensor([0, 1, 2, 0]), 0.5 * torch.sin(
        torch.arange(32 * 80).float() * 0.05).repeat(4, 1)


def test_discriminator_step_lowers_its_loss():
    feats, noise, spk, real = _fixed_batch()
    gen, disc = GanTTSGenerator(tiny_config()), RandomWindowDiscriminators(tiny_disc_config())
    fake = gen(feats, noise, spk).detach()
    offsets = disc.sample_offsets(4, real.shape[1], torch.Generator().manual_seed(1))
    opt = torch.optim.Adam(disc.parameters(), lr=1e-3)
    losses = []
    for _ in range(5):
        loss = hinge_d_loss(disc(real, feats, offsets), disc(fake, feats, offsets))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_generator_step_lowers_its_loss():
    feats, noise, spk, _ = _fixed_batch()
    gen, disc = GanTTSGenerator(tiny_config()), RandomWindowDiscriminators(tiny_disc_config())
    offsets = disc.sample_offsets(4, 32 * 80, torch.Generator().manual_seed(1))
    opt = torch.optim.Adam(gen.parameters(), lr=1e-3)
    disc.requires_grad_(False)
    losses = []
    for _ in range(5):
        loss = hinge_g_loss(disc(gen(feats, noise, spk), feats, offsets))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_onnx_matches_torch(tmp_path):
    gen = GanTTSGenerator(tiny_config())
    # a few training-mode passes so the running statistics are not the identity
    with torch.no_grad():
        for _ in range(3):
            gen(torch.randn(4, 6, 20), torch.randn(4, 4), torch.tensor([0, 1, 2, 1]))
    gen.eval()
    session = onnx_session(export_onnx(gen, tmp_path / "g.onnx", frames=12), threads=1)
    feats, noise, spk = np.random.randn(2, 6, 23).astype(np.float32), np.random.randn(2, 4).astype(np.float32), \
        np.array([2, 1])
    got = run_onnx(session, feats, noise, spk)
    with torch.no_grad():
        want = gen(torch.from_numpy(feats), torch.from_numpy(noise), torch.from_numpy(spk)).numpy()
    assert got.shape == (2, 23 * 80)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_no_speakers_and_generate_is_deterministic():
    gen = GanTTSGenerator(tiny_config(n_speakers=0)).eval()
    feats = torch.randn(1, 6, 10)
    assert torch.equal(gen.generate(feats, seed=3), gen.generate(feats, seed=3))
    assert not torch.equal(gen.generate(feats, seed=3), gen.generate(feats, seed=4))
