"""`sparsewave eval KIND ...`: figures on held-out data."""
from __future__ import annotations

from training.errors import CliError

# Each evaluation lands with its model; until then the message names what is missing.
PLANNED = {
    "fdsd": "Frechet/Kernel DeepSpeech Distance needs the GAN-TTS model and Deep Speech 2 (issues 7, 9)",
    "onsets-frames": "piano note/frame F1 needs the Onsets and Frames model (issue 10)",
    "asr": "word error rate needs the Deep Speech 2 recognizer (issue 9)",
    "tts": "intelligibility and copy-synthesis quality need a TTS model (issue 5)",
}


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("eval", help="evaluate a bundle on held-out data")
    p.add_argument("kind", help="what to evaluate (" + ", ".join(sorted(PLANNED)) + ")")
    p.add_argument("--model", help="bundle directory")
    p.add_argument("--data", help="held-out data directory")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.kind in PLANNED:
        raise CliError(f"eval {args.kind} is not available yet: {PLANNED[args.kind]}")
    raise CliError(f"unknown evaluation {args.kind!r}; known: {', '.join(sorted(PLANNED))}")
