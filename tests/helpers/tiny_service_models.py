"""Bundles for the service tests: tiny real ones, built through the families'
own export paths, next to the shipped defaults where content matters.

`write_tiny_bundles(dir)` writes, untrained (random init; the API tests
check shapes, formats, limits and batching, not what is said):
- "wavernn": a tiny sparse WaveRNN (WaveRNNObjective.export), streaming,
  voices mb-us1 / mb-us2 (espeak-ng + MBROLA prosody);
- "gan-tts": a tiny GAN-TTS (GanTTSObjective.export, onnxruntime), feed-forward
  and batched (`synthesize_batch`);
- "eats": a tiny EATS (EATSObjective.export, onnxruntime), feed-forward,
  with phoneme and word timings;
- "ds2": a tiny unidirectional Deep Speech 2 (DeepSpeech2Objective.export), greedy decoding, streams;
- "onsets-frames": a tiny Onsets and Frames (OnsetsFramesObjective.export).

`link_default_bundles(dir)` links the shipped bundles that content tests
use: deepspeech2-default (espeak-ng speech in, text out) and
onsets-frames-default (a fluidsynth render in, notes out).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from models.gan_tts import GanTTSConfig
from models.text import pho_symbols

REPO = Path(__file__).resolve().parents[2]
DEFAULT_BUNDLES = ("deepspeech2-default", "onsets-frames-default")
VOICES = ("mb-us1", "mb-us2")


def _build(objective) -> dict:
    """The objective's modules as training builds them: Objective.build() (which
    attaches the sparsifier) where the tree has it, else build_modules()."""
    return objective.build() if hasattr(objective, "build") else objective.build_modules()


def _wavernn(directory: Path) -> Path:
    from models.wavernn import WaveRNNConfig
    from training.objectives.wavernn import WaveRNNDataConfig, WaveRNNObjective, WaveRNNRunConfig, \
        linguistic_channels
    from training.sparsity import SparsityConfig

    model = WaveRNNConfig(hidden_size=32, cond_channels=linguistic_channels(), cond_hidden=8, cond_layers=1,
                          cond_kernel=3, n_speakers=len(VOICES), speaker_dim=4)
    sparsity = SparsityConfig(method="gmp", target=0.75, start_step=0, end_step=1, include=("weight_hh",),
                              block=(16, 1), min_size=64)
    objective = WaveRNNObjective(WaveRNNRunConfig(model=model, data=WaveRNNDataConfig(root="no-corpus",
                                                                                      voices=VOICES),
                                                  sparsity=sparsity))
    modules = _build(objective)
    objective.after_step(modules, 1)  # prune to the target: the bundle is sparse like the shipped one
    return objective.export(modules, str(directory / "wavernn"), {"test": True}, "0+test")


def _gan_tts(directory: Path) -> Path:
    """GanTTSObjective.export reads the voices and prosody voices from a
    corpus' labels: two label rows stand in for the corpus (no audio is read)."""
    from models.gan_discriminators import DiscriminatorConfig
    from training.objectives.gan_tts import GanTTSDataConfig, GanTTSObjective, GanTTSRunConfig

    corpus = directory / "gan-tts-corpus"
    corpus.mkdir(exist_ok=True)
    rows = [{"id": f"u{i}", "split": "train", "speaker": v, "voice": v, "durations_ms": [50.0],
             "pho_phonemes": ["_"], "pitch": [[]], "licence": "test-only"} for i, v in enumerate(VOICES)]
    (corpus / "labels.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = GanTTSConfig(in_channels=len(pho_symbols()) + 4 + len(VOICES), noise_dim=4, n_speakers=len(VOICES),
                          speaker_dim=2, channels=(8, 8, 6, 6, 4, 4, 4))
    disc = DiscriminatorConfig(cond_channels=config.in_channels, channels=4, max_channels=8, post_blocks=1)
    objective = GanTTSObjective(GanTTSRunConfig(model=config, disc=disc, data=GanTTSDataConfig(root=str(corpus))))
    modules = _build(objective)
    return objective.export({"model": modules["model"]}, str(directory / "gan-tts"), {"test": True}, "0+test")


def _eats(directory: Path) -> Path:
    objective, modules = tiny_eats(directory)
    return objective.export({"model": modules["model"]}, str(directory / "eats"), {"test": True}, "0+test")


def tiny_eats(directory: Path, sparsity=None, channels=(8, 8, 6, 6, 4, 4, 4)):
    """(EATSObjective, its modules) of a tiny EATS; EATSObjective.export reads the voices from a
    corpus' labels: two rows stand in (no audio is read). `sparsity`: a SparsityConfig (the
    objective's Sparsifier is built with the modules)."""
    from models.eats import EATSConfig
    from models.gan_discriminators import DiscriminatorConfig
    from training.objectives.eats import EATSDataConfig, EATSObjective, EATSRunConfig

    corpus = directory / "eats-corpus"
    corpus.mkdir(exist_ok=True)
    rows = [{"id": f"u{i}", "split": "train", "speaker": v, "phonemes": "hə", "licence": "test-only"}
            for i, v in enumerate(VOICES)]
    (corpus / "labels.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = EATSConfig(n_speakers=len(VOICES), token_dim=8, aligner_channels=8, dilations=(1, 2),
                        aligned_channels=6, noise_dim=4, speaker_dim=2, channels=channels,
                        init_length=6.0)
    disc = DiscriminatorConfig(cond_channels=2, window_frames=(2, 4, 8), channels=4, max_channels=8, post_blocks=1)
    run = EATSRunConfig(model=config, disc=disc, data=EATSDataConfig(root=str(corpus)))
    objective = EATSObjective(run if sparsity is None else dataclasses.replace(run, sparsity=sparsity))
    return objective, _build(objective)


def _deepspeech2(directory: Path) -> Path:
    from models.deepspeech2 import DeepSpeech2Config
    from models.deepspeech2.features import asr_feature_config
    from training.objectives.deepspeech2 import (DeepSpeech2DataConfig, DeepSpeech2DecodeConfig,
                                                 DeepSpeech2Objective, DeepSpeech2RunConfig)

    config = DeepSpeech2RunConfig(
        model=DeepSpeech2Config(n_mels=16, conv_channels=(4, 4), conv_kernels=((5, 7), (5, 5)),
                                conv_strides=((2, 2), (1, 1)), rnn_layers=1, rnn_hidden=32,
                                bidirectional=False, lookahead=2),  # a streaming model
        features=asr_feature_config(n_mels=16), data=DeepSpeech2DataConfig(root=str(directory / "no-corpus")),
        decode=DeepSpeech2DecodeConfig(decoder="greedy", onnx=False))
    objective = DeepSpeech2Objective(config)
    model = _build(objective)["model"]
    with torch.no_grad():  # batch-norm statistics from one pass
        model.train()
        model(torch.randn(4, 80, 16) * 2 - 3, torch.tensor([80, 70, 50, 40]))
    return objective.export({"model": model.eval()}, directory / "ds2", provenance={"test": True},
                            package_version="test")


def _onsets_frames(directory: Path) -> Path:
    from models.onsets_frames import OnsetsFramesConfig
    from training.objectives.onsets_frames import OnsetsFramesDecodeConfig, OnsetsFramesObjective, \
        OnsetsFramesRunConfig

    config = OnsetsFramesRunConfig(
        model=OnsetsFramesConfig(conv_channels=(2, 2, 4), dense=16, lstm=8, conv_dropout=0.0, dense_dropout=0.0),
        decode=OnsetsFramesDecodeConfig(tune=False, onnx=False))
    objective = OnsetsFramesObjective(config)
    modules = _build(objective)
    return objective.export({"model": modules["model"].eval()}, str(directory / "onsets-frames"), {"test": True},
                            "0+test")


def write_tiny_bundles(directory: Path) -> dict[str, Path]:
    """The tiny real bundles under `directory`; returns name -> path."""
    torch.manual_seed(0)
    made = {"wavernn": _wavernn(directory), "gan-tts": _gan_tts(directory), "eats": _eats(directory),
            "ds2": _deepspeech2(directory), "onsets-frames": _onsets_frames(directory)}
    return {name: Path(path) for name, path in made.items()}


def link_default_bundles(directory: Path) -> dict[str, Path]:
    """Symlinks to the shipped bundles the content tests use."""
    made = {}
    for name in DEFAULT_BUNDLES:
        link = directory / name
        link.symlink_to(REPO / "bundles" / name, target_is_directory=True)
        made[name] = link
    return made
