"""The shipped bundles/wavernn-default: a Sparse WaveRNN whose pruned matrices
are stored packed in 16x1 blocks at the target sparsity, small, and synthesizing
through the runtime (where espeak-ng and the MBROLA voice are installed)."""
from pathlib import Path

import numpy as np
import pytest

from models.bundle import load_bundle
from models.registry import model_from_bundle
from models.wavernn_fused import FusedWaveRNN

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "wavernn-default"


def test_shipped_bundle_is_block_sparse_and_small():
    bundle = load_bundle(BUNDLE)
    manifest = bundle.manifest
    assert manifest["model_type"] == "wavernn" and "MBROLA" in manifest["licence"]
    assert manifest["sparsity"]["block"] == [16, 1] and manifest["sparsity"]["overall"] == pytest.approx(0.96, abs=0.002)
    assert (BUNDLE / "weights.safetensors").stat().st_size < 8e6
    model = model_from_bundle(bundle)
    for name in model.SPARSE:  # every 16x1 block is all zero or kept
        w = dict(model.named_parameters())[name].detach()
        zero_blocks = (w.reshape(w.shape[0] // 16, 16, w.shape[1]) == 0).all(1)
        assert zero_blocks.float().mean() == pytest.approx(0.96, abs=0.002), name
    assert FusedWaveRNN(model).density == pytest.approx(0.04, abs=0.002)


def test_shipped_bundle_synthesizes():
    from models.inference import load_runtime
    from models.text import FrontendError

    _, synth = load_runtime(BUNDLE)
    try:
        audio = np.concatenate(list(synth.synthesize("Hello.", voice=synth.voices[-1])))
    except (FrontendError, RuntimeError) as exc:  # no espeak-ng / MBROLA voice installed
        pytest.skip(str(exc))
    assert audio.dtype == np.float32 and 0.2 * synth.sample_rate < len(audio) < 2 * synth.sample_rate
    assert np.isfinite(audio).all() and np.abs(audio).max() <= 1.0 and audio.std() > 1e-4
