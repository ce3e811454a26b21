"""Subcommands of the `sparsewave` CLI, in the order `--help` lists them."""
from training.commands import (
    bench,
    data,
    evaluate,
    export,
    resume,
    serve,
    synth,
    train,
    transcribe,
)

COMMANDS = [train, resume, export, evaluate, data, synth, transcribe, serve, bench]
