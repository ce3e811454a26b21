"""Each sparsity method reaches its target with block structure, through the shared loop."""
import pytest
import torch
from torch import nn

from training import checkpoint as ckpt
from training.config import load_config
from training.loop import Run
from training.sparsity import SparsityConfig, Sparsifier
from training.sparsity.blocks import block_scores, erk_densities
from tiny_task import TinyObjective, TinyRunConfig

BLOCK = (4, 1)


def _is_block_structured(weight: torch.Tensor, block) -> bool:
    """Every block is all zero or has its mask fully on (no partial blocks pruned)."""
    zero_blocks = block_scores(weight, block) == 0
    return bool(zero_blocks.any()) and weight.shape[0] % block[0] == 0


def _train(tmp_path, method, steps=80, **extra):
    overrides = [f"sparsity.method={method}", "sparsity.target=0.75", f"loop.max_steps={steps}",
                 "loop.val_every=40", "model.dropout=0.0", *[f"sparsity.{k}={v}" for k, v in extra.items()]]
    cfg = load_config(TinyRunConfig, None, overrides)
    objective = TinyObjective(cfg)
    run = Run(objective, tmp_path / method)
    metrics = run.fit()
    return objective, run.modules["model"], metrics


@pytest.mark.parametrize("method", ["gmp", "random", "rigl", "topkast"])
def test_method_reaches_target_with_blocks(tmp_path, method):
    objective, model, metrics = _train(tmp_path, method)
    w = model.net[0].weight.detach()  # (64, 8), blocks of 4 rows
    zeros = (w == 0).float().mean().item()
    assert zeros == pytest.approx(0.75, abs=1e-6)
    structure = block_scores(w, BLOCK) > 0
    expanded = structure.repeat_interleave(4, 0)
    assert torch.equal(expanded, w != 0)  # whole 4x1 blocks on or off
    assert metrics["loss"] < 0.3, metrics
    desc = objective.sparsity_report({"model": model})
    assert desc["method"] == method and desc["overall"] == pytest.approx(0.75)


def test_gmp_schedule_is_cubic_and_monotone():
    sp = Sparsifier(SparsityConfig(method="gmp", target=0.9, start_step=100, end_step=1100, min_size=1),
                    nn.Linear(16, 16))
    values = [sp.gmp_sparsity(t) for t in range(0, 1300, 50)]
    assert values[0] == 0.0 and values[-1] == pytest.approx(0.9)
    assert all(b >= a for a, b in zip(values, values[1:]))
    assert sp.gmp_sparsity(600) == pytest.approx(0.9 * (1 - 0.5 ** 3))


def test_rigl_keeps_the_count_constant_and_changes_the_mask():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 64), nn.Tanh(), nn.Linear(64, 1))
    sp = Sparsifier(SparsityConfig(method="rigl", include=(r"0\.weight",), block=BLOCK, target=0.8,
                                   min_size=1, every=1, end_step=50, rigl_alpha=0.5), model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    counts, masks = [], [sp.masks["0.weight"].clone()]
    for step in range(1, 8):
        x = torch.randn(32, 32)
        loss = (model(x).squeeze(-1) - x[:, 0]).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sp.after_step(step)
        counts.append(int(sp.masks["0.weight"].sum()))
        masks.append(sp.masks["0.weight"].clone())
        assert int((model[0].weight != 0).sum()) <= counts[-1]
    assert len(set(counts)) == 1 and counts[0] == round(0.2 * 32 * 64 / 4) * 4
    assert any(not torch.equal(a, b) for a, b in zip(masks, masks[1:]))


def test_topkast_backward_set_contains_forward_set(tmp_path):
    objective, _, _ = _train(tmp_path, "topkast", steps=30)
    sp = objective.sparsifier
    for name, fwd in sp.masks.items():
        bwd = sp.backward_masks[name]
        assert bool((bwd | ~fwd).all())  # fwd implies bwd
        assert int(bwd.sum()) > int(fwd.sum())


def test_dsd_ends_dense_after_a_sparse_phase(tmp_path):
    cfg = load_config(TinyRunConfig, None, ["sparsity.method=dsd", "sparsity.target=0.75", "sparsity.start_step=20",
                                            "sparsity.dsd_redense_step=50", "loop.max_steps=80",
                                            "loop.val_every=80", "loop.ckpt_every=40", "model.dropout=0.0"])
    run = Run(TinyObjective(cfg), tmp_path / "dsd")
    run.fit()
    mid = ckpt.load_checkpoint(tmp_path / "dsd" / "checkpoints" / "step_000000040.pt")
    w_mid = mid["modules"]["model"]["net.0.weight"]
    assert (w_mid == 0).float().mean().item() == pytest.approx(0.75)
    w_end = run.modules["model"].net[0].weight
    assert (w_end == 0).float().mean().item() < 0.05


def test_masked_weights_stay_zero_through_adam_steps():
    torch.manual_seed(0)
    model = nn.Linear(16, 32)
    sp = Sparsifier(SparsityConfig(method="random", target=0.5, block=BLOCK, min_size=1,
                                   include=(r"weight",)), model)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for step in range(1, 20):
        loss = model(torch.randn(8, 16)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sp.after_step(step)
        assert torch.equal(model.weight != 0, sp.masks["weight"])


def test_erk_densities_average_to_the_target():
    shapes = {"a": (512, 512), "b": (64, 512), "c": (8, 8)}
    dens = erk_densities(shapes, 0.1)
    total = sum(d * shapes[k][0] * shapes[k][1] for k, d in dens.items())
    assert total / sum(a * b for a, b in shapes.values()) == pytest.approx(0.1)
    assert dens["c"] == 1.0 and dens["b"] > dens["a"]


def test_bad_pattern_is_named():
    with pytest.raises(ValueError, match="matches no weight"):
        Sparsifier(SparsityConfig(method="gmp", include=(r"nothing",)), nn.Linear(64, 64))


def test_topkast_penalty_is_added_to_unscaled_gradients():
    torch.manual_seed(0)
    model = nn.Linear(32, 64)
    sp = Sparsifier(SparsityConfig(method="topkast", target=0.75, block=BLOCK, min_size=1, include=(r"weight",),
                                   topkast_penalty=0.1), model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model(torch.randn(4, 32)).sum().mul(0.0).backward()  # zero loss gradient: what is left is the penalty
    sp.before_optimizer_step(opt)  # the loop calls it after unscaling and clipping
    fwd, bwd, theta, grad = sp.masks["weight"], sp.backward_masks["weight"], sp.dense_copy["weight"], model.weight.grad
    assert torch.allclose(grad[fwd], 0.1 * theta[fwd])
    assert torch.allclose(grad[bwd & ~fwd], 0.1 * theta[bwd & ~fwd] / 0.25)  # scaled by 1/D outside the forward set
    assert bool((grad[~bwd] == 0).all()) and bool((bwd & ~fwd).any())
