"""The GAN-TTS runtime: text -> espeak-ng/MBROLA prosody -> features -> ONNX generator."""
import numpy as np
import pytest
import torch

from models.bundle import save_bundle
from models.config import config_to_dict
from models.gan_tts import GanTTSConfig, GanTTSGenerator, GanTTSSynthesizer, export_onnx
from models.inference import load_runtime
from models.text import FrontendConfig, mbrola_voice_path, pho_symbols

try:
    mbrola_voice_path("mb-us1")
    HAVE_MBROLA = True
except RuntimeError:
    HAVE_MBROLA = False

VOICES = ["mb-us1", "mb-us2"]


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    n_in = len(pho_symbols()) + 4 + len(VOICES)
    config = GanTTSConfig(in_channels=n_in, noise_dim=4, n_speakers=2, speaker_dim=2, channels=(8, 8, 6, 6, 4, 4, 4))
    torch.manual_seed(0)
    model = GanTTSGenerator(config).eval()
    out = tmp_path_factory.mktemp("gan")
    onnx_file = export_onnx(model, out / "g.onnx")
    front = {"voices": VOICES, "prosody_voices": {v: v for v in VOICES}, "symbols": pho_symbols().to_dict(),
             "frontend": FrontendConfig().to_dict()}
    return save_bundle(out / "bundle", model_type="gan-tts", task="tts", model_config=config_to_dict(config),
                       tensors=dict(model.state_dict()), frontend_config=front,
                       inference_defaults={"seed": 0, "noise_scale": 1.0, "engine": "onnx"},
                       assets={"model.onnx": onnx_file})


@pytest.mark.skipif(not HAVE_MBROLA, reason="needs espeak-ng and the MBROLA voice us1")
def test_synthesize_from_text_with_both_engines(bundle_dir):
    bundle, synth = load_runtime(bundle_dir)
    assert isinstance(synth, GanTTSSynthesizer) and synth.voices == VOICES and synth.sample_rate == 16000
    feats = synth.features("Hello world.", "mb-us1")
    assert feats.shape[0] == len(pho_symbols()) + 6
    audio = np.concatenate(list(synth.synthesize("Hello world.", voice="mb-us1")))
    assert audio.dtype == np.float32 and len(audio) == feats.shape[1] * 80
    torch_synth = GanTTSSynthesizer(bundle, engine="torch")
    np.testing.assert_allclose(np.concatenate(list(torch_synth.synthesize("Hello world.", voice="mb-us1"))), audio,
                               atol=1e-5)
    slow = synth.features("Hello world.", "mb-us1", speed=0.5)
    assert slow.shape[1] == pytest.approx(2 * feats.shape[1], rel=0.05)
    with pytest.raises(ValueError, match="unknown voice"):
        synth.features("Hello.", "nobody")
