"""`sparsewave eval KIND ...`: figures on held-out data."""
from __future__ import annotations

from training.errors import CliError

KINDS = ("asr", "eats", "fdsd", "onsets-frames", "parallel-wavenet", "tts", "wavernn")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("eval", help="evaluate a bundle on held-out data")
    p.add_argument("kind", help="what to evaluate (" + ", ".join(KINDS) + ")")
    p.add_argument("--model", help="bundle directory")
    p.add_argument("--data", help="held-out data directory")
    p.add_argument("--recognizer", help="fdsd: Deep Speech 2 bundle for the features (default bundles/deepspeech2-default)")
    p.add_argument("--reference", default="auto", choices=("auto", "corpus", "mbrola-labels"),
                   help="fdsd: real audio from the corpus's held-out recordings, or MBROLA renders of exact "
                        "labels (GAN-TTS); auto: mbrola-labels for GAN-TTS, corpus otherwise")
    p.add_argument("--teacher", help="parallel-wavenet: the WaveNet teacher bundle the student was distilled from")
    p.add_argument("--split", default="test", help="parallel-wavenet, wavernn: corpus split (default test)")
    p.add_argument("--limit", type=int, default=4, help="parallel-wavenet, wavernn: held-out utterances (default 4)")
    p.add_argument("--teacher-seconds", type=float, default=0.25,
                   help="parallel-wavenet: seconds the (slow) teacher generates per utterance (default 0.25)")
    p.set_defaults(func=run)


def eval_asr(args) -> int:
    """WER/CER of an ASR bundle on the corpus's test split (held-out voices and sentences)."""
    import json

    from models.bundle import BundleError
    from models.inference import load_runtime
    from training.objectives.deepspeech2 import evaluate_transcriber, row_voice, split_audio

    if not args.model or not args.data:
        raise CliError("eval asr needs --model BUNDLE and --data CORPUS_DIR")
    try:
        _, runtime = load_runtime(args.model)
        audio, refs, rows = split_audio(args.data, "test", sample_rate=runtime.sample_rate)
    except (BundleError, FileNotFoundError, ValueError) as exc:
        raise CliError(str(exc)) from None
    print(json.dumps({"split": "test", **evaluate_transcriber(runtime, audio, refs,
                                                             voices=[row_voice(r) for r in rows])}))
    return 0


def eval_fdsd(args) -> int:
    """FDSD/KDSD/cFDSD/cKDSD of a TTS bundle on held-out sentences, next to the real-audio floor."""
    import json
    from pathlib import Path

    from models.bundle import BundleError
    from training.objectives.tts_eval import evaluate_fdsd

    recognizer = args.recognizer or "bundles/deepspeech2-default"
    if not Path(recognizer).is_dir():
        raise CliError(f"eval fdsd is not available yet: it needs a Deep Speech 2 bundle for its features "
                       f"(none at {recognizer}; pass --recognizer DS2_BUNDLE)")
    if not args.model or not args.data:
        raise CliError("eval fdsd needs --model BUNDLE and --data CORPUS_DIR")
    try:
        print(json.dumps(evaluate_fdsd(args.model, args.data, recognizer, reference=args.reference)))
    except (BundleError, FileNotFoundError, ValueError) as exc:
        raise CliError(str(exc)) from None
    return 0


def eval_onsets_frames(args) -> int:
    """Note, note-with-offset(-and-velocity) and frame F1 (mir_eval) of a piano bundle on a MAESTRO-layout test split."""
    import json

    from models.bundle import BundleError
    from models.inference import load_runtime
    from training.data.readers import CorpusError
    from training.objectives.onsets_frames import evaluate_transcriber, split_records

    if not args.model or not args.data:
        raise CliError("eval onsets-frames needs --model BUNDLE and --data MAESTRO_DIR")
    try:
        _, runtime = load_runtime(args.model)
        result = evaluate_transcriber(runtime, split_records(args.data, "test"))
    except (BundleError, CorpusError, FileNotFoundError, ValueError) as exc:
        raise CliError(str(exc)) from None
    print(json.dumps({"split": "test", **result}))
    return 0


def eval_tts(args) -> int:
    """pocketsphinx WER of a TTS bundle's speech for held-out sentences, next to the WER on reference audio."""
    import json

    from models.bundle import BundleError
    from training.objectives.wavernn import evaluate_intelligibility

    if not args.model or not args.data:
        raise CliError("eval tts needs --model BUNDLE and --data CORPUS_DIR")
    try:
        print(json.dumps(evaluate_intelligibility(args.model, args.data)))
    except (BundleError, FileNotFoundError, ValueError) as exc:
        raise CliError(str(exc)) from None
    return 0


def eval_wavernn(args) -> int:
    """WaveRNN resynthesis of held-out utterances from their own features (log-mel: copy-synthesis; exact
    labels: linguistic bundles): STOI, PESQ, log-mel L1 next to a noise floor; pocketsphinx WER."""
    import json

    from models.bundle import BundleError
    from training.objectives.wavernn import evaluate_resynthesis

    if not args.model or not args.data:
        raise CliError("eval wavernn needs --model BUNDLE and --data CORPUS_DIR")
    if args.limit < 1:
        raise CliError("eval wavernn: --limit must be >= 1")
    try:
        print(json.dumps(evaluate_resynthesis(args.model, args.data, args.split, args.limit)))
    except (BundleError, FileNotFoundError, KeyError, ValueError) as exc:
        raise CliError(str(exc)) from None
    return 0


def eval_eats(args) -> int:
    """EATS: pocketsphinx WER next to the reference audio's, predicted total durations, and pause timing
    against exact MBROLA labels where the corpus has them."""
    import json

    from models.bundle import BundleError
    from training.objectives.eats_eval import evaluate_eats

    if not args.model or not args.data:
        raise CliError("eval eats needs --model BUNDLE and --data CORPUS_DIR")
    try:
        print(json.dumps(evaluate_eats(args.model, args.data)))
    except (BundleError, FileNotFoundError, ValueError) as exc:
        raise CliError(str(exc)) from None
    return 0


def eval_parallel_wavenet(args) -> int:
    """Copy-synthesis from the reference log-mel of held-out utterances: student and teacher log-mel
    distances next to the silence and noise floors, teacher bits per sample, pocketsphinx WER."""
    import json

    from models.bundle import BundleError
    from training.objectives.parallel_wavenet import evaluate_copy_synthesis

    if not args.model or not args.teacher or not args.data:
        raise CliError("eval parallel-wavenet needs --model STUDENT_BUNDLE --teacher WAVENET_BUNDLE --data CORPUS_DIR")
    if args.limit < 1 or not 0 < args.teacher_seconds <= 10:
        raise CliError("eval parallel-wavenet: --limit must be >= 1 and --teacher-seconds in (0, 10]")
    try:
        print(json.dumps(evaluate_copy_synthesis(args.teacher, args.model, args.data, args.split, args.limit,
                                                 teacher_seconds=args.teacher_seconds, wer=True)))
    except (BundleError, FileNotFoundError, KeyError, ValueError) as exc:
        raise CliError(str(exc)) from None
    return 0


def run(args) -> int:
    if args.kind == "eats":
        return eval_eats(args)
    if args.kind == "tts":
        return eval_tts(args)
    if args.kind == "fdsd":
        return eval_fdsd(args)
    if args.kind == "asr":
        return eval_asr(args)
    if args.kind == "onsets-frames":
        return eval_onsets_frames(args)
    if args.kind == "parallel-wavenet":
        return eval_parallel_wavenet(args)
    if args.kind == "wavernn":
        return eval_wavernn(args)
    raise CliError(f"unknown evaluation {args.kind!r}; known: {', '.join(KINDS)}")
