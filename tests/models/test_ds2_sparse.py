"""Sparse Deep Speech 2 (issue 12): a pruned model exports its GRU matrices packed and the
native engine runs them on block-sparse kernels with the masked dense model's results."""
import dataclasses

import numpy as np
import pytest
import torch

from kernels.format import SUFFIXES, BlockSparseMatrix
from models.bundle import load_bundle
from models.deepspeech2.features import asr_feature_config
from models.deepspeech2.model import GRU_MATRIX, DeepSpeech2Config
from models.deepspeech2.recurrent import GRUStack, gru_library
from models.deepspeech2.runtime import DeepSpeech2Transcriber
from training.config import with_sparsity
from training.objectives.deepspeech2 import DeepSpeech2DecodeConfig, DeepSpeech2Objective, DeepSpeech2RunConfig
from training.sparsity import SparsityConfig

# hidden 32: 3H = 96 output rows, whole 16x1 block rows on every vector width
TINY = DeepSpeech2Config(n_mels=16, conv_channels=(4, 4), conv_kernels=((5, 7), (5, 5)),
                         conv_strides=((2, 2), (1, 1)), rnn_layers=2, rnn_hidden=32)
PRUNE = SparsityConfig(method="gmp", include=(GRU_MATRIX.pattern,), block=(16, 1), target=0.8, start_step=0,
                       end_step=1, every=1)


def pruned_objective():
    """A tiny DS2 objective whose model has settled batch norms and GRU matrices pruned to 80%."""
    config = with_sparsity(DeepSpeech2RunConfig)(model=TINY, features=asr_feature_config(n_mels=16),
                                                 decode=DeepSpeech2DecodeConfig(decoder="greedy"), sparsity=PRUNE)
    objective = DeepSpeech2Objective(config)
    modules = objective.build()
    model = modules["model"]
    torch.manual_seed(1)
    with torch.no_grad():  # batch-norm statistics from one pass, as in tests/models/test_deepspeech2.py
        model.train()
        model(torch.randn(4, 80, 16) * 2 - 3, torch.tensor([80, 70, 50, 40]))
    objective.sparsifier.after_step(1)
    return objective, modules


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    objective, modules = pruned_objective()
    out = tmp_path_factory.mktemp("ds2-sparse") / "bundle"
    objective.export(modules, str(out), provenance={}, package_version="0")
    return objective, load_bundle(out)


def audio_set():
    g = np.random.default_rng(3)
    return [(g.standard_normal(n) * 0.1).astype(np.float32) for n in (6000, 1500, 9000, 4000)]


def test_bundle_holds_the_gru_matrices_packed_with_the_masks(exported):
    objective, bundle = exported
    masks = objective.sparsifier.masks
    assert len(masks) == 8  # 2 layers x (ih, hh) x 2 directions
    for name, mask in masks.items():
        assert name not in bundle.tensors  # no dense copy
        packed = BlockSparseMatrix.from_tensors(bundle.tensors, name)
        assert packed.block == (16, 1) and packed.values.dtype == torch.float16
        assert packed.nnz_blocks * 16 == int(mask.sum())  # the stored blocks are the mask's blocks
        assert torch.equal(packed.to_dense() != 0, mask)
    assert bundle.manifest["sparsity"]["overall"] == pytest.approx(0.8, abs=0.01)
    assert not any(k.startswith("out.") and k.endswith(SUFFIXES) for k in bundle.tensors)


def test_masks_survive_the_round_trip(exported):
    objective, bundle = exported
    native = DeepSpeech2Transcriber.from_bundle(bundle, decoder="greedy", engine="native")
    state = native.model.state_dict()
    for name, mask in objective.sparsifier.masks.items():
        assert torch.equal(state[name] != 0, mask)
    assert native.stack.packed == 6  # per layer: both input projections as one, and each W_hh


def test_packed_native_engine_matches_the_masked_dense_model(exported):
    _, bundle = exported
    native = DeepSpeech2Transcriber.from_bundle(bundle, decoder="greedy", engine="native")
    eager = DeepSpeech2Transcriber.from_bundle(bundle, decoder="greedy", engine="torch")
    onnx = DeepSpeech2Transcriber.from_bundle(bundle, decoder="greedy", engine="onnx")
    audio = audio_set()
    got = native.log_probs(audio)
    for want in (eager.log_probs(audio), onnx.log_probs(audio)):  # ONNX holds the masked dense weights
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, atol=1e-4)
    assert [t.text for t in native.transcribe_batch(audio)] == [t.text for t in eager.transcribe_batch(audio)]
    for together, a in zip(got, audio):  # batched over utterances, each bit for bit as alone (both on the
        assert np.array_equal(together, native.log_probs([a])[0])  # workers: one torch thread each)


@pytest.mark.parametrize("flags", [(), ("-mno-avx512f",), ("-mno-avx512f", "-mno-avx2", "-mno-fma")])
def test_packed_recurrence_gives_the_dense_kernels_floats(flags):
    lib = gru_library(flags)
    if lib is None:
        pytest.skip("no C compiler")
    _, modules = pruned_objective()
    model = modules["model"].eval()
    frames = [torch.randn(n, model.frontend.out_size).numpy() for n in (30, 7, 19)]
    sparse, dense = GRUStack(model, lib), GRUStack(model, lib, sparse=False)
    for layer, twin in zip(sparse.layers, dense.layers):  # input projections dense in both: only W_hh differs
        del layer["w_ih_bsr"]
        layer["w_ih_t"] = twin["w_ih_t"]
    assert sparse.packed == 4 and dense.packed == 0
    for a, b in zip(sparse(frames), dense(frames)):
        assert np.array_equal(a, b)
    h = torch.from_numpy(frames[0])[None]
    for i in range(len(model.rnns)):
        with torch.no_grad():
            h, _ = model.rnn_layer(i, h, torch.tensor([30]), torch.ones(1, 30, dtype=torch.bool))
    np.testing.assert_allclose(GRUStack(model, lib)([frames[0]])[0], h[0].numpy(), atol=1e-5)


def test_init_checkpoint_starts_the_run_and_skips_sortagrad(tmp_path):
    from training.checkpoint import save_checkpoint

    objective, modules = pruned_objective()
    path = save_checkpoint(tmp_path, 5, {"modules": {"model": modules["model"].state_dict()}})
    config = dataclasses.replace(objective.config, init_checkpoint=str(path))
    fine_tune = DeepSpeech2Objective(config)
    model = fine_tune.build()["model"]
    for name, tensor in modules["model"].state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor)
    assert objective.sorta_grad and not fine_tune.sorta_grad
