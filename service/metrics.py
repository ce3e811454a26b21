"""Prometheus metrics of one app (its own CollectorRegistry, so tests can run several apps)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)
RTF_BUCKETS = (0.001, 0.003, 0.01, 0.03, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)


class Metrics:
    def __init__(self):
        r = self.registry = CollectorRegistry()
        self.requests = Counter("sparsewave_requests_total", "HTTP requests", ["path", "status"], registry=r)
        self.latency = Histogram("sparsewave_request_seconds", "HTTP request latency (to the response head)",
                                 ["path"], registry=r)
        self.queue_depth = Gauge("sparsewave_queue_depth", "requests queued or running, per model", ["model"],
                                 registry=r)
        self.batch_size = Histogram("sparsewave_batch_size", "requests per batch", ["model"],
                                    buckets=BATCH_BUCKETS, registry=r)
        self.batch_seconds = Histogram("sparsewave_batch_seconds", "time to run one batch", ["model"], registry=r)
        self.real_time_factor = Histogram("sparsewave_real_time_factor", "compute seconds per second of audio",
                                          ["model", "task"], buckets=RTF_BUCKETS, registry=r)
        self.audio_seconds = Counter("sparsewave_audio_seconds_total", "seconds of audio heard or made",
                                     ["model", "task"], registry=r)
        self.first_audio = Histogram("sparsewave_tts_first_audio_seconds",
                                     "request start to the first audio chunk ready", ["model"], registry=r)
        self.rejected = Counter("sparsewave_rejected_total", "requests refused by a limit", ["reason"], registry=r)

    def observe_work(self, model: str, task: str, compute_s: float, audio_s: float) -> None:
        self.audio_seconds.labels(model, task).inc(audio_s)
        if audio_s > 0:
            self.real_time_factor.labels(model, task).observe(compute_s / audio_s)
