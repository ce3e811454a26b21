"""Subcommands of the `sparsewave` CLI, in the order `--help` lists them."""
from training.commands import (
    bench,
    data,
    evaluate,
    export,
    lm,
    resume,
    serve,
    synth,
    train,
    transcribe,
)

COMMANDS = [train, resume, export, evaluate, lm, data, synth, transcribe, serve, bench]
