"""EATS model: aligner lengths and interpolation, whole-utterance inference, ONNX, timings."""
import numpy as np
import pytest
import torch

from models.eats import (EATS, EATSConfig, MelDiscriminator, MelDiscriminatorConfig, export_onnx, interpolate,
                         run_onnx, spoken_words, timings)
from models.gan_tts import GanTTSGenerator, onnx_session


def tiny_config(**kw) -> EATSConfig:
    base = dict(n_speakers=2, token_dim=8, aligner_channels=8, dilations=(1, 2), aligned_channels=6, noise_dim=4,
                speaker_dim=2, channels=(8, 8, 6, 6, 4, 4, 4), init_length=3.0)
    return EATSConfig(**{**base, **kw})


def test_decoder_is_the_gan_tts_generator():
    model = EATS(tiny_config())
    assert isinstance(model.decoder, GanTTSGenerator)
    assert model.decoder.config.in_channels == 6 and model.decoder.config.hop_length == 80


def test_aligner_lengths_sum_to_the_output_length():
    torch.manual_seed(0)
    model = EATS(tiny_config()).eval()
    tokens = torch.randint(4, 82, (1, 9))
    for speed in (1.0, 0.5, 2.0):
        with torch.no_grad():
            audio, lengths = model.infer(tokens, torch.randn(1, 4), torch.tensor([1]), torch.tensor([speed]))
        assert lengths.shape == (1, 9) and bool((lengths >= 0).all())
        total = float(lengths.sum())
        assert audio.shape[1] == int(np.ceil(total)) * 80
    with torch.no_grad():
        slow = model.infer(tokens, torch.zeros(1, 4), torch.tensor([1]), torch.tensor([0.5]))[1].sum()
        fast = model.infer(tokens, torch.zeros(1, 4), torch.tensor([1]), torch.tensor([1.0]))[1].sum()
    assert float(slow) == pytest.approx(2 * float(fast), rel=1e-5)


def test_padding_gets_no_length_and_does_not_change_the_others():
    torch.manual_seed(1)
    model = EATS(tiny_config()).eval()
    short = torch.randint(4, 82, (1, 5))
    padded = torch.cat([torch.cat([short, torch.zeros(1, 4, dtype=torch.long)], 1), torch.randint(4, 82, (1, 9))])
    noise = torch.randn(1, 4).repeat(2, 1)
    with torch.no_grad():
        _, alone = model.align(short, noise[:1], torch.tensor([0]))[:2]
        _, batched, mask, _ = model.align(padded, noise, torch.tensor([0, 0]))
    assert torch.all(batched[0, 5:] == 0) and not mask[0, 5:].any()
    torch.testing.assert_close(batched[0, :5], alone[0], rtol=1e-5, atol=1e-5)


def test_interpolation_follows_the_token_centres():
    feats = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]])  # one-hot tokens
    lengths = torch.tensor([[10.0, 20.0, 10.0]])
    mask = torch.ones(1, 3, dtype=torch.bool)
    out = interpolate(feats, lengths, mask, torch.arange(40) + 0.5, sigma2=10.0)
    assert out.shape == (1, 3, 40)
    # centres 5, 20, 35: each frame is mostly the token whose centre is nearest
    nearest = (torch.arange(40)[:, None] + 0.5 - torch.tensor([5.0, 20.0, 35.0])).abs().argmin(1)
    assert torch.equal(out[0].argmax(0), nearest)
    assert out[0, 1, 20] > 0.99 and out[0, 0, 0] > 0.99
    torch.testing.assert_close(out.sum(1), torch.ones(1, 40))  # a convex mix of token features


def test_training_window_matches_the_whole_utterance_inside():
    torch.manual_seed(2)
    model = EATS(tiny_config()).eval()
    tokens, noise, speaker = torch.randint(4, 82, (1, 8)), torch.randn(1, 4), torch.tensor([1])
    with torch.no_grad():
        feats, lengths, mask, _ = model.align(tokens, noise, speaker)
        whole = interpolate(feats, lengths, mask, torch.arange(24) + 0.5, model.config.sigma2)
        window = interpolate(feats, lengths, mask, torch.tensor([[10.0]]) + torch.arange(8) + 0.5,
                             model.config.sigma2)
        audio, win_lengths = model(tokens, noise, speaker, torch.tensor([10]), 8)
    torch.testing.assert_close(window, whole[:, :, 10:18])
    assert audio.shape == (1, 8 * 80)
    torch.testing.assert_close(win_lengths, lengths)


def test_onnx_matches_torch(tmp_path):
    torch.manual_seed(3)
    model = EATS(tiny_config()).eval()
    session = onnx_session(export_onnx(model, tmp_path / "eats.onnx"), threads=2, spinning=False)
    assert not model.training  # export leaves the model in eval mode
    for n_tokens, speed in ((12, 1.0), (30, 0.7)):
        tokens, noise = torch.randint(4, 82, (1, n_tokens)), torch.randn(1, 4)
        got_audio, got_lengths = run_onnx(session, tokens.numpy(), noise.numpy(), np.array([1]),
                                          np.array([speed], np.float32))
        with torch.no_grad():
            audio, lengths = model.infer(tokens, noise, torch.tensor([1]), torch.tensor([speed]))
        assert got_audio.shape == tuple(audio.shape)
        np.testing.assert_allclose(got_lengths, lengths.numpy(), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(got_audio, audio.numpy(), atol=1e-4)


def test_mel_discriminator_scores_each_window():
    disc = MelDiscriminator(MelDiscriminatorConfig(channels=4, layers=3))
    scores = disc(torch.randn(3, 16000) * 0.1)
    assert scores.shape == (3,) and torch.isfinite(scores).all()


def test_timings_group_phonemes_and_words():
    tokens = list("həlˈoʊ wˈɜːld,") + [" "] + list("ðɪs.")
    lengths = np.full(len(tokens), 2.0)  # 10 ms each
    items = timings(tokens, lengths, spoken_words("Hello world, this."))
    words = [t for t in items if t.kind == "word"]
    phones = [t for t in items if t.kind == "phoneme"]
    assert [w.text for w in words] == ["Hello", "world", "this"]
    assert [p.text for p in phones][:5] == ["h", "ə", "l", "ˈo", "ʊ"] and "ˈɜː" in [p.text for p in phones]
    assert words[0].start_s == 0.0 and words[0].end_s == pytest.approx(0.06)
    assert words[1].start_s == pytest.approx(0.07)  # after the word space
    assert all(a.end_s <= b.start_s + 1e-9 for a, b in zip(phones, phones[1:]))
    assert words[-1].end_s == pytest.approx(0.18)  # the final "." (token 19) is a pause, not part of a word
    # espeak-ng may fuse words: then the IPA names them
    fused = timings(list("ʌvðə"), np.ones(4), ["of", "the"])
    assert [t.text for t in fused if t.kind == "word"] == ["ʌvðə"]
