"""What the routes share: model lookup, content-type checks, queue refusals."""
from __future__ import annotations

from fastapi import Request

from service.batching import QueueFull
from service.errors import ApiError
from service.registry import LoadedModel

TASK_NAMES = {"tts": "speech synthesis", "asr": "speech recognition", "piano": "piano transcription"}


def lookup_model(request: Request, name: str, task: str) -> LoadedModel:
    """The loaded model called `name`, for `task`. Names are only ever keys of the registry."""
    registry = request.app.state.registry
    model = registry.models.get(name)
    if model is None:
        choices = ", ".join(sorted(m.name for m in registry.of_task(task))) or "none loaded"
        raise ApiError(404, f"the model {name[:100]!r} does not exist; {TASK_NAMES[task]} models: {choices}",
                       "model_not_found")
    if model.task != task:
        raise ApiError(400, f"the model {name!r} does {TASK_NAMES.get(model.task, model.task)}, "
                       f"not {TASK_NAMES[task]}", "wrong_model_kind")
    return model


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def require_json(request: Request) -> None:
    kind = _media_type(request)
    if kind != "application/json" and not kind.endswith("+json"):
        raise ApiError(415, f"send the request as application/json, not {kind or 'no content type'}",
                       "unsupported_media_type")


async def require_multipart(request: Request) -> None:
    kind = _media_type(request)
    if kind != "multipart/form-data":
        raise ApiError(415, f"send the request as multipart/form-data with a 'file' part, not "
                       f"{kind or 'no content type'}", "unsupported_media_type")


def queue_full(request: Request, exc: QueueFull, model: str) -> ApiError:
    request.app.state.metrics.rejected.labels("queue_full").inc()
    return ApiError(429, f"the model {model!r} has too many requests waiting; retry after {exc.retry_after_s} s",
                    "queue_full", headers={"Retry-After": str(exc.retry_after_s)})


async def read_upload(request: Request, upload) -> bytes:
    """The uploaded file's bytes, within the upload limit (413)."""
    limit = request.app.state.settings.max_upload_bytes
    data = await upload.read(limit + 1)
    if len(data) > limit:
        request.app.state.metrics.rejected.labels("upload_too_large").inc()
        raise ApiError(413, f"the file is larger than {limit} bytes", "file_too_large")
    return data
