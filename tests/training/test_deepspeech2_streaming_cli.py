"""`sparsewave transcribe --stream`: partials while the audio is fed, then the whole-file transcript."""
import json

import numpy as np
import soundfile as sf
import torch

from models.deepspeech2.features import LogMel, asr_feature_config
from models.deepspeech2.model import DeepSpeech2Config
from training.cli import main
from training.objectives.deepspeech2 import (DeepSpeech2DataConfig, DeepSpeech2DecodeConfig, DeepSpeech2Objective,
                                             DeepSpeech2RunConfig)


def speech_like(seconds: float = 1.0) -> np.ndarray:
    """Noise bursts and pauses: an input whose frames differ, so the tiny model's outputs do too."""
    g = np.random.default_rng(0)
    n = int(16000 * seconds)
    return (g.standard_normal(n) * np.resize(np.repeat([0.5, 0.0, 0.05, 0.0], 800), n)).astype(np.float32)


def tiny_bundle(path, bidirectional: bool):
    config = DeepSpeech2RunConfig(
        model=DeepSpeech2Config(n_mels=16, conv_channels=(4, 4), conv_kernels=((5, 7), (5, 5)),
                                conv_strides=((2, 2), (1, 1)), rnn_layers=1, rnn_hidden=32,
                                bidirectional=bidirectional, lookahead=0 if bidirectional else 2),
        features=asr_feature_config(n_mels=16), data=DeepSpeech2DataConfig(root=str(path / "no-corpus")),
        decode=DeepSpeech2DecodeConfig(decoder="greedy", onnx=False))
    objective = DeepSpeech2Objective(config)
    torch.manual_seed(0)
    model = objective.build()["model"]
    for module in model.modules():  # batch norm takes the statistics of the one pass below whole
        if isinstance(module, torch.nn.BatchNorm1d):
            module.momentum = 1.0
    with torch.no_grad():
        model.train()
        feats = LogMel(config.features)(torch.from_numpy(speech_like())[None])  # batch norm from real log-mels
        model(feats, torch.tensor([feats.shape[1]]))
        model.out.bias.zero_()
        model.out.weight.normal_(0.0, 5.0)  # sharp outputs

    return objective.export({"model": model.eval()}, path / "bundle", provenance={"test": True},
                            package_version="test")


def test_stream_prints_growing_partials_and_the_whole_file_result(tmp_path, capsys):
    bundle = tiny_bundle(tmp_path, bidirectional=False)
    wav = tmp_path / "a.wav"
    sf.write(wav, speech_like(), 16000)
    assert main(["transcribe", str(wav), "--model", str(bundle)]) == 0
    whole = json.loads(capsys.readouterr().out)
    assert main(["transcribe", str(wav), "--model", str(bundle), "--stream", "--chunk-ms", "100"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out) == whole
    partials = [line.split("] ", 1)[1] for line in out.err.splitlines() if line.startswith("[")]
    assert len(partials) >= 2 and all(b.startswith(a) for a, b in zip(partials, partials[1:]))


def test_stream_refuses_a_bidirectional_bundle(tmp_path, capsys):
    bundle = tiny_bundle(tmp_path, bidirectional=True)
    wav = tmp_path / "a.wav"
    sf.write(wav, np.zeros(4000, np.float32), 16000)
    assert main(["transcribe", str(wav), "--model", str(bundle), "--stream"]) != 0
    assert "unidirectional" in capsys.readouterr().err
    assert main(["transcribe", str(wav), "--model", str(bundle), "--chunk-ms", "0"]) != 0
