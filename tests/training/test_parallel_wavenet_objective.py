"""Probability density distillation through the shared loop: loss terms, a step on a
fixed batch, export with the ONNX graph, the runtime."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from models.bundle import load_bundle, save_bundle
from models.config import config_to_dict
from models.inference import load_runtime
from models.parallel_wavenet import ParallelWaveNetConfig
from models.wavenet import WaveNet
from training.config import LoopConfig, OptimConfig
from training.loop import Run, Steps
from training.objectives.parallel_wavenet import (DistillConfig, ParallelWaveNetObjective, ParallelWaveNetRunConfig,
                                                  average_power, other_conditioning)
sys.path.insert(0, str(Path(__file__).parent))  # the teacher tests' corpus and config helpers
from test_wavenet_objective import HOP, make_corpus, teacher_config  # noqa: E402


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A (randomly initialized) teacher bundle and the corpus it was made for."""
    root = tmp_path_factory.mktemp("pwn")
    corpus = make_corpus(root / "corpus")
    cfg = teacher_config(corpus)
    torch.manual_seed(0)
    model = WaveNet(cfg.model)
    path = save_bundle(root / "teacher", model_type="wavenet", model_config=config_to_dict(cfg.model),
                       tensors=dict(model.state_dict()), task="tts", frontend_config={"speakers": ["a", "b"]})
    return path, corpus


def student_config(teacher_path, corpus, **distill) -> ParallelWaveNetRunConfig:
    return ParallelWaveNetRunConfig(
        model=ParallelWaveNetConfig(hop_length=HOP, flow_layers=(2, 2), dilation_cycle=2, residual_channels=8,
                                    skip_channels=8, cond_kind="mel", cond_channels=8, cond_hidden=8,
                                    n_speakers=2, speaker_dim=2),
        data=teacher_config(corpus).data,
        distill=DistillConfig(**{**dict(teacher=str(teacher_path), samples=3, power_n_fft=64), **distill}),
        optim=OptimConfig(lr=1e-3),
        loop=LoopConfig(max_steps=2, batch_size=2, log_every=1, val_every=2, ckpt_every=2, progress=False,
                        device="cpu"))


def fixed_batch(objective):
    data = objective.train_dataset()
    return objective.collate([data.get(i, np.random.default_rng(i)) for i in range(2)])


def test_one_distillation_step_lowers_the_loss_on_a_fixed_batch(teacher):
    objective = ParallelWaveNetObjective(student_config(*teacher))
    torch.manual_seed(1)
    modules = objective.build_modules()
    batch = fixed_batch(objective)
    opt = torch.optim.Adam(objective.optimizer_groups(modules)["main"], lr=1e-3)
    steps = Steps({"main": opt}, {"main": torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)}, {}, 1.0)

    def loss():
        torch.manual_seed(7)  # the same student noise and cross-entropy draws each time
        return objective.losses(modules, batch)

    before = loss()
    assert set(before) >= {"loss", "kl", "cross_entropy", "entropy", "power", "kl_other"}
    assert torch.allclose(before["loss"], before["kl"] + before["power"] - 0.3 * before["kl_other"])
    teacher_before = [p.clone() for p in modules["teacher"].parameters()]
    steps.step("main", before["loss"])
    after = loss()
    assert after["loss"].item() < before["loss"].item()
    assert all(torch.equal(a, b) for a, b in zip(teacher_before, modules["teacher"].parameters()))


def test_entropy_term_is_analytic_and_kl_matches_a_direct_estimate(teacher):
    objective = ParallelWaveNetObjective(student_config(*teacher, power_weight=0.0, contrastive_weight=0.0))
    modules = objective.build_modules()
    batch = fixed_batch(objective)
    torch.manual_seed(3)
    losses = objective.losses(modules, batch)
    torch.manual_seed(3)
    from models.logistic_mixture import logistic_noise, mol_log_density

    real = (batch["samples"][:, 1:].float() - 32768) / 32768
    z = logistic_noise(real.shape)
    x, mean, log_s = modules["model"](z, batch["cond"], batch["speaker"], cond_offset=2)
    assert torch.allclose(losses["entropy"], (log_s + 2).mean())
    params = modules["teacher"](x, batch["cond"], batch["speaker"], cond_offset=2)
    eps = logistic_noise((3, *mean.shape))
    ce = -mol_log_density(params[None], mean[None] + log_s.exp()[None] * eps).mean()
    assert torch.allclose(losses["cross_entropy"], ce, rtol=1e-5)
    assert torch.allclose(losses["loss"], ce - losses["entropy"], rtol=1e-5)


def test_power_and_contrastive_helpers():
    t = torch.arange(2048) / 16000
    tone = torch.sin(2 * torch.pi * 1000 * t)[None]
    power = average_power(tone, 256)
    assert power.shape == (1, 129) and power.argmax().item() == 16  # 1 kHz = bin 16 of 256 at 16 kHz
    cond, speaker = torch.arange(6.0).reshape(2, 3, 1), torch.tensor([0, 1])
    c2, s2 = other_conditioning(cond, speaker)
    assert torch.equal(c2[0], cond[1]) and torch.equal(s2, torch.tensor([1, 0]))
    c1, _ = other_conditioning(cond[:1], speaker[:1])
    assert torch.equal(c1[0, :, 0], torch.tensor([2.0, 1.0, 0.0]))


def test_perceptual_loss_with_a_deep_speech_2_bundle(teacher, tmp_path):
    from models.deepspeech2.features import asr_feature_config
    from models.deepspeech2.model import DeepSpeech2, DeepSpeech2Config

    ds2_cfg = DeepSpeech2Config(n_mels=16, conv_channels=(4,), conv_kernels=((3, 5),), conv_strides=((1, 2),),
                                rnn_layers=1, rnn_hidden=8)
    ds2 = DeepSpeech2(ds2_cfg).eval()
    rec = save_bundle(tmp_path / "ds2", model_type="deepspeech2", model_config=config_to_dict(ds2_cfg),
                      tensors=ds2.bundle_tensors(), task="asr",
                      feature_config=asr_feature_config(n_mels=16).to_dict())
    objective = ParallelWaveNetObjective(student_config(*teacher, recognizer=str(rec)))
    modules = objective.build_modules()
    losses = objective.losses(modules, fixed_batch(objective))
    assert losses["perceptual"].item() > 0
    losses["loss"].backward()
    assert modules["model"].flows[0].out2.weight.grad.abs().sum() > 0


def test_student_trains_exports_an_onnx_bundle_serves_and_evaluates_it(teacher, tmp_path, capsys):
    cfg = student_config(*teacher)
    val = Run(ParallelWaveNetObjective(cfg), tmp_path / "run").fit()
    assert np.isfinite(val["kl"])

    from training.commands.export import export_run

    out = export_run(tmp_path / "run", tmp_path / "student")
    bundle = load_bundle(out)
    assert bundle.model_type == "parallel-wavenet" and bundle.onnx_path is not None
    assert bundle.manifest["provenance"]["teacher"]["bundle"] == str(teacher[0])
    _, synth = load_runtime(out)
    assert synth.session is not None and synth.voices == ["a", "b"]
    mel = np.random.default_rng(0).standard_normal((6, 8)).astype(np.float32)
    audio = synth.vocode(mel, "a")
    assert audio.shape == (6 * HOP,) and np.all(np.abs(audio) <= 1)

    from training.cli import main

    assert main(["synth", "hello", "--model", str(out), "-o", str(tmp_path / "x.wav")]) == 2  # a mel vocoder
    assert "cannot read text" in capsys.readouterr().err
    args = ["eval", "parallel-wavenet", "--model", str(out), "--data", str(teacher[1])]
    assert main(args) == 2  # no --teacher: one line, non-zero
    assert "--teacher" in capsys.readouterr().err
    assert main(args + ["--teacher", str(teacher[0]), "--split", "valid", "--limit", "1",
                        "--teacher-seconds", "0.01"]) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert figures["utterances"] == 1 and figures["split"] == "valid"
    for key in ("logmel_l1_student", "logmel_l1_teacher", "logmel_l1_silence", "logmel_l1_noise"):
        assert np.isfinite(figures[key]) and figures[key] >= 0
    assert 0 <= figures["wer_pocketsphinx_reference"] and 0 <= figures["wer_pocketsphinx_student"]


def test_pruned_student_exports_packed_and_vocodes_the_masked_models_audio(teacher, tmp_path):
    import dataclasses

    from kernels.sparse_layers import SparseConv1d
    from models.parallel_wavenet import ParallelWaveNet
    from training.checkpoint import latest_checkpoint, load_checkpoint

    cfg = student_config(*teacher)
    cfg = dataclasses.replace(cfg, sparsity=dataclasses.replace(cfg.sparsity, method="gmp", target=0.75, start_step=0,
                                                                end_step=2, every=1))
    Run(ParallelWaveNetObjective(cfg), tmp_path / "run").fit()
    from training.commands.export import export_run

    out = export_run(tmp_path / "run", tmp_path / "student")
    bundle = load_bundle(out)
    assert bundle.onnx_path is None and bundle.manifest["inference_defaults"]["engine"] == "torch"
    sparsity = bundle.manifest["sparsity"]
    assert sparsity["method"] == "gmp" and sparsity["overall"] >= 0.74 and "flows.1.dilated.1" in sparsity["packed"]
    # the masks survive the round trip: each packed conv's zeros are the checkpoint's mask, in (4, 1) blocks
    state = load_checkpoint(latest_checkpoint(tmp_path / "run" / "checkpoints"))
    masks = state["objective"]["sparsifier"]["masks"]
    _, synth = load_runtime(out)
    layers = dict(synth.model.named_modules())
    for name, mask in masks.items():
        layer = layers[name.removesuffix(".weight")]
        assert isinstance(layer, SparseConv1d) and layer.packed.block == (4, 1)
        assert torch.equal(layer.dense_weight().reshape(mask.shape) != 0, mask.bool())
    # the packed runtime (in 1 s pieces, two at once) vocodes what the masked torch model generates
    masked = ParallelWaveNet(cfg.model)
    masked.load_state_dict(state["modules"]["model"])
    mel = np.random.default_rng(0).standard_normal((420, 8)).astype(np.float32)
    synth.threads = 2
    audio = synth.vocode(mel, "b", seed=3)
    with torch.no_grad():
        z = torch.from_numpy(np.ascontiguousarray(logistic_z(3, 420 * HOP)))
        want = masked.eval().generate(torch.from_numpy(mel[None]), torch.tensor([1]), z)[0].numpy()
    np.testing.assert_allclose(audio, want, atol=2e-5)


def logistic_z(seed: int, n: int) -> np.ndarray:
    from models.logistic_mixture import logistic_noise

    return logistic_noise((1, n), torch.Generator().manual_seed(seed)).numpy()


def test_mismatched_teacher_is_refused(teacher):
    cfg = student_config(*teacher)
    bad = ParallelWaveNetRunConfig(model=ParallelWaveNetConfig(cond_kind="mel", cond_channels=9, hop_length=HOP,
                                                               n_speakers=2),
                                   data=cfg.data, distill=cfg.distill)
    with pytest.raises(ValueError, match="cond_channels"):
        ParallelWaveNetObjective(bad)
    with pytest.raises(ValueError, match="distill.teacher"):
        ParallelWaveNetObjective(ParallelWaveNetRunConfig())
    json.dumps(config_to_dict(cfg))  # the run config is serializable
