"""The GAN-TTS runtime: text -> espeak-ng/MBROLA prosody -> features -> ONNX generator."""
import numpy as np
import pytest
import torch

from models.bundle import load_bundle, save_bundle
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


@pytest.mark.parametrize("sample_rate, upsample", [(16000, (1, 1, 2, 2, 2, 2, 5)), (24000, (1, 1, 2, 2, 2, 3, 5))])
def test_lookahead_frames_is_the_generator_reach(sample_rate, upsample):
    """Audio of frames < T is the same whatever follows frame T + lookahead; a change half as
    far does reach it (the bound is not loose)."""
    config = GanTTSConfig(sample_rate=sample_rate, upsample=upsample, in_channels=6, noise_dim=4, n_speakers=0,
                          channels=(8, 8, 6, 6, 4, 4, 4))
    torch.manual_seed(0)
    model, look, t = GanTTSGenerator(config).eval(), config.lookahead_frames, 20
    base = torch.randn(1, 6, t + look + 10)
    noise = torch.randn(1, 4)
    with torch.no_grad():
        ref = model(base, noise)[0, :t * config.hop_length]
        far, near = base.clone(), base.clone()
        far[..., t + look:] = 5.0
        near[..., t + look // 2:] = 5.0
        assert torch.equal(model(far, noise)[0, :t * config.hop_length], ref)
        assert not torch.equal(model(near, noise)[0, :t * config.hop_length], ref)


@pytest.mark.skipif(not HAVE_MBROLA, reason="needs espeak-ng and the MBROLA voice us1")
@pytest.mark.parametrize("engine", ["onnx", "torch"])
def test_synthesize_batch_equals_one_at_a_time(bundle_dir, engine):
    synth = GanTTSSynthesizer(load_bundle(bundle_dir), engine=engine)
    requests = [("Hello world.", "mb-us1", 1.0), ("A much longer sentence than the others, by far.", "mb-us2", 1.0),
                ("Yes.", None, 1.3), ("Good morning to you.", "mb-us2", 0.8)]
    batched = synth.synthesize_batch(requests)
    tail = synth.config.lookahead_frames * synth.config.hop_length  # alone, conv padding stands in there
    for (text, voice, speed), audio in zip(requests, batched):
        alone = np.concatenate(list(synth.synthesize(text, voice, speed)))
        assert audio.dtype == np.float32 and len(audio) == len(alone) > tail
        np.testing.assert_allclose(audio[:-tail], alone[:-tail], atol=1e-5)  # float order: < 1/3 LSB of 16-bit
