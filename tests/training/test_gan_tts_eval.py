"""`sparsewave eval fdsd`: the four distances, the floor and WERs, end to end on real tools, with
both references (MBROLA renders of exact labels; the corpus's own recordings)."""
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
from models.audio import write_audio
from training.data.voices import BY_NAME, synthesize
from training.objectives.tts_eval import evaluate_fdsd

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


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_MBROLA, reason="needs espeak-ng and the MBROLA voice us1")
def test_eval_fdsd_against_the_corpus_recordings(tmp_path):
    """Any TTS bundle against the held-out rows' own audio (here espeak-ng renders at 22 kHz,
    resampled to the model's 16 kHz)."""
    corpus = tmp_path / "corpus"
    (corpus / "wavs").mkdir(parents=True)
    rows = []
    for i, text in enumerate(SENTENCES):
        audio, sr, _ = synthesize(BY_NAME["espeak-en-us"], text, tmp_path / "work")
        write_audio(corpus / "wavs" / f"u{i}.wav", audio, sr)
        rows.append({"id": f"u{i}", "split": "test", "normalized": text})
    (corpus / "labels.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    out = evaluate_fdsd(str(gan_bundle(tmp_path)), str(corpus), str(ds2_bundle(tmp_path)), reference="corpus")
    assert out["reference"] == "corpus" and out["model_type"] == "gan-tts" and out["sentences"] == 10
    for key in ("fdsd", "kdsd", "cfdsd", "ckdsd"):
        assert np.isfinite(out[key])
    assert out["fdsd"] > out["floor_real_vs_real"]["fdsd"]
    assert out["wer_pocketsphinx"]["real"] < out["wer_pocketsphinx"]["generated"]
    with pytest.raises(ValueError, match="reference"):
        evaluate_fdsd(str(tmp_path / "gan"), str(corpus), str(tmp_path / "ds2"), reference="x")
