"""The shared loop: training lowers the loss, resume after SIGKILL is exact, DDP works."""
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from training import checkpoint as ckpt
from training.config import load_config
from training.loop import Run
from tiny_task import TinyObjective, TinyRunConfig

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = str(ROOT / "tests" / "helpers" / "tiny_task.py")


def _cli(*args, **kw):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, SCRIPT, *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def _final_weights(run_dir: Path) -> dict:
    return ckpt.load_checkpoint(ckpt.latest_checkpoint(run_dir / "checkpoints"))["modules"]["model"]


def _val_losses(run_dir: Path) -> list[float]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if r["split"] == "val"]


def test_training_lowers_validation_loss(tmp_path):
    cfg = load_config(TinyRunConfig, None, ["loop.max_steps=200", "loop.val_every=20"])
    Run(TinyObjective(cfg), tmp_path / "run").fit()
    losses = _val_losses(tmp_path / "run")
    assert losses[-1] < 0.5 * losses[0]
    assert (tmp_path / "run" / "config.yaml").read_text().count("max_steps: 200") == 1
    assert json.loads((tmp_path / "run" / "meta.json").read_text())["task"] == "tiny"


def test_resume_after_sigkill_matches_an_unbroken_run(tmp_path):
    common = ["loop.max_steps=120", "loop.ckpt_every=10", "data.step_sleep_s=0.02"]
    broken, whole = tmp_path / "broken", tmp_path / "whole"
    proc = _cli("train", "tiny", "--run-dir", str(broken), *common)
    deadline = time.time() + 120
    while time.time() < deadline and not (broken / "checkpoints" / "step_000000040.pt").exists():
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    last = ckpt.latest_checkpoint(broken / "checkpoints")
    assert last is not None and "000000120" not in last.name, "the run finished before it was killed"
    assert _cli("resume", str(broken)).wait() == 0
    assert _cli("train", "tiny", "--run-dir", str(whole), *common).wait() == 0
    a, b = _final_weights(broken), _final_weights(whole)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_train_refuses_a_used_run_dir_and_resume_needs_one(tmp_path):
    assert _cli("train", "tiny", "--run-dir", str(tmp_path / "r"), "loop.max_steps=10").wait() == 0
    proc = _cli("train", "tiny", "--run-dir", str(tmp_path / "r"), "loop.max_steps=10")
    assert proc.wait() == 2
    assert "use `sparsewave resume" in proc.stdout.read()
    proc = _cli("resume", str(tmp_path / "nothing"))
    assert proc.wait() == 2
    assert "not a run directory" in proc.stdout.read()


def test_two_process_torchrun(tmp_path):
    run_dir = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           SCRIPT, "train", "tiny", "--run-dir", str(run_dir), "loop.max_steps=60", "loop.val_every=20",
           "loop.ckpt_every=30"]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    names = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert names == ["step_000000030.pt", "step_000000060.pt"]  # written once each, by rank 0
    assert json.loads((run_dir / "meta.json").read_text())["world_size"] == 2
    losses = _val_losses(run_dir)
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_tracks_fp32(tmp_path, precision):
    finals = {}
    for name in ("fp32", precision):
        cfg = load_config(TinyRunConfig, None, ["loop.max_steps=150", "loop.val_every=150",
                                                f"loop.precision={name}", "model.dropout=0.0"])
        finals[name] = Run(TinyObjective(cfg), tmp_path / name).fit()["loss"]
    assert finals[precision] < 0.2
    assert abs(finals[precision] - finals["fp32"]) < 0.05 + 0.5 * finals["fp32"]


def test_fp16_loss_scaling_skips_overflowing_steps_and_backs_off(tmp_path):
    """A start scale of 2^40 overflows fp16 gradients: those steps are skipped (weights untouched)
    and the scale halves until the gradients fit, then training proceeds (Micikevicius et al.)."""
    cfg = load_config(TinyRunConfig, None, ["loop.max_steps=60", "loop.val_every=60", "loop.precision=fp16",
                                            "loop.loss_scale=1099511627776", "model.dropout=0.0"])
    run = Run(TinyObjective(cfg), tmp_path / "fp16")
    loss = run.fit()["loss"]
    (scaler,) = run.scalers.values()
    assert scaler.get_scale() < 2.0 ** 40 / 2 ** 10  # backed off at least ten times
    assert math.isfinite(loss) and loss < 1.0
    assert all(p.dtype == torch.float32 for m in run.modules.values() for p in m.parameters())  # fp32 masters
