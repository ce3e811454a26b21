"""Large sparse against small dense WaveRNN at equal non-zeros (docs/sparsity.md).

    python -m bench.sparsity_study --all          # train + evaluate every row not yet done
    python -m bench.sparsity_study --row h256-gmp-A
    python -m bench.sparsity_study --report       # table (markdown) + docs/sparsity.png
    python -m bench.sparsity_study --reevaluate   # held-out crop NLL + speed of every row, one process

Two budgets of non-zero parameters, A and B, are the whole-model counts of a
dense WaveRNN of hidden 64 and of hidden 128. Each is matched by a hidden-256
model pruned (16x1 blocks, uniform over weight_ih, weight_hh, O1..O4) by
every method to the density that gives the same whole-model count. Every row
trains configs/study/wavernn_sparsity.yaml for the same steps on the same
data (`sparsewave train wavernn`, one subprocess per row), then is evaluated
here: validation loss (the loop's), held-out NLL in bits per sample on whole
test utterances (an unseen voice, teacher forced) and sampling speed of the
fused numba sampler on one thread (packed blocks for sparse rows, every
block for dense ones). Results append to runs/study/results.jsonl.
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from models.wavernn import WaveRNN
from training import checkpoint as ckpt
from training.config import load_config
from training.objectives.wavernn import SpeechCrops, WaveRNNObjective, WaveRNNRunConfig

CONFIG = "configs/study/wavernn_sparsity.yaml"
OUT = Path("runs/study")
METHODS = ("gmp", "rigl", "topkast", "dsd", "random")
SMALL = {"A": 64, "B": 128}
LARGE = 256
METHOD_ARGS = {"dsd": ["sparsity.start_step=120"]}  # dense for 120 steps, then one-shot prune
HELD_OUT_UTTERANCES = 16
SPEED_SAMPLES = 8000
EXTRA: list[str] = []  # --extra


def base_config(overrides=()) -> WaveRNNRunConfig:
    return load_config(WaveRNNRunConfig, CONFIG, list(overrides))


def whole_count(hidden: int) -> tuple[int, int]:
    """(all parameters, parameters in the pruned set) of a model of `hidden`."""
    cfg = base_config([f"model.hidden_size={hidden}"])
    model = WaveRNN(cfg.model)
    pruned = [name for name, p in model.named_parameters()
              if p.dim() >= 2 and p.numel() >= cfg.sparsity.min_size
              and any(__import__("re").fullmatch(r, name) for r in cfg.sparsity.include)]
    params = dict(model.named_parameters())
    return sum(p.numel() for p in model.parameters()), sum(params[n].numel() for n in pruned)


def rows() -> list[dict]:
    """Every row: name, overrides of the base config."""
    total_large, pruned_large = whole_count(LARGE)
    out = []
    for budget, small in SMALL.items():
        target_nnz, _ = whole_count(small)
        density = 1.0 - (total_large - target_nnz) / pruned_large
        out.append({"name": f"h{small}-dense-{budget}", "budget": budget, "method": "dense", "hidden": small,
                    "overrides": [f"model.hidden_size={small}", "sparsity.method=none"]})
        for method in METHODS:
            out.append({"name": f"h{LARGE}-{method}-{budget}", "budget": budget, "method": method, "hidden": LARGE,
                        "overrides": [f"model.hidden_size={LARGE}", f"sparsity.method={method}",
                                      f"sparsity.target={1 - density:.4f}", *METHOD_ARGS.get(method, [])]})
    return out


def command(row: dict) -> str:
    return (f"sparsewave train wavernn --config {CONFIG} --run-dir {OUT / row['name']} "
            + " ".join(row["overrides"] + EXTRA))


def load_run(run_dir: Path) -> tuple[WaveRNNRunConfig, WaveRNN]:
    cfg = base_config() if not (run_dir / "config.yaml").is_file() else load_config(
        WaveRNNRunConfig, run_dir / "config.yaml")
    model = WaveRNN(cfg.model)
    state = ckpt.load_checkpoint(ckpt.latest_checkpoint(run_dir / "checkpoints"))
    model.load_state_dict(state["modules"]["model"])
    return cfg, model.eval()


@torch.no_grad()
def held_out_bits(cfg: WaveRNNRunConfig, model: WaveRNN, items) -> float:
    """Teacher-forced NLL of whole test utterances, bits per 16-bit sample."""
    nats, count = 0.0, 0
    for samples, cond, _ in items:
        u = torch.cat([torch.tensor([32768]), samples])[None]
        logits_c, logits_f = model(u, cond[None], torch.zeros(1, dtype=torch.long))
        c, f = u[:, 1:] // 256, u[:, 1:] % 256
        nats += float(torch.nn.functional.cross_entropy(logits_c[0], c[0], reduction="sum")
                      + torch.nn.functional.cross_entropy(logits_f[0], f[0], reduction="sum"))
        count += c.numel()
    return nats / count / math.log(2)


def sampling_speed(model: WaveRNN, cond: torch.Tensor, sparse: bool) -> float:
    """Samples per second of the fused sampler, one thread, best of two."""
    from models.wavernn_fused import FusedWaveRNN

    sampler = FusedWaveRNN(model, sparse=sparse)
    frames = SPEED_SAMPLES // model.config.hop_length
    u = np.random.default_rng(0).random((1, SPEED_SAMPLES, 2))
    sampler.generate(cond[None, :2], torch.zeros(1, dtype=torch.long), u[:, :80])  # compiles
    best = 0.0
    for _ in range(2):
        t0 = time.perf_counter()
        sampler.generate(cond[None, :frames], torch.zeros(1, dtype=torch.long), u)
        best = max(best, SPEED_SAMPLES / (time.perf_counter() - t0))
    return best


def evaluate(row: dict, items) -> dict:
    run_dir = OUT / row["name"]
    cfg, model = load_run(run_dir)
    final = json.loads((run_dir / "final.json").read_text())
    nnz = sum(int((p != 0).sum()) for p in model.parameters())
    cond = max((it[1] for it in items), key=len)
    torch.set_num_threads(1)
    return {**{k: row[k] for k in ("name", "budget", "method", "hidden")}, "command": command(row),
            "steps": final["step"], "val_loss": final["val"].get("loss"),
            "held_out_bits_per_sample": held_out_bits(cfg, model, items),
            "nonzero_params": nnz, "params": sum(p.numel() for p in model.parameters()),
            "samples_per_s": sampling_speed(model, cond, sparse=row["method"] != "dense")}


@torch.no_grad()
def held_out_crop_bits(cfg: WaveRNNRunConfig, model: WaveRNN, crops: SpeechCrops, per_item: int = 4) -> float:
    """NLL in bits/sample of `per_item` fixed crops of every test utterance,
    the training crop length (the whole-utterance figure also tests running
    far past the crop length the model was trained on)."""
    objective = WaveRNNObjective(cfg)
    items = [crops.get(i, np.random.default_rng(1000 * i + j)) for i in range(len(crops)) for j in range(per_item)]
    losses = [objective.losses(model, objective.collate(items[k:k + 64]))["loss"].item() * len(items[k:k + 64])
              for k in range(0, len(items), 64)]
    return sum(losses) / len(items) / math.log(2)


def reevaluate(repeats: int = 3) -> None:
    """Every trained row of OUT again in one process: held-out crop NLL, and
    sampling speed with rows interleaved `repeats` times (best kept) so that
    the machine's load affects them alike. Merged into results.jsonl."""
    items = test_items()
    cond = max((it[1] for it in items), key=len)
    torch.set_num_threads(1)
    done = results()
    trained = [r for r in rows() if r["name"] in done]
    runs = {r["name"]: load_run(OUT / r["name"]) for r in trained}
    crops = SpeechCrops(next(iter(runs.values()))[0], "test", {})
    best = dict.fromkeys(runs, 0.0)
    for _ in range(repeats):
        for r in trained:
            best[r["name"]] = max(best[r["name"]], sampling_speed(runs[r["name"]][1], cond, r["method"] != "dense"))
    with open(OUT / "results.jsonl", "a") as handle:
        for r in trained:
            cfg, model = runs[r["name"]]
            result = {**done[r["name"]], "held_out_crop_bits_per_sample": held_out_crop_bits(cfg, model, crops),
                      "samples_per_s": best[r["name"]], "speed_repeats": 2 * repeats}
            handle.write(json.dumps(result) + "\n")
            print(json.dumps(result), flush=True)


def run_row(row: dict, items) -> dict:
    run_dir = OUT / row["name"]
    if not (run_dir / "final.json").is_file():
        cmd = [sys.executable, "-m", "training.cli", "train", "wavernn", "--config", CONFIG,
               "--run-dir", str(run_dir), *row["overrides"], *EXTRA]
        t0 = time.time()
        subprocess.run(cmd, check=True)
        print(f"{row['name']}: trained in {time.time() - t0:.0f} s", flush=True)
    result = evaluate(row, items)
    with open(OUT / "results.jsonl", "a") as handle:
        handle.write(json.dumps(result) + "\n")
    print(json.dumps(result), flush=True)
    return result


def test_items():
    cfg = base_config(["model.hidden_size=64"])
    crops = SpeechCrops(cfg, "test", {})
    return crops.items[:HELD_OUT_UTTERANCES]


def marginal_bits(test: torch.Tensor, n_train: int = 200) -> float:
    """Held-out bits/sample of the byte histograms of the training audio,
    P(c) P(f | c): what a model that ignores context and conditioning scores."""
    train = SpeechCrops(base_config(["model.hidden_size=64", f"data.max_items={n_train}"]), "train", {})
    u = torch.cat([s for s, _, _ in train.items])
    joint = torch.bincount(u, minlength=65536).double().reshape(256, 256) + 0.5  # (coarse, fine), add-half smoothed
    log_c = torch.log2(joint.sum(1) / joint.sum())
    log_f_given_c = torch.log2(joint / joint.sum(1, keepdim=True))
    c, f = test // 256, test % 256
    return float(-(log_c[c] + log_f_given_c[c, f]).mean())


def results(out: Path | None = None) -> dict[str, dict]:
    path = (out or OUT) / "results.jsonl"
    lines = path.read_text().splitlines() if path.is_file() else []
    return {r["name"]: r for r in map(json.loads, lines)}  # the last result of a row wins


def table(done: dict[str, dict]) -> None:
    print("| row | method | hidden | non-zeros | steps | val loss (nats) | held-out crops (bits) "
          "| held-out utterances (bits) | samples/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows():
        r = done.get(row["name"])
        if r:
            crops = r.get("held_out_crop_bits_per_sample")
            print(f"| {r['name']} | {r['method']} | {r['hidden']} | {r['nonzero_params']:,} | {r['steps']} | "
                  f"{r['val_loss']:.3f} | {'-' if crops is None else f'{crops:.3f}'} | "
                  f"{r['held_out_bits_per_sample']:.3f} | {r['samples_per_s']:,.0f} |")


def report(plot: str, others: list[str]) -> None:
    """Markdown tables of OUT and of each `others` results dir, and the plot
    (OUT's rows joined by lines, the others' as hollow markers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    done = results()
    print("Commands (then `python -m bench.sparsity_study --row NAME` evaluates a trained row):\n")
    for row in rows():
        print(f"    {command(row)}")
    print()
    table(done)
    extra = {d: results(Path(d)) for d in others}
    for d, rs in extra.items():
        print(f"\n{d} (each row's command is in {d}/results.jsonl):\n")
        table(rs)
    cfg = base_config(["model.hidden_size=64"])
    crops = SpeechCrops(cfg, "test", {})
    crop_samples = torch.cat([crops.get(i, np.random.default_rng(1000 * i + j))["samples"][1:]
                              for i in range(len(crops)) for j in range(4)])
    baseline = {"held_out_crop_bits_per_sample": marginal_bits(crop_samples),
                "held_out_bits_per_sample": marginal_bits(torch.cat([s for s, _, _ in test_items()]))}
    print(f"\nbyte histograms of the training audio, no context: {baseline['held_out_crop_bits_per_sample']:.3f} "
          f"(crops), {baseline['held_out_bits_per_sample']:.3f} (utterances) held-out bits/sample")
    colors = {m: f"C{i}" for i, m in enumerate(METHODS)} | {"dense": "k"}
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for ax, key, label in ((axes[0], "val_loss", "validation loss (nats/sample)"),
                           (axes[1], "held_out_crop_bits_per_sample", "held-out NLL, test crops (bits/sample)"),
                           (axes[2], "held_out_bits_per_sample", "held-out NLL, whole utterances (bits/sample)")):
        for method in ("dense", *METHODS):
            pts = sorted((r["nonzero_params"], r[key]) for r in done.values() if r["method"] == method and key in r)
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, "s--" if method == "dense" else "o-", color=colors[method],
                        label="small dense (h64, h128)" if method == "dense" else f"h256 {method}")
            for (d, rs), marker in zip(extra.items(), "^Dv"):
                pts = [(r["nonzero_params"], r[key]) for r in rs.values() if r["method"] == method and key in r]
                if pts:
                    ax.scatter(*zip(*pts), marker=marker, facecolors="none", edgecolors=colors[method], s=60,
                               label=f"{Path(d).name} ({method})")
        if key in baseline:
            ax.axhline(baseline[key], color="grey", lw=1, ls=":", label="byte histograms, no context")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x / 1000:.0f}k"))
        ax.set_xlabel("non-zero parameters (whole model)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[2].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle("WaveRNN: hidden-256 sparse (by method) vs small dense at equal non-zeros, same steps and data")
    fig.tight_layout()
    fig.savefig(plot, dpi=110)
    print(f"wrote {plot}")


def main() -> None:
    global OUT
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--all", action="store_true")
    p.add_argument("--row", action="append", default=[])
    p.add_argument("--report", action="store_true")
    p.add_argument("--also", nargs="*", default=[], help="--report: other results dirs (replicates) to show")
    p.add_argument("--plot", default="docs/sparsity.png")
    p.add_argument("--list", action="store_true", help="print each row's command")
    p.add_argument("--reevaluate", action="store_true",
                   help="every trained row again: held-out crop NLL and sampling speed, in one process")
    p.add_argument("--out", default="runs/study", help="where the runs and results.jsonl go")
    p.add_argument("--extra", nargs="*", default=[], help="overrides added to every row (smoke tests)")
    args = p.parse_args()
    OUT = Path(args.out)
    EXTRA.extend(args.extra)
    if args.list:
        for row in rows():
            print(command(row))
    todo = [r for r in rows() if args.all and r["name"] not in results() or r["name"] in args.row]
    if todo:
        OUT.mkdir(parents=True, exist_ok=True)
        items = test_items()
        for row in todo:
            run_row(row, items)
    if args.reevaluate:
        reevaluate()
    if args.report:
        report(args.plot, args.also)


if __name__ == "__main__":
    main()
