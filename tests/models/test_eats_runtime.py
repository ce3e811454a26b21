"""The EATS runtime: a pruned EATS exported packed and run on kernels/conv.py (GAN-TTS's
packed_runtime), and batched synthesis (`synthesize_batch`) against one request at a time."""
import dataclasses

import numpy as np
import pytest
import torch
from tiny_service_models import tiny_eats

from kernels.sparse_layers import SparseConv1d
from models.bundle import load_bundle
from models.eats import EATSSynthesizer
from models.registry import model_from_bundle
from models.text import FrontendError, text_to_ipa
from training.objectives.eats import EATSRunConfig

try:
    text_to_ipa("hello")
    HAVE_ESPEAK = True
except FrontendError:
    HAVE_ESPEAK = False


@pytest.fixture(scope="module")
def sparse(tmp_path_factory):
    """(sparsifier, pruned torch model, its exported bundle): the decoder's convolutions at 75% zeros."""
    directory = tmp_path_factory.mktemp("eats-sparse")
    sparsity = dataclasses.replace(EATSRunConfig().sparsity, method="gmp", target=0.75, start_step=0,
                                   end_step=1, min_size=64)
    torch.manual_seed(0)
    objective, modules = tiny_eats(directory, sparsity, channels=(8, 8, 8, 8, 4, 4, 4))
    objective.after_step(modules, 1)  # prune to the target
    path = objective.export(modules, str(directory / "bundle"), {"test": True}, "0+test")
    return objective.sparsifier, modules["model"].eval(), load_bundle(path)


def test_sparse_bundle_is_packed_and_keeps_the_masks(sparse):
    sparsifier, _, bundle = sparse
    assert bundle.onnx_path is None and bundle.manifest["inference_defaults"]["engine"] == "torch"
    packed = bundle.manifest["sparsity"]["packed"]
    assert packed and all(name.startswith("decoder.") for name in packed)
    model = model_from_bundle(bundle)
    assert len(sparsifier.masks) == len(packed) > 10
    for name, mask in sparsifier.masks.items():
        layer = model.get_submodule(name.removesuffix(".weight"))
        assert isinstance(layer, SparseConv1d)
        weight = layer.packed.to_dense()[:, :mask.shape[1]]
        assert torch.equal(weight != 0, mask) and 0.7 < 1 - mask.float().mean() < 0.8


def test_packed_runtime_matches_the_masked_torch_model(sparse):
    _, model, bundle = sparse
    synth = EATSSynthesizer(bundle)  # the bundle's engine: torch, decoder packed
    assert synth.model.decoder._packed
    tokens = [[5, 9, 12, 30, 7, 44, 3, 19], [8, 61, 22, 4]]
    for ids, speaker, speed in zip(tokens, (0, 1), (1.0, 0.8)):
        audio, lengths = synth.generate(ids, speaker, speed)
        noise = torch.randn(1, 4, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            ref, ref_lengths = model.infer(torch.tensor([ids]), noise, torch.tensor([speaker]), torch.tensor([speed]))
        assert audio.shape == (ref.shape[1],)
        np.testing.assert_allclose(lengths, ref_lengths[0].numpy(), rtol=1e-5)
        np.testing.assert_allclose(audio, ref[0].numpy(), atol=1e-5)


@pytest.mark.parametrize("engine", ["onnx", "torch", "packed"])
def test_generate_batch_equals_one_at_a_time(sparse, tmp_path, engine):
    """Batched items see the aligner's features past their end where alone they see zero padding:
    the same audio up to the decoder's last `lookahead_frames` frames (float order: < 1/3 LSB)."""
    if engine == "packed":
        synth = EATSSynthesizer(sparse[2])
    else:
        objective, modules = tiny_eats(tmp_path)
        synth = EATSSynthesizer(load_bundle(objective.export(modules, str(tmp_path / "b"), {}, "0+test")), engine)
    ids = [list(range(5, 35)), [8, 61, 22] * 6, list(range(40, 64))]  # 6 frames a token: longer than the tail
    speakers, speeds = [0, 1, 1], [1.0, 1.3, 0.7]
    batched = synth.generate_batch(ids, speakers, speeds)
    tail = synth.config.decoder.lookahead_frames * synth.config.hop_length
    for item, speaker, speed, (audio, lengths) in zip(ids, speakers, speeds, batched):
        alone, alone_lengths = synth.generate(item, speaker, speed)
        np.testing.assert_allclose(lengths, alone_lengths, rtol=1e-5)
        assert audio.dtype == np.float32 and len(audio) == len(alone) > tail
        np.testing.assert_allclose(audio[:-tail], alone[:-tail], atol=1e-5)
    assert len({len(a) for a, _ in batched}) == 3


@pytest.mark.skipif(not HAVE_ESPEAK, reason="needs espeak-ng")
def test_synthesize_batch_equals_synthesize(sparse):
    synth = EATSSynthesizer(sparse[2])
    requests = [("Hello world, how are you?", "mb-us1", 1.0), ("A much longer sentence than the others, by far.", "mb-us2", 1.0),
                ("Yes, of course it is.", None, 1.3), ("Good morning to you.", "mb-us2", 0.8)]
    tail = synth.config.decoder.lookahead_frames * synth.config.hop_length
    for (text, voice, speed), audio in zip(requests, synth.synthesize_batch(requests)):
        alone = np.concatenate(list(synth.synthesize(text, voice, speed)))
        assert len(audio) == len(alone) > tail
        np.testing.assert_allclose(audio[:-tail], alone[:-tail], atol=1e-5)
    with pytest.raises(ValueError, match="unknown voice"):
        synth.synthesize_batch([("Hello.", "nobody", 1.0)])
