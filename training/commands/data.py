"""`sparsewave data`: build corpora (speech, piano)."""
from __future__ import annotations

from training.errors import CliError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("data", help="build the speech or piano corpus")
    p.add_argument("kind", choices=["speech", "piano"])
    p.add_argument("--out", required=True)
    p.set_defaults(func=run)


def run(args) -> int:
    raise CliError(f"the {args.kind} corpus builder is not part of this build yet (issue 3)")
