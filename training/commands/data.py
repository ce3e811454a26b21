"""`sparsewave data`: build the speech or piano corpus from packaged tools (see docs/data.md)."""
from __future__ import annotations

import os
from pathlib import Path

from training.errors import CliError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("data", help="build the speech or piano corpus",
                              description="Build a corpus from packaged tools (espeak-ng, MBROLA, flite, "
                                          "festival, pico2wave; music21 + fluidsynth). See docs/data.md.")
    p.add_argument("kind", choices=["speech", "piano"])
    p.add_argument("--out", required=True, help="output directory (created)")
    p.add_argument("--limit", type=int, default=None,
                   help="utterances (speech, default 1000) or clips (piano, default 200)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=min(4, os.cpu_count() or 1), help="worker processes")
    p.add_argument("--voices", nargs="+", default=None,
                   help="speech only: voice names, or one preset name: default (28 voices incl. MBROLA, "
                        "for TTS) or asr (espeak-ng accent x variant grid + flite/festival/pico; "
                        "see training/data/voices.py). Default: the default preset, installed voices")
    p.add_argument("--timbres", choices=["plain", "wide"], default="plain",
                   help="piano only: wide varies presets, sample sets, reverb, detune and velocity curve "
                        "per training clip (training/data/piano.py)")
    p.add_argument("--splits", nargs="+", choices=["train", "validation", "test"], default=None,
                   help="piano only: build only these splits (e.g. extra training clips)")
    p.set_defaults(func=run)


def run(args) -> int:
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CliError(f"--out {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        raise CliError(f"--out {out} is not empty; pick a new directory")
    if args.limit is not None and args.limit < 1:
        raise CliError("--limit must be at least 1")
    if args.jobs < 1:
        raise CliError("--jobs must be at least 1")
    if args.kind == "speech":
        if args.timbres != "plain" or args.splits:
            raise CliError("--timbres and --splits apply to the piano corpus only")
        from training.data.speech import build_speech
        from training.data.voices import BY_NAME, PRESETS

        names, preset = args.voices, "default"
        if names and len(names) == 1 and names[0] in PRESETS:
            names, preset = None, names[0]
        unknown = sorted(set(names or []) - set(BY_NAME))
        if unknown:
            raise CliError(f"unknown voices {unknown}; choose a preset {sorted(PRESETS)} or from {sorted(BY_NAME)}")
        try:
            summary = build_speech(out, args.limit or 1000, args.seed, args.jobs, names, preset=preset)
        except ValueError as exc:
            raise CliError(str(exc)) from exc
    else:
        if args.voices:
            raise CliError("--voices applies to the speech corpus only")
        splits = tuple(args.splits or ("train", "validation", "test"))
        from training.data.piano import build_piano

        try:
            summary = build_piano(out, args.limit or 200, args.seed, args.jobs, timbre=args.timbres, splits=splits)
        except ValueError as exc:
            raise CliError(str(exc)) from exc
    for line in summary["lines"]:
        print(line)
    if summary.get("missing_voices"):
        print(f"skipped voices that are not installed: {', '.join(summary['missing_voices'])}")
    print(f"wrote {out}")
    return 0
