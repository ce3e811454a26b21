"""The sparsewave HTTP service: `create_app(settings)`.

Bundles load in the lifespan handler into `app.state.registry`; a bundle
that fails to load is listed in /readyz and the log, and the rest serve.
"""
from __future__ import annotations

import contextlib
import logging
import time
import uuid

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

from service.errors import install_error_handlers
from service.registry import ModelRegistry
from service.settings import Settings

log = logging.getLogger("sparsewave.service")
OPEN_PATHS = {"/healthz", "/readyz", "/metrics", "/", "/docs", "/openapi.json"}


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter("sparsewave_requests_total", "HTTP requests", ["path", "status"],
                                registry=self.registry)
        self.latency = Histogram("sparsewave_request_seconds", "HTTP request latency", ["path"],
                                 registry=self.registry)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings.from_env()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        registry = ModelRegistry()
        if settings.load_defaults:
            registry.load_dir(settings.defaults_dir)
        if settings.models_dir is not None:
            registry.load_dir(settings.models_dir)
        app.state.registry = registry
        app.state.ready = True
        log.info("serving %d model(s); %d failed to load", len(registry.models), len(registry.failed))
        yield
        app.state.ready = False

    app = FastAPI(title="sparsewave", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.ready = False
    app.state.metrics = Metrics()
    install_error_handlers(app)

    @app.middleware("http")
    async def request_context(request: Request, call_next):
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex[:16]
        start = time.perf_counter()
        if settings.api_keys and request.url.path not in OPEN_PATHS:
            auth = request.headers.get("authorization", "")
            token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
            if token not in settings.api_keys:
                body = {"error": {"message": "missing or invalid API key", "type": "invalid_request_error",
                                  "code": "invalid_api_key"}}
                return JSONResponse(body, status_code=401, headers={"x-request-id": request_id})
        response = await call_next(request)
        elapsed = time.perf_counter() - start
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        app.state.metrics.requests.labels(path, str(response.status_code)).inc()
        app.state.metrics.latency.labels(path).observe(elapsed)
        response.headers["x-request-id"] = request_id
        log.info("request_id=%s method=%s path=%s status=%d ms=%.1f", request_id, request.method,
                 request.url.path, response.status_code, elapsed * 1000)
        return response

    @app.get("/healthz")
    async def healthz(request: Request):
        registry: ModelRegistry | None = getattr(request.app.state, "registry", None)
        models = sorted(registry.models) if registry else []
        return {"status": "ok", "models": models}

    @app.get("/readyz")
    async def readyz(request: Request):
        registry: ModelRegistry | None = getattr(request.app.state, "registry", None)
        if not request.app.state.ready or registry is None:
            return JSONResponse({"ready": False, "models": [], "failed": {}}, status_code=503)
        return {"ready": True, "models": sorted(registry.models), "failed": registry.failed}

    @app.get("/v1/models")
    async def list_models(request: Request):
        registry: ModelRegistry = request.app.state.registry
        return {"object": "list", "data": [m.describe() for m in registry.models.values()]}

    @app.get("/metrics")
    async def metrics(request: Request):
        return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
