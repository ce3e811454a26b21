"""Health, readiness, the model list, Prometheus metrics and the web page."""
from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.errors import ApiError

router = APIRouter()
STATIC = Path(__file__).resolve().parents[1] / "static"
# The page's files, read once; requests name an entry of this table, never a path.
PAGE_FILES = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
              "style.css": "text/css; charset=utf-8"}
_cache: dict[str, bytes] = {}


def page_file(name: str) -> bytes:
    if name not in _cache:
        _cache[name] = (STATIC / name).read_bytes()
    return _cache[name]


@router.get("/healthz")
async def healthz(request: Request):
    registry = getattr(request.app.state, "registry", None)
    return {"status": "ok", "models": sorted(registry.models) if registry else []}


@router.get("/readyz")
async def readyz(request: Request):
    registry = getattr(request.app.state, "registry", None)
    if not request.app.state.ready or registry is None:
        return JSONResponse({"ready": False, "models": [], "failed": {}}, status_code=503)
    return {"ready": True, "models": sorted(registry.models), "failed": registry.failed}


@router.get("/v1/models")
async def list_models(request: Request):
    return {"object": "list", "data": [m.describe() for m in request.app.state.registry.models.values()]}


@router.get("/v1/models/{model_id}")
async def get_model(request: Request, model_id: str):
    model = request.app.state.registry.models.get(model_id)
    if model is None:
        raise ApiError(404, f"the model {model_id[:100]!r} does not exist", "model_not_found")
    return model.describe()


@router.get("/metrics")
async def metrics(request: Request):
    m = request.app.state.metrics
    workers = getattr(request.app.state, "workers", None)
    for name, depth in (workers.queue_depths() if workers else {}).items():
        m.queue_depth.labels(name).set(depth)
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def index():
    return Response(page_file("index.html"), media_type=PAGE_FILES["index.html"])


@router.get("/static/app.js", include_in_schema=False)
async def app_js():
    return Response(page_file("app.js"), media_type=PAGE_FILES["app.js"])


@router.get("/static/style.css", include_in_schema=False)
async def style_css():
    return Response(page_file("style.css"), media_type=PAGE_FILES["style.css"])
