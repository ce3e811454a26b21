"""Parallel WaveNet student: flows, analytic density, ONNX export and the runtime."""
import shutil

import numpy as np
import pytest
import torch

from models.bundle import save_bundle
from models.config import config_to_dict
from models.inference import load_runtime
from models.logistic_mixture import logistic_entropy, logistic_log_pdf, logistic_noise
from models.parallel_wavenet import (ParallelWaveNet, ParallelWaveNetConfig, export_onnx, onnx_session, run_onnx,
                                     run_onnx_chunked)


def tiny_config(**overrides) -> ParallelWaveNetConfig:
    base = dict(flow_layers=(2, 3), dilation_cycle=2, residual_channels=8, skip_channels=8, hop_length=4,
                cond_kind="mel", cond_channels=5, cond_hidden=6, n_speakers=2, speaker_dim=3)
    return ParallelWaveNetConfig(**{**base, **overrides})


def perturbed(model: ParallelWaveNet, scale: float = 0.1) -> ParallelWaveNet:
    """Move off the zero init so that every flow depends on its input."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model


def test_sampling_is_one_pass_with_per_sample_logistics():
    torch.manual_seed(0)
    model = perturbed(ParallelWaveNet(tiny_config())).eval()
    B, T = 2, 24
    cond, speaker = torch.randn(B, T // 4, 5), torch.tensor([0, 1])
    z = logistic_noise((B, T))
    x, mean, log_s = model(z, cond, speaker)
    assert x.shape == mean.shape == log_s.shape == (B, T)
    assert torch.allclose(x, mean + torch.exp(log_s) * z, atol=1e-6)
    z2 = z.clone()
    z2[:, 9] += 1.0  # z_t moves x_t but not the logistic it is drawn from
    x2, mean2, log_s2 = model(z2, cond, speaker)
    assert torch.equal(mean2[:, :10], mean[:, :10]) and torch.equal(log_s2[:, :10], log_s[:, :10])
    assert not torch.allclose(mean2[:, 10], mean[:, 10])


def test_flows_are_invertible_and_the_density_is_the_analytic_one():
    torch.manual_seed(1)
    model = perturbed(ParallelWaveNet(tiny_config())).eval()
    B, T = 2, 28
    cond, speaker = torch.randn(B, T // 4, 5), torch.tensor([1, 0])
    z = logistic_noise((B, T))
    with torch.no_grad():
        x, mean, log_s = model(z, cond, speaker)
        z_back, total_ls = model.invert(x, cond, speaker)
        assert (z_back - z).abs().max() < 1e-4
        assert torch.allclose(total_ls, log_s, atol=1e-5)
        analytic = logistic_log_pdf(x, mean, log_s).sum(-1)  # from the one parallel pass
        assert torch.allclose(model.log_prob(x, cond, speaker), analytic, rtol=1e-5, atol=1e-3)


def test_logistic_entropy_is_the_expected_negative_log_density():
    log_s = torch.tensor([-5.0, -1.0, 0.5])
    z = logistic_noise((200000, 3), torch.Generator().manual_seed(0), dtype=torch.float64)
    x = 0.3 + torch.exp(log_s.double()) * z
    mc = -logistic_log_pdf(x, torch.tensor(0.3, dtype=torch.float64), log_s.double()).mean(0)
    assert torch.allclose(mc.float(), logistic_entropy(log_s), atol=0.01)


def test_generate_fast_path_equals_the_training_forward():
    """generate (in-place products, no autograd) gives the autograd forward's sample."""
    torch.manual_seed(4)
    model = perturbed(ParallelWaveNet(tiny_config()), 0.05).eval()
    for frames, T in ((3, 12), (11, 44), (11, 37)):  # shorter and longer than the dilations; T < K * hop
        cond, speaker = torch.randn(2, frames, 5), torch.tensor([1, 0])
        z = logistic_noise((2, T))
        with torch.no_grad():
            want = torch.clamp(model(z, cond, speaker)[0], -1, 1)
        torch.testing.assert_close(model.generate(cond, speaker, z), want, atol=1e-5, rtol=0)


def test_onnx_matches_torch_for_the_same_noise(tmp_path):
    torch.manual_seed(2)
    model = perturbed(ParallelWaveNet(tiny_config()), 0.05).eval()
    path = export_onnx(model, tmp_path / "student.onnx")
    session = onnx_session(path, threads=1)
    for frames in (5, 13):  # dynamic length
        cond, speaker = torch.randn(2, frames, 5), torch.tensor([0, 1])
        z = logistic_noise((2, frames * 4))
        want = model.generate(cond, speaker, z).numpy()
        got = run_onnx(session, z.numpy(), cond.numpy(), speaker.numpy())
        assert got.shape == (2, frames * 4)
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_chunked_onnx_equals_one_pass(tmp_path):
    """Pieces run with their receptive field and conditioning context give the one-pass audio."""
    torch.manual_seed(5)
    cfg = tiny_config()
    model = perturbed(ParallelWaveNet(cfg), 0.05).eval()
    session = onnx_session(export_onnx(model, tmp_path / "student.onnx"), threads=1)
    cond, speaker = np.random.default_rng(1).standard_normal((2, 61, 5)).astype(np.float32), np.array([1, 0])
    z = logistic_noise((2, 61 * 4)).numpy()
    whole = run_onnx(session, z, cond, speaker)
    for chunk in (7, 20):
        np.testing.assert_allclose(run_onnx_chunked(session, cfg, z, cond, speaker, chunk), whole, atol=1e-5)


def write_bundle(tmp_path, config, model, frontend):
    onnx = export_onnx(model, tmp_path / "model.onnx")
    return save_bundle(tmp_path / "bundle", model_type="parallel-wavenet", model_config=config_to_dict(config),
                       tensors=dict(model.state_dict()), task="tts", frontend_config=frontend,
                       inference_defaults={"engine": "onnx", "threads": 1, "seed": 0}, assets={"model.onnx": onnx})


def test_mel_bundle_runtime_vocodes_through_onnxruntime(tmp_path):
    cfg = tiny_config()
    model = perturbed(ParallelWaveNet(cfg), 0.05).eval()
    bundle, synth = load_runtime(write_bundle(tmp_path, cfg, model, {"speakers": ["a", "b"]}))
    assert synth.session is not None and synth.voices == ["a", "b"]
    mel = np.random.default_rng(0).standard_normal((10, 5)).astype(np.float32)
    audio = synth.vocode(mel, "b", seed=4)
    with torch.no_grad():
        z = logistic_noise((1, 40), torch.Generator().manual_seed(4))
        want = model.generate(torch.from_numpy(mel[None]), torch.tensor([1]), z)[0].numpy()
    np.testing.assert_allclose(audio, want, atol=1e-5)
    with pytest.raises(ValueError, match="log-mel"):
        next(synth.synthesize("hello"))


@pytest.mark.skipif(shutil.which("espeak-ng") is None or shutil.which("mbrola") is None,
                    reason="the text frontend needs espeak-ng and an MBROLA voice")
def test_linguistic_bundle_speaks_text(tmp_path):
    from models.text import mbrola_voice_path

    try:
        mbrola_voice_path("mb-us1")
    except RuntimeError:
        pytest.skip("MBROLA voice us1 is not installed")
    cfg = tiny_config(cond_kind="linguistic", cond_channels=87, hop_length=80, n_speakers=1)
    model = perturbed(ParallelWaveNet(cfg), 0.05).eval()
    frontend = {"speakers": ["mb-us1"], "prosody_voices": {"mb-us1": "mb-us1"}}
    _, synth = load_runtime(write_bundle(tmp_path, cfg, model, frontend))
    chunks = list(synth.synthesize("Hello there."))
    feats = synth.features("Hello there.")
    assert len(chunks) == 1 and chunks[0].dtype == np.float32
    assert len(chunks[0]) == feats.shape[0] * 80 and feats.shape[1] == 87
    assert np.all(np.abs(chunks[0]) <= 1)


def pruned(model: ParallelWaveNet, sparsity: float = 0.75) -> ParallelWaveNet:
    """Zero (4, 1) blocks of the flows' dilated convs and 1x1s by magnitude, as training/sparsity does."""
    from kernels.linear import block_magnitude_mask

    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith("flows.") and p.dim() == 3 and ".cond." not in name and ".input." not in name:
                mask = block_magnitude_mask(p.reshape(p.shape[0], -1), sparsity, (4, 1))
                p.mul_(mask.view(p.shape).to(p.dtype))
    return model


@pytest.mark.parametrize("hop, frames", [(4, 9), (80, 7)])
def test_packed_runtime_generates_the_masked_models_audio(hop, frames):
    import copy

    from kernels import ops, pack_sparse_layers
    from kernels.sparse_layers import SparseConv1d
    from models.parallel_wavenet import packed_runtime

    cfg = tiny_config(hop_length=hop, residual_channels=12, skip_channels=8)
    model = pruned(perturbed(ParallelWaveNet(cfg), 0.3)).eval()
    packed = copy.deepcopy(model)
    names = pack_sparse_layers(packed, min_sparsity=0.5)
    assert "flows.0.dilated.0" in names and "flows.1.skip.2" in names and "flows.0.out1" in names
    packed_runtime(packed)
    assert isinstance(packed.flows[1].dilated[2], SparseConv1d)
    assert getattr(packed, "_packed", False) == (ops.c_spmm_lib() is not None)
    cond, speaker = torch.randn(2, frames, 5), torch.tensor([1, 0])
    z = logistic_noise((2, frames * hop), torch.Generator().manual_seed(5))
    threads = torch.get_num_threads()
    want, got = model.generate(cond, speaker, z), packed.generate(cond, speaker, z)
    assert torch.get_num_threads() == threads  # the one-thread section restores the count
    torch.testing.assert_close(got, want, atol=2e-5, rtol=0)
