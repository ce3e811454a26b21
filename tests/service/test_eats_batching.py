"""EATS in the service's Batch Dispatch (`EATSSynthesizer.synthesize_batch`): concurrent speech
requests share decoder calls, dense (onnxruntime) and sparse (packed layers on kernels/conv.py),
and each answer is its one-at-a-time audio up to the decoder's reach at its end."""
import concurrent.futures
import dataclasses
import re

import httpx
import numpy as np
import pytest
from live_server import API_KEY, TEST_LIMITS, live_server
from tiny_service_models import tiny_eats

from service.settings import Settings
from training.objectives.eats import EATSRunConfig

TAIL = 46 * 80  # the tiny decoder's reach (GanTTSConfig.lookahead_frames x hop): alone, conv padding there


@pytest.fixture(scope="module")
def eats_server(tiny_dir, tmp_path_factory):
    """A server with the tiny dense EATS and a tiny sparse one (decoder pruned to 75%, exported packed)."""
    directory = tmp_path_factory.mktemp("eats-bundles")
    (directory / "eats").symlink_to(tiny_dir / "eats", target_is_directory=True)
    sparsity = dataclasses.replace(EATSRunConfig().sparsity, method="gmp", target=0.75, start_step=0,
                                   end_step=1, min_size=64)
    objective, modules = tiny_eats(tmp_path_factory.mktemp("eats-sparse"), sparsity, channels=(8, 8, 8, 8, 4, 4, 4))
    objective.after_step(modules, 1)
    objective.export(modules, str(directory / "eats-sparse"), {"test": True}, "0+test")
    settings = Settings(models_dir=directory, load_defaults=False, api_keys=(API_KEY,), batch_synthesis=True,
                        **TEST_LIMITS)
    with live_server(settings) as url:
        yield url


def _batches(server: str, model: str) -> tuple[float, float]:
    metrics = httpx.get(f"{server}/metrics").text
    count = re.search(rf'sparsewave_batch_size_count\{{model="{model}"\}} (\S+)', metrics)
    total = re.search(rf'sparsewave_batch_size_sum\{{model="{model}"\}} (\S+)', metrics)
    return (float(count.group(1)), float(total.group(1))) if count else (0.0, 0.0)


@pytest.mark.parametrize("model", ["eats", "eats-sparse"])
def test_concurrent_eats_requests_are_batched_and_unchanged(eats_server, model):
    texts = [f"this is sentence number {w}" for w in ["one", "two", "three", "four", "five", "six", "seven"]]
    texts.append("and a much longer one, the eighth of them, to make the lengths differ")

    def one(text: str) -> np.ndarray:
        resp = httpx.post(f"{eats_server}/v1/audio/speech", timeout=60, headers={"Authorization": f"Bearer {API_KEY}"},
                          json={"model": model, "input": text, "voice": "mb-us1", "response_format": "pcm"})
        assert resp.status_code == 200, resp.text
        return np.frombuffer(resp.content, np.int16).astype(int)

    alone = {t: one(t) for t in texts}
    before = _batches(eats_server, model)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        together = dict(zip(texts, pool.map(one, texts)))
    for t in texts:  # batched or not, the same audio before the tail (float order in a batch: one LSB at most)
        a, b = together[t], alone[t]
        assert len(a) == len(b) > 2 * TAIL and np.abs(a[:-TAIL] - b[:-TAIL]).max() <= 1
    count, total = (a - b for a, b in zip(_batches(eats_server, model), before))
    assert total == 8 and count < 8  # some requests shared a batch: mean batch size above 1
