"""Service settings, from the environment (SPARSEWAVE_*), with limits.

Limits and their answers: MAX_UPLOAD_BYTES (request body, 413),
MAX_AUDIO_S (decoded or declared audio length, 413), MAX_TEXT_CHARS (speech
input, 413), MAX_QUEUE (requests queued or running per model, 429 with
Retry-After). BATCH_WAIT_MS and MAX_BATCH shape Batch Dispatch; MAX_BATCH=1
turns batching off. BATCH_SYNTHESIS=1 also batches feed-forward synthesis
(runtimes with `synthesize_batch`); it is off by default because on the CPU
one GAN-TTS call per sentence was faster (`python -m bench.gan_tts --bundle`,
`batched_throughput_gain` 0.76x; docs/service.md).
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from models.bundle import SHIPPED_BUNDLES


def _env(name: str, default: str) -> str:
    return os.environ.get(f"SPARSEWAVE_{name}", default)


@dataclasses.dataclass(frozen=True)
class Settings:
    models_dir: Path | None = None
    load_defaults: bool = True
    defaults_dir: Path = SHIPPED_BUNDLES
    api_keys: tuple[str, ...] = ()
    max_upload_bytes: int = 25 * 1024 * 1024
    max_audio_s: float = 600.0
    max_text_chars: int = 20_000
    max_queue: int = 64
    batch_wait_ms: float = 10.0
    max_batch: int = 16
    batch_synthesis: bool = False
    threads: int = max(2, os.cpu_count() or 2)  # the pool that runs models, decoding and encoding
    drain_timeout_s: float = 30.0

    @classmethod
    def from_env(cls) -> "Settings":
        models = _env("MODELS_DIR", "")
        keys = tuple(k.strip() for k in _env("API_KEYS", "").split(",") if k.strip())
        return cls(
            models_dir=Path(models) if models else None,
            load_defaults=_env("LOAD_DEFAULTS", "1") not in ("0", "false", "no"),
            defaults_dir=Path(_env("DEFAULTS_DIR", str(SHIPPED_BUNDLES))),
            api_keys=keys,
            max_upload_bytes=int(_env("MAX_UPLOAD_BYTES", str(cls.max_upload_bytes))),
            max_audio_s=float(_env("MAX_AUDIO_S", str(cls.max_audio_s))),
            max_text_chars=int(_env("MAX_TEXT_CHARS", str(cls.max_text_chars))),
            max_queue=int(_env("MAX_QUEUE", str(cls.max_queue))),
            batch_wait_ms=float(_env("BATCH_WAIT_MS", str(cls.batch_wait_ms))),
            max_batch=int(_env("MAX_BATCH", str(cls.max_batch))),
            batch_synthesis=_env("BATCH_SYNTHESIS", "0") in ("1", "true", "yes"),
            threads=int(_env("THREADS", str(cls.threads))),
            drain_timeout_s=float(_env("DRAIN_TIMEOUT_S", str(cls.drain_timeout_s))),
        )
