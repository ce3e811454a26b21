import numpy as np
import pytest
import torch

from models.audio import AudioError, read_audio, resample, write_audio, encode_audio
from models.features import (FeatureConfig, join_coarse_fine, log_mel, mu_law_decode, mu_law_encode, piano_config,
                             split_coarse_fine)


def _signal(sample_rate, seconds=1.0, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    # noise keeps every mel bin well above the log floor, where float32 error is relative
    return (0.3 * np.sin(2 * np.pi * 440 * t) + 0.1 * rng.standard_normal(t.size)).astype(np.float32)


def test_log_mel_matches_librosa():
    librosa = pytest.importorskip("librosa")
    speech = FeatureConfig(sample_rate=16000, n_fft=1024, hop_length=200, win_length=800, n_mels=80, f_min=20.0,
                           f_max=7600.0)
    for cfg in (speech, piano_config()):
        x = _signal(cfg.sample_rate, 0.7)
        ref = librosa.feature.melspectrogram(y=x, sr=cfg.sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length,
                                             win_length=cfg.win_length, n_mels=cfg.n_mels, fmin=cfg.f_min,
                                             fmax=cfg.f_max, htk=cfg.mel_scale == "htk", center=True,
                                             pad_mode="constant", power=2.0)
        ref = np.log(np.maximum(ref, cfg.log_floor))
        ours = log_mel(torch.from_numpy(x), cfg).numpy()
        assert ours.shape == ref.shape == (cfg.n_mels, cfg.n_frames(len(x)))
        assert np.abs(ours - ref).max() < 1e-4


def test_log_mel_batch_shape_and_config_round_trip():
    cfg = piano_config()
    assert cfg.n_mels == 229 and cfg.n_fft == 2048 and cfg.hop_length == 512
    x = torch.from_numpy(np.stack([_signal(16000, 0.5, s) for s in range(3)]))
    out = log_mel(x, cfg)
    assert out.shape == (3, 229, 1 + 8000 // 512)
    assert torch.allclose(out[1], log_mel(x[1], cfg))
    assert FeatureConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError):
        FeatureConfig.from_dict({"sample_rate": 16000, "bogus": 1})


def test_mu_law_matches_torchaudio_and_round_trips():
    import torchaudio.functional as AF
    x = torch.linspace(-1, 1, 1001)
    codes = mu_law_encode(x)
    assert torch.equal(codes, AF.mu_law_encoding(x, 256))
    assert codes.min() == 0 and codes.max() == 255
    assert torch.allclose(mu_law_decode(codes), AF.mu_law_decoding(codes, 256), atol=1e-6)
    assert (mu_law_decode(codes) - x).abs().max() < 0.04


def test_coarse_fine_split_and_join():
    x = torch.tensor([-1.0, -0.5, 0.0, 1 / 32768, 0.25, 0.999969])
    coarse, fine = split_coarse_fine(x)
    assert coarse.tolist()[:3] == [0, 64, 128] and fine.tolist()[:4] == [0, 0, 0, 1]
    assert int(coarse.max()) <= 255 and int(fine.max()) <= 255
    assert torch.allclose(join_coarse_fine(coarse, fine), x, atol=1 / 32768)
    u = torch.arange(0, 65536)
    c, f = u // 256, u % 256
    c2, f2 = split_coarse_fine(join_coarse_fine(c, f))
    assert torch.equal(c, c2) and torch.equal(f, f2)


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".ogg"])
def test_audio_round_trip(tmp_path, suffix):
    x = _signal(16000, 0.5)
    stereo = np.stack([x, -x])
    path = write_audio(tmp_path / f"a{suffix}", stereo, 16000)
    audio, sr = read_audio(path, mono=False)
    assert sr == 16000 and audio.dtype == np.float32 and audio.shape[0] == 2
    if suffix != ".ogg":
        assert audio.shape == stereo.shape and np.abs(audio - stereo).max() < 1e-4
    mono, _ = read_audio(path)
    assert mono.ndim == 1 and len(mono) == audio.shape[1]
    if suffix != ".ogg":  # vorbis is lossy
        assert np.abs(mono).max() < 1e-3  # x and -x cancel
    data, sr2 = read_audio(encode_audio(x, 16000, "flac"))
    assert sr2 == 16000 and np.abs(data - x).max() < 1e-4


def test_audio_errors(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all")
    with pytest.raises(AudioError, match="cannot decode"):
        read_audio(bad)
    with pytest.raises(AudioError, match="cannot read"):
        read_audio(tmp_path / "missing.wav")
    write_audio(tmp_path / "empty.wav", np.zeros(10, np.float32), 16000)
    import soundfile as sf
    sf.write(tmp_path / "empty.wav", np.zeros((0,), np.float32), 16000)
    with pytest.raises(AudioError, match="empty"):
        read_audio(tmp_path / "empty.wav")
    sf.write(tmp_path / "nan.wav", np.array([0.0, np.nan, 0.1], np.float32), 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN"):
        read_audio(tmp_path / "nan.wav")
    with pytest.raises(AudioError):
        write_audio(tmp_path / "x.xyz", np.zeros(10), 16000)
    assert issubclass(AudioError, ValueError)


def test_resample_lengths_and_layout():
    x = _signal(22050, 1.0)
    y = resample(x, 22050, 16000)
    assert y.dtype == np.float32 and abs(len(y) - 16000) <= 1
    multi = resample(np.stack([x, x]), 22050, 16000)
    assert multi.shape == (2, len(y)) and np.allclose(multi[0], y, atol=1e-6)
    assert resample(x, 16000, 16000) is x or np.array_equal(resample(x, 16000, 16000), x)
