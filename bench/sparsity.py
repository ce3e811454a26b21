"""Every sparse training method trains: `python -m bench.sparsity [--quick]`.

A tiny WaveRNN (the local corpus data/wavernn_speech, `sparsewave data
speech`) is trained through the shared loop once per method (dense first,
then gmp, random, rigl, topkast, dsd with its re-dense phase), same steps,
same data, 16x1 blocks of weight_hh and O1..O4. Prints one line per method
and, last, one JSON object: `methods` (the list run) and per method its final
validation loss, final sparsity and seconds. For the large-sparse against
small-dense comparison see bench/sparsity_study.py and docs/sparsity.md.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from training.config import load_config
from training.loop import Run
from training.objectives.wavernn import WaveRNNObjective, WaveRNNRunConfig

METHODS = ("none", "gmp", "random", "rigl", "topkast", "dsd")


def overrides(data: str, quick: bool) -> list[str]:
    steps = 30 if quick else 300
    model = ["model.hidden_size=32", "model.cond_hidden=8", "model.cond_layers=1", "model.speaker_dim=4"] if quick \
        else ["model.hidden_size=128"]
    return [*model, "model.cond_channels=87", "model.n_speakers=2", f"data.root={data}",
            f"data.crop_frames={2 if quick else 8}", "data.pad_frames=2", f"data.max_items={32 if quick else 0}",
            "optim.lr=0.003", f"loop.max_steps={steps}", "loop.batch_size=4", "loop.precision=fp32",
            f"loop.val_every={steps}", f"loop.ckpt_every={steps}", "loop.val_batches=2", "loop.log_every=10",
            "loop.progress=false", "loop.device=cpu",
            r"sparsity.include=['weight_hh', 'o[1-4]\.weight']", "sparsity.block=[16,1]", "sparsity.target=0.75",
            "sparsity.min_size=256", f"sparsity.start_step={steps // 6}", f"sparsity.end_step={steps * 2 // 3}",
            f"sparsity.every={max(1, steps // 15)}", f"sparsity.dsd_redense_step={steps * 5 // 6}"]


def train(method: str, base: list[str], work: Path) -> dict:
    cfg = load_config(WaveRNNRunConfig, None, [*base, f"sparsity.method={method}"])
    objective = WaveRNNObjective(cfg)
    t0 = time.perf_counter()
    val = Run(objective, work / method).fit()
    report = objective.sparsifier.report() if objective.sparsifier is not None else {}
    return {"val_loss": val["loss"], "sparsity": report.get("sparsity/overall", 0.0),
            "seconds": time.perf_counter() - t0}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="hidden 32, 30 steps per method (well under a minute)")
    p.add_argument("--data", default="data/wavernn_speech")
    p.add_argument("--methods", nargs="*", default=list(METHODS))
    args = p.parse_args()
    if not (Path(args.data) / "labels.jsonl").is_file():
        raise SystemExit(f"{args.data}/labels.jsonl not found; build it with `sparsewave data speech --out {args.data}`")
    torch.set_num_threads(1)
    base = overrides(args.data, args.quick)
    out: dict = {"methods": args.methods, "quick": args.quick}
    with tempfile.TemporaryDirectory() as tmp:
        for method in args.methods:
            out[method] = train(method, base, Path(tmp))
            print(f"{method:8s} val loss {out[method]['val_loss']:.3f}  sparsity {out[method]['sparsity']:.3f}  "
                  f"{out[method]['seconds']:.1f} s", flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
