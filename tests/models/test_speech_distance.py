"""FDSD/KDSD: zero against itself, growing with noise, KDSD unbiased."""
import numpy as np
import pytest
import torch

from models.speech_distance import (features, frechet_distance, kernel_distance, kernel_distance_splits, real_floor,
                                    speech_distances)


def spectral_features(audio: np.ndarray) -> np.ndarray:
    """A small real feature map: time-averaged log power in 32 bands."""
    spec = torch.stft(torch.from_numpy(audio), 256, hop_length=128, window=torch.hann_window(256),
                      return_complex=True).abs() ** 2
    bands = spec[:128].reshape(32, 4, -1).sum(1)
    return torch.log(bands + 1e-6).mean(-1).numpy()


def tones(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(4000) / 16000
    return [(0.5 * np.sin(2 * np.pi * rng.uniform(100, 400) * t) * rng.uniform(0.5, 1)).astype(np.float32)
            for _ in range(n)]


def test_fdsd_of_a_set_against_itself_is_zero_and_grows_with_noise():
    clean = tones(60, 0)
    x = features(clean, spectral_features)
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)
    values = []
    for level in (0.001, 0.01, 0.1):
        noisy = [a + level * np.random.default_rng(i).standard_normal(a.shape).astype(np.float32)
                 for i, a in enumerate(clean)]
        values.append(frechet_distance(x, features(noisy, spectral_features)))
    assert values[0] < values[1] < values[2]
    assert values[0] > 0


def test_frechet_matches_the_closed_form_for_gaussians():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((20000, 3)), 2.0 * rng.standard_normal((20000, 3)) + 1.0
    # |mu|^2 = 3; Tr(I + 4I - 2 * 2I) = 3
    assert frechet_distance(x, y) == pytest.approx(6.0, rel=0.05)


def test_kdsd_is_unbiased_for_equal_distributions():
    rng = np.random.default_rng(2)
    values = [kernel_distance(rng.standard_normal((30, 8)), rng.standard_normal((30, 8))) for _ in range(300)]
    mean, sem = np.mean(values), np.std(values) / np.sqrt(len(values))
    assert abs(mean) < 3 * sem
    # the biased estimate (diagonal kept) would sit well above zero
    x, y = rng.standard_normal((30, 8)), rng.standard_normal((30, 8))
    k = lambda a, b: (a @ b.T / 8 + 1) ** 3  # noqa: E731
    biased = k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean()
    assert biased > 3 * sem + abs(mean)


def test_kdsd_separates_different_distributions_and_splits():
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((200, 8)), rng.standard_normal((200, 8)) + 0.5
    mean, std = kernel_distance_splits(x, y, n_splits=5, subset=100)
    assert mean > 5 * std > 0
    same, _ = kernel_distance_splits(x, rng.standard_normal((200, 8)), n_splits=5, subset=100)
    assert same < mean / 10


def test_all_four_and_the_floor():
    gen, same, other = (features(tones(24, s), spectral_features) for s in (4, 5, 6))
    out = speech_distances(gen, same, other)
    assert set(out) == {"fdsd", "kdsd", "cfdsd", "ckdsd"}
    assert out["cfdsd"] == pytest.approx(frechet_distance(gen, same))
    floor = real_floor(np.concatenate([same, other]))
    assert set(floor) == {"fdsd", "kdsd"} and floor["fdsd"] >= 0
    with pytest.raises(ValueError):
        frechet_distance(gen[:1], same)
