"""The `sparsewave` command line: one subcommand per module in training/commands/.

Each command module defines `add_parser(subparsers)` which registers its
parser and sets `func(args) -> int`. Errors a user can fix are raised as
`CliError` and printed as one line with a non-zero exit.
"""
from __future__ import annotations

import argparse
import sys

from training.commands import COMMANDS
from training.errors import CliError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sparsewave",
        description="Train, export, evaluate and serve sparsewave speech and audio models.",
    )
    parser.add_argument("--version", action="store_true", help="print the package version and exit")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS:
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # Dotted overrides may follow options (train TASK --config X a.b=1), which
    # argparse's positional matching does not allow; collect them here.
    args, extras = parser.parse_known_args(argv)
    if extras:
        bad = [e for e in extras if e.startswith("-") or "=" not in e]
        if bad or not hasattr(args, "overrides"):
            parser.error(f"unrecognized arguments: {' '.join(bad or extras)}")
        args.overrides = [*args.overrides, *extras]
    if args.version:
        from training.version import package_version

        print(package_version())
        return 0
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except CliError as exc:
        print(f"sparsewave {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"sparsewave {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
