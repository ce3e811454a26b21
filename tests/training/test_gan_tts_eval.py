"""`sparsewave eval fdsd`: the four distances, the floor and WERs, end to end on real tools."""
import json

import numpy as np
import pytest
import torch

from models.bundle import save_bundle
from models.config import config_to_dict
from models.deepspeech2.model import DeepSpeech2Config
from models.gan_tts import GanTTSConfig, GanTTSGenerator, export_onnx
from models.text import FrontendConfig, mbrola_voice_path, pho_symbols
from training.objectives.deepspeech2 import DeepSpeech2DecodeConfig, DeepSpeech2Objective, DeepSpeech2RunConfig
from training.objectives.gan_tts import evaluate_fdsd

try:
    mbrola_voice_path("mb-us1")
    HAVE_MBROLA = True
except RuntimeError:
    HAVE_MBROLA = False

SENTENCES = ["the cat sat down.", "we go home now.", "it is cold today.", "see the red boat.", "open the door.",
             "a bird sang.", "he ran fast.", "ten green apples.", "she reads books.", "do it again."]


def gan_bundle(root):
    config = GanTTSConfig(in_channels=len(pho_symbols()) + 4 + 1, noise_dim=4, n_speakers=1, speaker_dim=2,
                          channels=(8, 8, 6, 6, 4, 4, 4))
    torch.manual_seed(0)
    model = GanTTSGenerator(config).eval()
    front = {"voices": ["mb-us1"], "prosody_voices": {"mb-us1": "mb-us1"}, "symbols": pho_symbols().to_dict(),
             "frontend": FrontendConfig().to_dict()}
    return save_bundle(root / "gan", model_type="gan-tts", task="tts", model_config=config_to_dict(config),
                       tensors=dict(model.state_dict()), frontend_config=front,
                       assets={"model.onnx": export_onnx(model, root / "g.onnx")})


def ds2_bundle(root):
    config = DeepSpeech2RunConfig(
        model=DeepSpeech2Config(n_mels=80, conv_channels=(4, 4), rnn_layers=1, rnn_hidden=16),
        decode=DeepSpeech2DecodeConfig(decoder="greedy", onnx=False))
    objective = DeepSpeech2Objective(config)
    return objective.export(objective.build_modules(), str(root / "ds2"), {"test": True}, "0+test")


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_MBROLA, reason="needs espeak-ng and the MBROLA voice us1")
def test_eval_fdsd_end_to_end(tmp_path):
    rows = [{"id": f"u{i}", "split": "test" if i % 2 else "valid", "normalized": s} for i, s in enumerate(SENTENCES)]
    rows.append({"id": "t0", "split": "train", "normalized": "training text is not used."})
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "labels.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    out = evaluate_fdsd(str(gan_bundle(tmp_path)), str(tmp_path / "corpus"), str(ds2_bundle(tmp_path)))
    assert out["sentences"] == 10 and out["set_size"] == 5
    for key in ("fdsd", "kdsd", "cfdsd", "ckdsd"):
        assert np.isfinite(out[key])
    # an untrained generator makes noise: farther from real speech than real speech is from itself
    assert out["fdsd"] > out["floor_real_vs_real"]["fdsd"]
    assert out["recognizer"]["model_type"] == "deepspeech2"
    assert out["wer_pocketsphinx"]["generated"] >= 0 and out["wer_ds2"]["real"] >= 0
