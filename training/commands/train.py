"""`sparsewave train TASK --config FILE [section.key=value ...]`."""
from __future__ import annotations

import time
from pathlib import Path

from training.config import load_config
from training.errors import CliError
from training.tasks import get_task, task_names


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("train", help="train a model from a YAML config",
                              description="Train a model. Tasks: " + ", ".join(task_names()))
    p.add_argument("task", help="what to train (" + ", ".join(task_names()) + ")")
    p.add_argument("--config", help="YAML config (configs/...); defaults apply where it is silent")
    p.add_argument("--run-dir", help="where checkpoints, logs and the resolved config go (default runs/TASK-TIME)")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. optim.lr=3e-4 loop.max_steps=100")
    p.set_defaults(func=run)


def build_objective(task: str, config_path, overrides):
    objective_cls = get_task(task)
    try:
        config = load_config(objective_cls.config_cls, config_path, overrides)
    except (FileNotFoundError, ValueError, TypeError) as exc:
        raise CliError(str(exc)) from None
    return objective_cls(config)


def run(args) -> int:
    from training.loop import Run

    objective = build_objective(args.task, args.config, args.overrides)
    run_dir = Path(args.run_dir or f"runs/{args.task}-{time.strftime('%Y%m%d-%H%M%S')}")
    try:
        metrics = Run(objective, run_dir).fit()
    except (FileExistsError, ValueError) as exc:
        raise CliError(str(exc)) from None
    print(f"finished {args.task} in {run_dir}; validation: {metrics}")
    return 0
