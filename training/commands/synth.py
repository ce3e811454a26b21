"""`sparsewave synth --model BUNDLE "text" -o out.wav`."""
from __future__ import annotations

import numpy as np

from training.errors import CliError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("synth", help="synthesize speech from text with a TTS bundle")
    p.add_argument("text")
    p.add_argument("--model", required=True, help="bundle directory")
    p.add_argument("-o", "--out", required=True, help="output audio file (.wav, .flac, .ogg)")
    p.add_argument("--voice", help="speaker name (see the bundle's voices)")
    p.add_argument("--speed", type=float, default=1.0)
    p.add_argument("--timings", action="store_true", help="also print phoneme/word timings (models that give them)")
    p.set_defaults(func=run)


def load_task_runtime(path: str, task: str):
    from models.bundle import BundleError
    from models.inference import load_runtime

    try:
        bundle, runtime = load_runtime(path)
    except BundleError as exc:
        raise CliError(str(exc)) from None
    if bundle.manifest.get("task") != task:
        raise CliError(f"{path} is a {bundle.manifest.get('task')} bundle, not a {task} one")
    return bundle, runtime


def run(args) -> int:
    import soundfile as sf

    if not args.text.strip():
        raise CliError("the text is empty")
    _, synth = load_task_runtime(args.model, "tts")
    if args.voice is not None and args.voice not in synth.voices:
        raise CliError(f"unknown voice {args.voice!r}; this model has: {', '.join(synth.voices)}")
    try:
        audio = np.concatenate(list(synth.synthesize(args.text, voice=args.voice, speed=args.speed)))
    except ValueError as exc:  # the runtime refuses its input (e.g. a mel vocoder given text): one line
        raise CliError(str(exc)) from None
    sf.write(args.out, audio, synth.sample_rate)
    print(f"wrote {args.out}: {len(audio) / synth.sample_rate:.2f} s at {synth.sample_rate} Hz")
    if args.timings:
        timings = getattr(synth, "last_timings", None)
        if timings is None:
            raise CliError("this model does not report timings")
        for item in timings:
            print(item)
    return 0
