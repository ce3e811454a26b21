"""Deep Speech 2: shapes, CTC decoding on known answers, timings, streaming, ONNX."""
import math
import warnings

import numpy as np
import pytest
import torch

from models.deepspeech2 import DeepSpeech2, DeepSpeech2Config
from models.deepspeech2.decode import BeamConfig, beam_search, greedy_labels, labels_to_text, word_timings
from models.deepspeech2.features import LogMel, asr_feature_config
from models.deepspeech2.runtime import DeepSpeech2Transcriber, export_onnx
from models.deepspeech2.text import BLANK, N_CLASSES, encode, normalize_transcript
from models.ngram import NGramLM


def tiny_config(**overrides) -> DeepSpeech2Config:
    base = dict(n_mels=16, conv_channels=(4, 4), conv_kernels=((5, 7), (5, 5)), conv_strides=((2, 2), (1, 1)),
                rnn_layers=2, rnn_hidden=24, dense_size=32)
    return DeepSpeech2Config(**{**base, **overrides})


def settled(model: DeepSpeech2) -> DeepSpeech2:
    """Batch-norm statistics from one training pass, then eval mode."""
    torch.manual_seed(1)
    with torch.no_grad():
        model.train()
        model(torch.randn(4, 80, model.config.n_mels) * 2 - 3, torch.tensor([80, 70, 50, 40]))
    return model.eval()


def peaky(labels_per_frame: list[int], sharpness: float = 8.0, seed: int = 0) -> np.ndarray:
    """(T, C) log-probs whose argmax per frame is the given label."""
    g = np.random.default_rng(seed)
    logits = g.standard_normal((len(labels_per_frame), N_CLASSES))
    logits[np.arange(len(labels_per_frame)), labels_per_frame] += sharpness
    return torch.log_softmax(torch.tensor(logits), -1).numpy()


def frames_for(text: str, repeat: int = 2) -> list[int]:
    """A frame-level CTC path spelling `text`: each char held `repeat` frames, blanks between."""
    path = [BLANK, BLANK]
    for c in encode(text):
        path += [c] * repeat + [BLANK]
    return path + [BLANK]


@pytest.mark.parametrize("overrides", [{}, {"bidirectional": False, "lookahead": 3},
                                       {"frontend": "dense", "rnn_layers": 1, "rnn_type": "rnn", "context": 3}])
def test_shapes_and_batch_matches_single(overrides):
    model = settled(DeepSpeech2(tiny_config(**overrides)))
    feats, lengths = torch.randn(3, 41, 16), torch.tensor([41, 30, 9])
    logits, out_lengths = model(feats, lengths)
    assert logits.shape == (3, 21, N_CLASSES)
    assert out_lengths.tolist() == [21, 15, 5]
    alone, _ = model(feats[1:2, :30], lengths[1:2])
    assert torch.allclose(logits[1, :15], alone[0], atol=1e-5)


def test_conv_frontend_pads_frequency_like_a_padded_convolution():
    # the frontend pads with F.pad, not the conv's own padding (a slow oneDNN path on AVX2 CPUs)
    from torch.nn import functional as F

    front = DeepSpeech2(tiny_config()).frontend
    x = torch.randn(2, 40, 16)
    y = F.pad(x, (0, 0, front.pad_left, front.pad_right)).unsqueeze(1)
    for conv in front.convs:
        y = torch.clamp(F.conv2d(y, conv.weight, conv.bias, conv.stride, (0, conv.kernel_size[1] // 2)), 0, front.clip)
    b, c, t, f = y.shape
    with torch.no_grad():
        torch.testing.assert_close(front(x), y.permute(0, 2, 1, 3).reshape(b, t, c * f), atol=1e-5, rtol=1e-5)
    assert front.out_size == c * f


def test_ctc_loss_known_answer():
    # Uniform outputs over C classes, T=2 frames, target "a": paths a-, -a, aa.
    c = N_CLASSES
    log_probs = torch.full((2, 1, c), -math.log(c))
    loss = torch.nn.functional.ctc_loss(log_probs, torch.tensor([[encode("a")[0]]]), torch.tensor([2]),
                                        torch.tensor([1]), blank=BLANK, reduction="sum")
    assert loss.item() == pytest.approx(-math.log(3 / c ** 2), rel=1e-5)


def test_text_normalization():
    assert normalize_transcript("It's 4 o'clock -- \"Hello\", World!") == "it's four o'clock hello world"
    assert labels_to_text(encode("a  b")) == "a b"


def test_greedy_decodes_a_known_path():
    assert labels_to_text(greedy_labels(peaky(frames_for("hello world")))) == "hello world"


def test_beam_of_one_without_lm_is_greedy():
    for seed in range(5):
        g = np.random.default_rng(seed)
        path = [int(x) for x in g.integers(0, N_CLASSES, 60)]
        lp = peaky(path, sharpness=6.0, seed=seed)
        beam = beam_search(lp, None, BeamConfig(beam_size=1, lm_weight=0.0, word_bonus=0.0))
        assert labels_to_text(beam) == labels_to_text(greedy_labels(lp))


def _tiny_lm(tmp_path) -> NGramLM:
    from training.lm import build_kneser_ney, write_arpa

    sentences = ["the cat sat on the mat", "a cat sat", "the cat ran", "the dog sat on a log"] * 3
    return NGramLM.from_arpa(write_arpa(build_kneser_ney(sentences, min_counts=(1, 1, 1)), tmp_path / "lm.arpa"))


def test_lm_turns_an_ambiguous_word(tmp_path):
    lm = _tiny_lm(tmp_path)
    lp = peaky(frames_for("the bat sat"))
    b, c = encode("b")[0], encode("c")[0]
    t = 2 + 3 * 4  # the first frames of "bat" (after "the ")
    lp[t:t + 2, :] = np.log(1e-4)
    lp[t:t + 2, b], lp[t:t + 2, c] = np.log(0.55), np.log(0.45)
    assert labels_to_text(beam_search(lp, lm, BeamConfig(lm_weight=0.0, word_bonus=0.0))) == "the bat sat"
    assert labels_to_text(beam_search(lp, lm, BeamConfig(lm_weight=1.0, word_bonus=0.0))) == "the cat sat"


def test_lm_probabilities_sum_to_one(tmp_path):
    lm = _tiny_lm(tmp_path)
    for state in [("<s>",), ("the",), ("the", "cat"), ("zebra",)]:
        total = sum(math.exp(lm.score(state, w)[0]) for w in lm.vocab if w != "<s>")
        assert total == pytest.approx(1.0, abs=1e-4)


def test_word_timings_inside_audio_and_in_order():
    lp = peaky(frames_for("one two three", repeat=3))
    labels = greedy_labels(lp)
    duration = len(lp) * 0.02
    words = word_timings(lp, labels, 0.02, duration)
    assert [w.word for w in words] == ["one", "two", "three"]
    for w in words:
        assert 0.0 <= w.start_s < w.end_s <= duration
        assert 0.5 < w.confidence <= 1.0
    assert all(a.end_s <= b.start_s for a, b in zip(words, words[1:]))


def test_streaming_matches_whole_file():
    model = settled(DeepSpeech2(tiny_config(bidirectional=False, lookahead=2)))
    features = asr_feature_config(n_mels=16)
    transcriber = DeepSpeech2Transcriber(model, features, decoder="greedy")
    assert transcriber.can_stream
    audio = (np.random.default_rng(0).standard_normal(9876) * 0.1).astype(np.float32)
    whole = transcriber.transcribe_batch([audio])[0]
    stream = transcriber.stream()
    for i in range(0, len(audio), 777):
        assert isinstance(stream.feed(audio[i:i + 777]), str)
    final = stream.finish()
    np.testing.assert_allclose(stream.log_probs(), transcriber.log_probs([audio])[0], atol=1e-5)
    assert final.text == whole.text and final.duration_s == whole.duration_s


@pytest.mark.parametrize("engine", ["torch", "native"])
def test_a_batch_on_worker_threads_gives_each_utterance_its_own_transcript(engine):
    model = settled(DeepSpeech2(tiny_config()))
    transcriber = DeepSpeech2Transcriber(model, asr_feature_config(n_mels=16), decoder="greedy", threads=2,
                                         engine=engine)
    g = np.random.default_rng(1)
    audio = [(g.standard_normal(n) * 0.1).astype(np.float32) for n in (4000, 9000, 2500, 7000, 5100)]
    batch = transcriber.transcribe_batch(audio)
    alone = [transcriber.transcribe(a) for a in audio]
    assert [t.duration_s for t in batch] == [len(a) / 16000 for a in audio]  # in the order given
    assert [(t.text, t.words) for t in batch] == [(t.text, t.words) for t in alone]
    # the native engine batches the recurrences: every utterance's log-probs bit for bit as alone
    for together, a in zip(transcriber.log_probs(audio), audio):
        assert np.array_equal(together, transcriber.group_log_probs([a])[0])
    assert not transcriber.can_stream
    with pytest.raises(ValueError, match="unidirectional"):
        transcriber.stream()


@pytest.mark.parametrize("overrides", [{}, {"bidirectional": False, "lookahead": 2}])
def test_native_engine_matches_eager(overrides):
    model = settled(DeepSpeech2(tiny_config(**overrides)))  # hidden 24: padded kernel columns, a gate tail
    native = DeepSpeech2Transcriber(model, asr_feature_config(n_mels=16), decoder="greedy", engine="native")
    assert native.engine == "native"
    eager = DeepSpeech2Transcriber(model, asr_feature_config(n_mels=16), decoder="greedy", engine="torch")
    g = np.random.default_rng(2)
    audio = [(g.standard_normal(n) * 0.1).astype(np.float32) for n in (5000, 1200, 8000)]
    for got, want in zip(native.log_probs(audio), eager.log_probs(audio)):
        np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("flags", [("-mno-avx512f",), ("-mno-avx512f", "-mno-avx2", "-mno-fma")])
def test_gru_kernel_on_narrower_vectors(flags):
    from models.deepspeech2.recurrent import GRUStack, gru_library

    lib = gru_library(flags)
    if lib is None:
        pytest.skip("no C compiler")
    model = settled(DeepSpeech2(tiny_config()))
    frames = [torch.randn(n, model.frontend.out_size).numpy() for n in (30, 7, 19)]
    h = torch.from_numpy(frames[0])[None]
    for i in range(len(model.rnns)):
        with torch.no_grad():
            h, _ = model.rnn_layer(i, h, torch.tensor([30]), torch.ones(1, 30, dtype=torch.bool))
    np.testing.assert_allclose(GRUStack(model, lib)(frames)[0], h[0].numpy(), atol=1e-5)


def test_native_engine_falls_back_for_plain_rnn_layers():
    model = settled(DeepSpeech2(tiny_config(rnn_type="rnn")))
    features = asr_feature_config(n_mels=16)
    assert DeepSpeech2Transcriber(model, features, decoder="greedy", engine="native").engine == "torch"
    with pytest.raises(ValueError, match="engine"):
        DeepSpeech2Transcriber(model, features, decoder="greedy", engine="tpu")


def test_logmel_streaming_frames_match_the_shared_log_mel():
    logmel = LogMel(asr_feature_config(n_mels=16))
    audio = torch.randn(1, 3210)
    full = logmel(audio)
    assert full.shape == (1, 1 + 3210 // 160, 16)
    buffer = torch.nn.functional.pad(audio, (200, 0))  # the n_fft // 2 zeros of centring
    assert torch.allclose(logmel.frames_valid(buffer), full[:, : 1 + (3410 - 400) // 160], atol=1e-4)
    assert torch.allclose(logmel(audio[:, :1600])[0, :8], full[0, :8], atol=1e-4)


def test_onnx_matches_eager(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    for overrides in ({}, {"bidirectional": False, "lookahead": 2}):
        model = settled(DeepSpeech2(tiny_config(**overrides)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            path = export_onnx(model, tmp_path / "m.onnx")
        assert not model.training
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        feats, lengths = torch.randn(3, 57, 16), torch.tensor([57, 40, 12])
        eager, eager_lengths = model.infer(feats, lengths)
        got, got_lengths = session.run(None, {"features": feats.numpy(), "lengths": lengths.numpy()})
        assert got_lengths.tolist() == eager_lengths.tolist()
        for i, n in enumerate(eager_lengths.tolist()):
            np.testing.assert_allclose(got[i, :n], eager[i, :n].numpy(), atol=1e-4)


def test_flashlight_decoder_reads_the_same_lm(tmp_path):
    pytest.importorskip("flashlight.lib.text")
    lm = _tiny_lm(tmp_path)
    model = settled(DeepSpeech2(tiny_config()))
    transcriber = DeepSpeech2Transcriber(model, asr_feature_config(n_mels=16), lm=lm, decoder="flashlight",
                                         lm_path=tmp_path / "lm.arpa", beam=BeamConfig(lm_weight=0.5, word_bonus=0.0))
    lp = peaky(frames_for("the cat sat on the mat"))
    assert transcriber.flashlight_texts([lp]) == ["the cat sat on the mat"]
    result = transcriber.decode(lp, len(lp) * 0.02)
    assert result.text == "the cat sat on the mat" and len(result.words) == 6


def test_word_timings_only_for_the_utterances_that_ask():
    model = settled(DeepSpeech2(tiny_config()))
    transcriber = DeepSpeech2Transcriber(model, asr_feature_config(n_mels=16), decoder="greedy", threads=2)
    g = np.random.default_rng(1)
    audio = [(g.standard_normal(n) * 0.1).astype(np.float32) for n in (4000, 9000, 2500, 7000, 5100)]
    full = transcriber.transcribe_batch(audio)
    assert all(t.words for t in full)  # the untrained model still says something: timings to compare
    flags = [True, False, True, False, False]
    mixed = transcriber.transcribe_batch(audio, words=flags)
    assert [t.text for t in mixed] == [t.text for t in full]
    assert [t.words for t in mixed] == [t.words if f else [] for t, f in zip(full, flags)]
    assert all(t.words == [] for t in transcriber.transcribe_batch(audio, words=False))
    with pytest.raises(ValueError, match="2 flags for 5"):
        transcriber.transcribe_batch(audio, words=[True, False])
