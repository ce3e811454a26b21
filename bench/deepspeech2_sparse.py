"""Dense against sparse Deep Speech 2 on the native engine (issue 12; docs/deepspeech2.md, "Sparse Deep Speech 2").

    python -m bench.deepspeech2_sparse [--quick] [--dense B] [--sparse B] [--data D]

On the same test utterances handed over in batches of 16 (as `sparsewave eval asr` and a
busy server do: each batch split into `threads` groups, one per worker thread), per bundle,
in alternating rounds (best of `rounds`):
- `realtime_factor`: the whole transcription (features, model, the bundle's decoder, word
  timings) on `threads` worker threads, audio seconds per wall second;
- `model_realtime_factor`: the acoustic model alone (`log_probs`) on the same threads;
- `gru_realtime_factor`: the recurrent layers alone, audio seconds per CPU second of one
  thread (thread CPU time: steadier than wall time on a shared machine);
- `cpu_s_<part>`: CPU seconds of each part of the acoustic model (features, frontend,
  recurrent, head) over all groups, in the calling thread;
and the sparse bundle's recurrent layers on the dense kernel (`sparse_on_dense_kernel_gru_...`:
the same weights, zeros multiplied), the kernel's own gain. Also WER/CER of both on the set.
`sparse_benchmark()` returns the dict (keys prefixed `deepspeech2_`); the CLI prints it as JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch

from models.bundle import load_bundle
from models.deepspeech2.recurrent import GRUStack
from models.deepspeech2.runtime import DeepSpeech2Transcriber

DENSE, SPARSE = "bundles/deepspeech2-default", "runs/ds2-sparse-bundle"
BATCH = 16


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _frames(t: DeepSpeech2Transcriber, audio: list[np.ndarray]) -> list[np.ndarray]:
    with torch.no_grad():
        feats = [t.logmel(torch.from_numpy(a)[None]) for a in audio]
        return [t.model.encode(f, torch.tensor([f.shape[1]]))[0][0].numpy() for f in feats]


def _batches(items: list, size: int = BATCH) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def _cpu_s(fn) -> float:
    t0 = time.thread_time()
    fn()
    return time.thread_time() - t0


def _wall_s(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def sparse_benchmark(dense: str = DENSE, sparse: str = SPARSE, data: str = "data/asr_speech", quick: bool = False,
                     threads: int = 2, rounds: int = 3) -> dict:
    from training.objectives.deepspeech2 import error_rates, split_audio

    for path in (dense, sparse):
        if not os.path.isdir(path):
            raise FileNotFoundError(f"no bundle at {path} (the sparse one: configs/deepspeech2/sparse.yaml, "
                                    "then sparsewave export runs/ds2-sparse -o runs/ds2-sparse-bundle)")
    torch.set_num_threads(1)
    audio, refs, _ = split_audio(data, "test", 12 if quick else 0)
    rounds = min(rounds, 2) if quick else rounds
    seconds = sum(len(a) for a in audio) / 16000
    runs = {}
    for name, path in (("dense", dense), ("sparse", sparse)):
        t = DeepSpeech2Transcriber.from_bundle(load_bundle(path), engine="native", threads=threads)
        if t.stack is None:
            raise RuntimeError(f"{path}: the native engine is unavailable (no C compiler?)")
        frames = _frames(t, audio)  # the recurrent layers' input, in the groups the runtime forms
        groups = [[frames[b + i] for i in g] for b in range(0, len(audio), BATCH)
                  for g in t._groups(audio[b:b + BATCH])]
        runs[name] = (t, t.stack, groups)
    t_sparse, _, groups_sparse = runs["sparse"]
    runs["sparse_on_dense_kernel"] = (t_sparse, GRUStack(t_sparse.model, sparse=False), groups_sparse)
    out: dict = {"utterances": len(audio), "audio_s": round(seconds, 1), "threads": threads,
                 "load_start": _load(), "packed_matrices": runs["sparse"][1].packed,
                 "sparsity": load_bundle(sparse).manifest.get("sparsity", {}).get("overall")}
    best: dict[str, float] = {}
    texts: dict[str, list[str]] = {}
    for _ in range(rounds):
        for name, (t, stack, groups) in runs.items():
            best[name + "_gru"] = min(best.get(name + "_gru", 1e9), _cpu_s(lambda: [stack(g) for g in groups]))
            if name == "sparse_on_dense_kernel":
                continue
            parts: dict[str, float] = {}
            for b in range(0, len(audio), BATCH):
                for g in t._groups(audio[b:b + BATCH]):
                    t.group_log_probs([audio[b + i] for i in g], cpu_s=parts)
            for part, cpu in parts.items():
                best[f"{name}_cpu_s_{part}"] = min(best.get(f"{name}_cpu_s_{part}", 1e9), cpu)
            model_s = _wall_s(lambda: [t.log_probs(b) for b in _batches(audio)])
            best[name + "_model"] = min(best.get(name + "_model", 1e9), model_s)
            start = time.perf_counter()
            texts[name] = [r.text for b in _batches(audio) for r in t.transcribe_batch(b)]
            best[name] = min(best.get(name, 1e9), time.perf_counter() - start)
    for name in ("dense", "sparse"):
        out[f"{name}_realtime_factor"] = round(seconds / best[name], 1)
        out[f"{name}_model_realtime_factor"] = round(seconds / best[name + "_model"], 1)
        out.update({f"{name}_{k}": round(v, 4) for k, v in error_rates(refs, texts[name]).items()})
    out.update({k: round(v, 3) for k, v in best.items() if "_cpu_s_" in k})
    for name in runs:
        out[f"{name}_gru_realtime_factor"] = round(seconds / best[name + "_gru"], 1)
    out["gru_speedup"] = round(best["dense_gru"] / best["sparse_gru"], 2)
    out["kernel_speedup_same_weights"] = round(best["sparse_on_dense_kernel_gru"] / best["sparse_gru"], 2)
    out["load_end"] = _load()
    return {f"deepspeech2_{k}": v for k, v in out.items()}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dense", default=DENSE)
    p.add_argument("--sparse", default=SPARSE)
    p.add_argument("--data", default="data/asr_speech")
    p.add_argument("--quick", action="store_true", help="12 test utterances, 2 rounds (under 15 s)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args(argv)
    try:
        out = sparse_benchmark(a.dense, a.sparse, a.data, a.quick, a.threads, a.rounds)
    except FileNotFoundError as exc:
        raise SystemExit(f"error: {exc}") from None
    print(json.dumps(out))


if __name__ == "__main__":
    main()
