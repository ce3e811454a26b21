"""`sparsewave serve`: the HTTP service under uvicorn.

The app is named by its import string, so `training` never imports
`service` (DESIGN.md's one-way flow) and `--workers N` works.
"""
from __future__ import annotations

import os

from training.errors import CliError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("serve", help="serve the bundles over HTTP")
    p.add_argument("--host", default=os.environ.get("SPARSEWAVE_HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("SPARSEWAVE_PORT", "8000")))
    p.add_argument("--models", help="directory of bundles to load (env SPARSEWAVE_MODELS_DIR)")
    p.add_argument("--no-defaults", action="store_true", help="do not load the shipped default bundles")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--log-level", default="info")
    p.set_defaults(func=run)


def run(args) -> int:
    import uvicorn

    if args.models is not None:
        if not os.path.isdir(args.models):
            raise CliError(f"--models {args.models}: no such directory")
        os.environ["SPARSEWAVE_MODELS_DIR"] = os.path.abspath(args.models)
    if args.no_defaults:
        os.environ["SPARSEWAVE_LOAD_DEFAULTS"] = "0"
    if args.workers < 1:
        raise CliError("--workers must be at least 1")
    uvicorn.run("service.app:create_app", factory=True, host=args.host, port=args.port,
                workers=args.workers, log_level=args.log_level, timeout_graceful_shutdown=30)
    return 0
