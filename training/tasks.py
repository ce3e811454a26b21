"""The explicit registry of training tasks: CLI name -> Objective class.

Each model family adds one line to `_builtin_tasks`; `register_task` is for
objectives defined outside the package (the loop's own tests use it).
"""
from __future__ import annotations

from training.errors import CliError
from training.objective import Objective

_EXTRA: dict[str, type[Objective]] = {}

# What each planned task needs, for a clear message until it lands.
PLANNED: dict[str, str] = {}


def _builtin_tasks() -> dict[str, type[Objective]]:
    return {
        "deepspeech2": __import__("training.objectives.deepspeech2", fromlist=["X"]).DeepSpeech2Objective,
        "wavernn": __import__("training.objectives.wavernn", fromlist=["X"]).WaveRNNObjective,
        "gan-tts": __import__("training.objectives.gan_tts", fromlist=["GanTTSObjective"]).GanTTSObjective,
        "wavenet": __import__("training.objectives.wavenet", fromlist=["X"]).WaveNetObjective,
        "parallel-wavenet": __import__("training.objectives.parallel_wavenet", fromlist=["X"]).ParallelWaveNetObjective,
        "onsets-frames": __import__("training.objectives.onsets_frames", fromlist=["X"]).OnsetsFramesObjective,
        "eats": __import__("training.objectives.eats", fromlist=["X"]).EATSObjective,
    }


def register_task(objective: type[Objective]) -> type[Objective]:
    _EXTRA[objective.name] = objective
    return objective


def task_names() -> list[str]:
    return sorted({*_builtin_tasks(), *_EXTRA, *PLANNED})


def get_task(name: str) -> type[Objective]:
    tasks = {**_builtin_tasks(), **_EXTRA}
    if name in tasks:
        return tasks[name]
    if name in PLANNED:
        raise CliError(f"task {name!r} is not available yet: this build lacks {PLANNED[name]}")
    raise CliError(f"unknown task {name!r}; known: {', '.join(task_names())}")
