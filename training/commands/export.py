"""`sparsewave export RUN_DIR -o BUNDLE`: a run's checkpoint as a bundle."""
from __future__ import annotations

from pathlib import Path

from training import checkpoint as ckpt
from training.errors import CliError
from training.version import package_version


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("export", help="export a run's checkpoint as a servable bundle")
    p.add_argument("run_dir")
    p.add_argument("-o", "--out", required=True, help="bundle directory to write")
    p.add_argument("--checkpoint", help="a checkpoint file (default: the newest in RUN_DIR/checkpoints)")
    p.set_defaults(func=run)


def export_run(run_dir: Path, out: Path, checkpoint: Path | None = None) -> Path:
    from training.commands.resume import objective_for_run

    objective = objective_for_run(run_dir, [])
    path = checkpoint or ckpt.latest_checkpoint(run_dir / "checkpoints")
    if path is None or not Path(path).is_file():
        raise CliError(f"{run_dir}: no checkpoint to export")
    state = ckpt.load_checkpoint(path)
    modules = objective.build()
    for name, module in modules.items():
        module.load_state_dict(state["modules"][name])
    objective.load_state_dict(state["objective"])
    provenance = {"run_dir": str(run_dir), "checkpoint": Path(path).name, "step": int(state["step"]),
                  "task": objective.name, "config": state["config"]}
    return objective.export(modules, str(out), provenance, package_version())


def run(args) -> int:
    out = export_run(Path(args.run_dir), Path(args.out), Path(args.checkpoint) if args.checkpoint else None)
    print(f"wrote bundle {out}")
    return 0
