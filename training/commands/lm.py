"""`sparsewave lm build|tune`: the word n-gram LM of the speech recognizer.

    sparsewave lm build --out data/lm/lm.arpa --exclude-corpus data/speech
    sparsewave lm tune --model bundles/deepspeech2-default --data data/speech

`build` writes a Kneser-Ney ARPA from the packaged text sources, leaving out
every sentence of the corpus's held-out splits. `tune` grid-searches the LM
weight and word bonus on the validation split and rewrites the bundle's
inference defaults.
"""
from __future__ import annotations

import time
from pathlib import Path

from training.errors import CliError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("lm", help="build the n-gram LM (ARPA) or tune its decoding weights")
    sub = p.add_subparsers(dest="lm_command", required=True)
    b = sub.add_parser("build", help="write an ARPA n-gram LM from fortunes and WordNet examples")
    b.add_argument("--out", required=True, help="ARPA file to write")
    b.add_argument("--order", type=int, default=3)
    b.add_argument("--min-counts", default="1,2,2",
                   help="per order, drop n-grams seen fewer times (default 1,2,2: keeps the LM a few MB)")
    b.add_argument("--splits", default="train",
                   help="sentence splits of training/data/sentences.py to use (default train: never a held-out one)")
    b.add_argument("--exclude-corpus", action="append", default=[],
                   help="speech corpus whose held-out sentences (valid, test) are left out; repeatable")
    b.set_defaults(func=run_build)
    t = sub.add_parser("tune", help="grid-search lm_weight and word_bonus on a validation split")
    t.add_argument("--model", required=True, help="bundle directory (with lm.arpa)")
    t.add_argument("--data", required=True, help="speech corpus directory")
    t.add_argument("--split", default="valid")
    t.add_argument("--limit", type=int, default=200, help="utterances used")
    t.add_argument("--lm-weights", default="0,0.25,0.5,0.75,1.0,1.5")
    t.add_argument("--word-bonuses", default="-1,0,1,2,3")
    t.add_argument("--decoder", default="beam", choices=["beam", "flashlight"],
                   help="beam: our prefix beam search; flashlight: torchaudio's lexicon decoder")
    t.add_argument("--engine", choices=["native", "torch", "onnx"],
                   help="also set the acoustic model's engine (native: C recurrent kernel; onnx: onnxruntime "
                        "on the bundle's model.onnx; 2 threads)")
    t.set_defaults(func=run_tune)


def run_build(args) -> int:
    from training.lm import build_kneser_ney, corpus_sentences, write_arpa

    exclude: list[str] = []
    for root in args.exclude_corpus:
        from training.objectives.deepspeech2 import read_labels

        try:
            exclude += [r.get("normalized") or r.get("text", "") for r in read_labels(root)
                        if r.get("split") != "train"]
        except FileNotFoundError as exc:
            raise CliError(str(exc)) from None
    try:
        min_counts = tuple(int(x) for x in args.min_counts.split(","))
    except ValueError:
        raise CliError(f"--min-counts {args.min_counts!r}: expected integers like 1,2,2") from None
    t0 = time.perf_counter()
    sentences = corpus_sentences(tuple(args.splits.split(",")), exclude=exclude)
    if not sentences:
        raise CliError("no sentences found: install the fortunes, fortunes-min and wordnet-base packages")
    tables = build_kneser_ney(sentences, order=args.order, min_counts=min_counts)
    path = write_arpa(tables, args.out)
    counts = ", ".join(f"{n}-grams {len(t)}" for n, t in tables.items())
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB) from {len(sentences)} sentences "
          f"({len(exclude)} held-out sentences excluded): {counts}; {time.perf_counter() - t0:.1f} s")
    return 0


def run_tune(args) -> int:
    from models.bundle import BundleError, load_bundle
    from training.objectives.deepspeech2 import tune_bundle

    try:
        bundle = load_bundle(args.model)
    except BundleError as exc:
        raise CliError(str(exc)) from None
    weights = [float(x) for x in args.lm_weights.split(",")]
    bonuses = [float(x) for x in args.word_bonuses.split(",")]
    try:
        best, table = tune_bundle(bundle, Path(args.data), args.split, args.limit, weights, bonuses, args.decoder,
                                  args.engine)
    except (FileNotFoundError, ValueError) as exc:
        raise CliError(str(exc)) from None
    for (w, b), (wer, cer) in table.items():
        print(f"lm_weight={w:<5} word_bonus={b:<5} WER {wer:.4f} CER {cer:.4f}")
    print(f"best: lm_weight={best[0]} word_bonus={best[1]}; written into {args.model}/manifest.json")
    return 0
