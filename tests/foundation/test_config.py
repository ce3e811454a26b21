import pytest

from training.config import load_config
from tiny_task import TinyRunConfig


def test_yaml_and_dotted_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  lr: 0.5\nloop:\n  max_steps: 7\n")
    cfg = load_config(TinyRunConfig, path, ["optim.lr=3e-4", "model.hidden=5", "optim.betas=[0.8, 0.9]"])
    assert cfg.optim.lr == pytest.approx(3e-4)
    assert cfg.loop.max_steps == 7
    assert cfg.model.hidden == 5
    assert cfg.optim.betas == (0.8, 0.9)


def test_unknown_key_is_named():
    with pytest.raises(ValueError, match="unknown field.*hiden"):
        load_config(TinyRunConfig, None, ["model.hiden=5"])


def test_wrong_type_is_named():
    with pytest.raises(ValueError, match="expected int"):
        load_config(TinyRunConfig, None, ["loop.max_steps=lots"])


def test_malformed_override():
    with pytest.raises(ValueError, match="section.key=value"):
        load_config(TinyRunConfig, None, ["loop.max_steps"])


def test_partial_section_keeps_the_run_configs_own_defaults():
    cfg = load_config(TinyRunConfig, None, ["sparsity.method=gmp"])
    assert cfg.sparsity.method == "gmp"
    assert cfg.sparsity.block == (4, 1)  # TinyRunConfig's default, not SparsityConfig's (16, 1)
    assert cfg.loop.ckpt_every == 20
