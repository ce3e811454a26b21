"""The sparsewave HTTP service: `create_app(settings)`.

Bundles load in the lifespan handler into `app.state.registry`; a bundle
that fails to load is listed in /readyz and the log, and the rest serve.
On shutdown the lifespan drains the batchers, so queued work finishes
(uvicorn's timeout_graceful_shutdown lets in-flight responses end first).
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import time
import uuid

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from service.errors import ApiError, error_body, install_error_handlers
from service.metrics import Metrics
from service.registry import ModelRegistry
from service.routes import meta, music, speech, transcriptions
from service.settings import Settings
from service.workers import Workers

log = logging.getLogger("sparsewave.service")
OPEN_PATHS = {"/healthz", "/readyz", "/metrics", "/", "/static/app.js", "/static/style.css", "/openapi.json"}


class BodyLimit:
    """ASGI middleware: 413 for a request body over `limit` bytes, by its
    Content-Length up front or by counting a chunked body as it arrives."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            response = JSONResponse(error_body(f"the request body is larger than {self.limit} bytes",
                                               "file_too_large"), status_code=413)
            return await response(scope, receive, send)
        received = 0

        async def limited():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise ApiError(413, f"the request body is larger than {self.limit} bytes", "file_too_large")
            return message

        await self.app(scope, limited, send)


class RequestContext:
    """ASGI middleware: request id (echoed in `x-request-id`), bearer-token
    auth, metrics and one log line per request, taken at the response head.
    Plain ASGI rather than `@app.middleware("http")`: Starlette's
    BaseHTTPMiddleware runs every request through an extra task and memory
    stream; dropping it cut the server's CPU per transcription under load
    by a fifth (27.4 -> 22 ms, docs/service.md)."""

    def __init__(self, app, settings: Settings, metrics: Metrics):
        self.app, self.settings, self.metrics = app, settings, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        request_id = re.sub(r"[^A-Za-z0-9._-]", "", headers.get(b"x-request-id", b"").decode("latin-1"))[:64]
        request_id = request_id or uuid.uuid4().hex[:16]
        start = time.perf_counter()
        method, path = scope["method"], scope["path"]
        if self.settings.api_keys and path not in OPEN_PATHS:
            auth = headers.get(b"authorization", b"").decode("latin-1")
            token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
            if token not in self.settings.api_keys:
                log.info("request_id=%s method=%s path=%s status=401", request_id, method, path)
                response = JSONResponse(error_body("missing or invalid API key", "invalid_api_key"),
                                        status_code=401, headers={"x-request-id": request_id})
                return await response(scope, receive, send)

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []),
                                                  (b"x-request-id", request_id.encode())]}
                elapsed = time.perf_counter() - start
                status = message["status"]
                route = getattr(scope.get("route"), "path", "unmatched")
                self.metrics.requests.labels(route, str(status)).inc()
                self.metrics.latency.labels(route).observe(elapsed)
                log.info("request_id=%s method=%s path=%s status=%d ms=%.1f", request_id, method, path,
                         status, elapsed * 1000)
            await send(message)

        await self.app(scope, receive, send_with_id)


def configure_logging() -> None:
    """One key=value line per event on stderr, unless the host application set up logging for us."""
    root = logging.getLogger("sparsewave")
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"))
        root.addHandler(handler)
        root.setLevel(os.environ.get("SPARSEWAVE_LOG_LEVEL", "INFO").upper())
        root.propagate = False


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings.from_env()
    configure_logging()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        registry = ModelRegistry()
        if settings.load_defaults:
            registry.load_dir(settings.defaults_dir)
        if settings.models_dir is not None:
            registry.load_dir(settings.models_dir)
        app.state.registry = registry
        app.state.workers = Workers(registry, settings, app.state.metrics)
        app.state.ready = True
        log.info("serving %d model(s); %d failed to load", len(registry.models), len(registry.failed))
        yield
        app.state.ready = False
        await app.state.workers.close(settings.drain_timeout_s)
        log.info("drained; stopped")

    # no /docs or /redoc: FastAPI's pages load their scripts from a CDN; /openapi.json stays
    app = FastAPI(title="sparsewave", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Speech synthesis, speech recognition and piano transcription; "
                              "OpenAI-shaped audio endpoints.")
    app.state.settings = settings
    app.state.ready = False
    app.state.metrics = Metrics()
    install_error_handlers(app)
    for module in (meta, speech, transcriptions, music):
        app.include_router(module.router)
    # slack over the file limit for the multipart framing and the other fields
    app.add_middleware(BodyLimit, limit=settings.max_upload_bytes + 64 * 1024)

    app.add_middleware(RequestContext, settings=settings, metrics=app.state.metrics)
    return app
