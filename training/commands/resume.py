"""`sparsewave resume RUN_DIR [section.key=value ...]`: continue from the last checkpoint."""
from __future__ import annotations

import json
from pathlib import Path

from training.errors import CliError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("resume", help="continue a run from its last checkpoint")
    p.add_argument("run_dir")
    p.add_argument("overrides", nargs="*", help="e.g. loop.max_steps=20000 to train further")
    p.set_defaults(func=run)


def objective_for_run(run_dir: Path, overrides: list[str]):
    from training.commands.train import build_objective

    meta_file, config_file = run_dir / "meta.json", run_dir / "config.yaml"
    if not meta_file.is_file() or not config_file.is_file():
        raise CliError(f"{run_dir} is not a run directory (no meta.json/config.yaml)")
    task = json.loads(meta_file.read_text())["task"]
    return build_objective(task, config_file, overrides)


def run(args) -> int:
    from training.loop import Run

    run_dir = Path(args.run_dir)
    objective = objective_for_run(run_dir, args.overrides)
    try:
        metrics = Run(objective, run_dir, resume=True).fit()
    except (FileNotFoundError, ValueError) as exc:
        raise CliError(str(exc)) from None
    print(f"finished {objective.name} in {run_dir}; validation: {metrics}")
    return 0
