"""`sparsewave transcribe [--model BUNDLE | --piano] FILE`: speech to text, or piano to MIDI.

Without --model: the shipped deepspeech2-default, or with --piano the shipped onsets-frames-default."""
from __future__ import annotations

import json

from training.errors import CliError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("transcribe", help="transcribe speech (ASR bundle) or piano audio (piano bundle)")
    p.add_argument("audio")
    p.add_argument("--model", help="bundle directory (default: the shipped deepspeech2-default, or "
                                    "onsets-frames-default with --piano)")
    p.add_argument("--piano", action="store_true", help="piano audio: notes out (MIDI with -o, else JSON); "
                                                        "--model, if given, must be a piano bundle")
    p.add_argument("-o", "--out", help="piano: MIDI file to write; speech: the --format document (default: print)")
    p.add_argument("--format", default="json", choices=["json", "text", "verbose_json", "srt", "vtt"],
                   help="speech only: json (text, duration, words with times and confidence), text, "
                        "verbose_json (OpenAI's: segments and words), srt or vtt subtitles")
    p.add_argument("--stream", action="store_true",
                   help="speech only, streaming bundles: feed the audio in chunks and print each partial "
                        "transcript to stderr as it grows, then the --format document")
    p.add_argument("--chunk-ms", type=int, default=200, help="--stream: audio per chunk (default 200 ms)")
    p.set_defaults(func=run)


def streamed(runtime, audio, chunk_ms: int):
    """Feed `audio` through the runtime's stream, printing partials to stderr; the final transcript."""
    import sys

    if not getattr(runtime, "can_stream", False):
        raise CliError("--stream needs a streaming (unidirectional) bundle, e.g. bundles/deepspeech2-streaming")
    stream = runtime.stream()
    step, said = max(1, runtime.sample_rate * chunk_ms // 1000), ""
    for i in range(0, len(audio), step):
        text = stream.feed(audio[i:i + step])
        if text != said:
            print(f"[{min(i + step, len(audio)) / runtime.sample_rate:6.2f} s] {text}", file=sys.stderr, flush=True)
            said = text
    return stream.finish()


def shipped_bundle(piano: bool) -> str:
    from models.bundle import SHIPPED_BUNDLES

    return str(SHIPPED_BUNDLES / ("onsets-frames-default" if piano else "deepspeech2-default"))


def run(args) -> int:
    from models.audio import AudioError, read_audio, resample
    from models.bundle import BundleError
    from models.inference import load_runtime

    args.model = args.model or shipped_bundle(args.piano)
    try:
        bundle, runtime = load_runtime(args.model)
        audio, sample_rate = read_audio(args.audio)
        audio = resample(audio, sample_rate, runtime.sample_rate)
    except (BundleError, AudioError, FileNotFoundError) as exc:
        raise CliError(str(exc)) from None
    task = bundle.manifest.get("task")
    if args.piano and task != "piano":
        raise CliError(f"--piano needs a piano bundle; {args.model} is a {task} bundle")
    if task == "asr":
        from models.subtitles import format_transcript

        if args.chunk_ms <= 0:
            raise CliError(f"--chunk-ms must be positive, not {args.chunk_ms}")
        transcript = streamed(runtime, audio, args.chunk_ms) if args.stream else runtime.transcribe_batch([audio])[0]
        text = format_transcript(transcript, args.format)
    elif task == "piano":
        if args.stream:
            raise CliError("--stream applies to speech bundles only")
        if args.format != "json":
            raise CliError("--format applies to speech bundles only (piano: -o writes MIDI, else JSON)")
        notes = runtime.transcribe(audio)
        if args.out:
            from models.midi import notes_to_midi

            notes_to_midi(notes).write(args.out)
            print(f"wrote {args.out}: {len(notes)} notes")
            return 0
        text = json.dumps({"notes": [n.__dict__ for n in notes]}, indent=2) + "\n"
    else:
        raise CliError(f"{args.model} is a {task} bundle; transcribe needs an asr or piano bundle")
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text)
    else:
        print(text, end="")
    return 0
