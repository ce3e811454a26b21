"""EATS objective: windows, losses, two optimizers through the shared loop, export, synth --timings."""
import json

import numpy as np
import pytest
import torch

from models.audio import write_audio
from models.bundle import load_bundle
from models.eats import EATSConfig, MelDiscriminatorConfig, run_onnx
from models.gan_discriminators import DiscriminatorConfig
from models.gan_tts import onnx_session
from models.registry import model_from_bundle
from training.cli import main
from training.commands.export import export_run
from training.config import LoopConfig, OptimConfig
from training.loop import Run, Steps
from training.objectives.eats import EATSDataConfig, EATSLossConfig, EATSObjective, EATSRunConfig, WindowDataset

HOP = 80
PHRASES = ["həlˈoʊ wˈɜːld.", "ɐ tˈɛst, ɔːlsˌoʊ.", "ðɪs ɪz ɪt.", "wˈʌn tˈuː θɹˈiː.", "nˈoʊ.", "ɡˈʊd mˈɔːɹnɪŋ."]


def tiny_corpus(root):
    """Two 'voices' (tone heights) speaking IPA strings: each letter a tone burst, spaces and punctuation silent."""
    (root / "wavs").mkdir(parents=True)
    rows = []
    for i, phrase in enumerate(PHRASES * 2):
        voice = ["a", "b"][i % 2]
        chunks = []
        for k, ch in enumerate(phrase):
            n = 8 * HOP if ch.isalpha() else 4 * HOP
            t = np.arange(n) / 16000
            f0 = (150 if voice == "a" else 230) * (1 + 0.1 * (k % 3))
            chunks.append(0.3 * np.sin(2 * np.pi * f0 * t) * ch.isalpha())
        uid = f"U{i:03d}"
        write_audio(root / "wavs" / f"{uid}.wav", np.concatenate(chunks).astype(np.float32), 16000)
        rows.append({"id": uid, "speaker": voice, "split": "train", "phonemes": phrase, "normalized": phrase,
                     "licence": "test data"})
    (root / "labels.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def tiny_run_config(root, adv_start_step=0, **loop) -> EATSRunConfig:
    return EATSRunConfig(
        model=EATSConfig(n_speakers=2, token_dim=8, aligner_channels=8, dilations=(1, 2), aligned_channels=6,
                         noise_dim=4, speaker_dim=2, channels=(8, 8, 6, 6, 4, 4, 4), init_length=6.0),
        disc=DiscriminatorConfig(cond_channels=2, window_frames=(2, 4, 8), channels=4, max_channels=8, post_blocks=1),
        mel_disc=MelDiscriminatorConfig(n_fft=256, hop_length=80, n_mels=20, channels=4, layers=2),
        data=EATSDataConfig(root=str(root), window_frames=24, val_items=2),
        loss=EATSLossConfig(adv_start_step=adv_start_step, dtw_gamma=0.1),
        optim=OptimConfig(lr=1e-3, betas=(0.5, 0.999), grad_clip=0.0),
        loop=LoopConfig(**{**dict(max_steps=2, batch_size=2, log_every=1, val_every=2, ckpt_every=2,
                                  progress=False, device="cpu"), **loop}),
    )


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return tiny_corpus(tmp_path_factory.mktemp("eats_corpus"))


def make_steps(groups):
    optimizers = {k: torch.optim.Adam(v, lr=1e-3, betas=(0.5, 0.999)) for k, v in groups.items()}
    schedulers = {k: torch.optim.lr_scheduler.LambdaLR(o, lambda s: 1.0) for k, o in optimizers.items()}
    return Steps(optimizers, schedulers, {}, grad_clip=0.0)


def test_windows_follow_the_audio_and_keep_the_true_length(corpus):
    objective = EATSObjective(tiny_run_config(corpus))
    data = objective.train_dataset()
    ids, audio, _ = data.items[0]
    assert ids.dtype == np.int64 and (ids > 3).any()  # IPA symbols, no padding
    tokens, window, offset, length, _ = data.get(0, np.random.default_rng(0))
    assert window.shape == (24 * HOP,) and float(length) == pytest.approx(len(audio) / HOP)
    start = int(offset) * HOP
    np.testing.assert_array_equal(window.numpy()[:len(audio) - start], audio[start:start + 24 * HOP])
    short = WindowDataset([(ids, audio[:10 * HOP], 0)], HOP, 40).get(0, np.random.default_rng(0))
    assert int(short[2]) == 0 and short[1][10 * HOP:].abs().max() == 0  # zero-padded past the end


@pytest.mark.parametrize("weights", [(0.1, 1.0), (1.0, 0.0)])
def test_one_training_step_lowers_the_losses_on_a_fixed_batch(corpus, weights):
    torch.manual_seed(0)
    config = tiny_run_config(corpus)
    loss = EATSLossConfig(adv_start_step=1, dtw_gamma=0.1, length_weight=weights[0], dtw_weight=weights[1])
    objective = EATSObjective(EATSRunConfig(**{**config.__dict__, "loss": loss}))  # the prediction losses alone
    modules = objective.build_modules()
    steps = make_steps(objective.optimizer_groups(modules))
    data = objective.train_dataset()
    batch = objective.collate([data.get(i, np.random.default_rng(i)) for i in range(4)])

    def losses():
        torch.manual_seed(1)  # the same noise each time
        with torch.no_grad():
            fake, lengths = objective.generate(modules, batch)
            return [float(x) for x in objective.prediction_losses(fake, lengths, batch)]

    before = losses()
    torch.manual_seed(1)
    logs = objective.train_step(modules, batch, 0, steps)
    after = losses()
    assert {"loss", "length", "dtw", "length_error_s"} <= set(logs)
    if weights[1] > 0:  # the weighted sum falls, and the spectrogram loss with it
        assert np.dot(weights, after) < np.dot(weights, before) and after[1] < before[1], (before, after)
    else:  # the length loss alone: the aligner learns the total length
        assert after[0] < before[0], (before, after)


def test_discriminators_and_generator_both_update(corpus):
    torch.manual_seed(0)
    objective = EATSObjective(tiny_run_config(corpus))
    modules = objective.build_modules()
    groups = objective.optimizer_groups(modules)
    assert set(groups) == {"gen", "disc"}
    before = {k: [p.detach().clone() for p in v] for k, v in groups.items()}
    data = objective.train_dataset()
    batch = objective.collate([data.get(i, np.random.default_rng(i)) for i in range(2)])
    logs = objective.train_step(modules, batch, 0, make_steps(groups))
    assert {"loss", "d_loss", "g_adv", "length", "dtw"} <= set(logs) and all(np.isfinite(v) for v in logs.values())
    assert all(p.requires_grad for name in ("disc", "mel_disc") for p in modules[name].parameters())
    for name, params in groups.items():
        assert any(not torch.equal(a, b) for a, b in zip(before[name], params)), name
    mel = [p for p in modules["mel_disc"].parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(before["disc"][-len(mel):], mel))


def test_config_mismatches_are_refused(corpus):
    config = tiny_run_config(corpus)
    with pytest.raises(ValueError, match="cond_channels"):
        EATSObjective(EATSRunConfig(**{**config.__dict__, "disc": DiscriminatorConfig(cond_channels=5)}))
    bad = EATSRunConfig(**{**config.__dict__, "model": EATSConfig(n_speakers=3),
                                      "disc": DiscriminatorConfig(conditional=False, window_frames=(2, 4, 8))})
    with pytest.raises(ValueError, match="n_speakers"):
        EATSObjective(bad).corpus()


def test_loop_trains_exports_and_synth_prints_timings(corpus, tmp_path, capsys):
    objective = EATSObjective(tiny_run_config(corpus))
    run_dir = tmp_path / "run"
    metrics = Run(objective, run_dir).fit()
    assert np.isfinite(metrics["loss"])
    bundle_dir = export_run(run_dir, tmp_path / "bundle")
    bundle = load_bundle(bundle_dir)
    assert bundle.manifest["model_type"] == "eats" and bundle.manifest["frontend_config"]["voices"] == ["a", "b"]
    model = model_from_bundle(bundle)
    tokens, noise = np.array([[5, 40, 41, 3, 60, 61, 9]]), np.ones((1, 4), np.float32)
    got, got_lengths = run_onnx(onnx_session(bundle.onnx_path, 1), tokens, noise, np.array([1]),
                                np.ones(1, np.float32))
    with torch.no_grad():
        want, lengths = model.infer(torch.from_numpy(tokens), torch.from_numpy(noise), torch.tensor([1]),
                                    torch.ones(1))
    np.testing.assert_allclose(got, want.numpy(), atol=1e-4)
    np.testing.assert_allclose(got_lengths, lengths.numpy(), rtol=1e-4, atol=1e-4)

    out = tmp_path / "hello.wav"
    assert main(["synth", "Hello world, again.", "--model", str(bundle_dir), "-o", str(out), "--voice", "b",
                 "--timings"]) == 0
    printed = capsys.readouterr().out
    assert out.is_file() and "kind='phoneme'" in printed
    words = [line for line in printed.splitlines() if "kind='word'" in line]
    assert [w.split("text='")[1].split("'")[0] for w in words] == ["Hello", "world", "again"]


@pytest.mark.parametrize("name", ["default", "paper24k", "tiny", "mbrola_durations"])
def test_shipped_configs_load_and_validate(name):
    from pathlib import Path

    from training.config import load_config

    config = load_config(EATSRunConfig, Path(__file__).parents[2] / "configs" / "eats" / f"{name}.yaml")
    EATSObjective(config)  # checks the rates, discriminator conditioning and windows
    assert config.model.decoder.hop_length * 200 == config.model.sample_rate
