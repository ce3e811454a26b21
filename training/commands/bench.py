"""`sparsewave bench NAME [--quick]`: run a benchmark from bench/ (python -m bench.NAME)."""
from __future__ import annotations

import importlib.util
import runpy
import sys

from training.errors import CliError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("bench", help="run a benchmark (kernels, wavernn, service, sparsity, ...)")
    p.add_argument("name")
    p.add_argument("rest", nargs="*", help="arguments for the benchmark, e.g. --quick")
    p.add_argument("--quick", action="store_true", help="a short run with the same keys")
    p.set_defaults(func=run)


def run(args) -> int:
    module = f"bench.{args.name}"
    if not args.name.isidentifier() or importlib.util.find_spec(module) is None:
        raise CliError(f"no benchmark {args.name!r} in bench/")
    sys.argv = [module, *args.rest, *(["--quick"] if args.quick else [])]
    runpy.run_module(module, run_name="__main__")
    return 0
