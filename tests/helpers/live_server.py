"""A real uvicorn on 127.0.0.1 (a free port, in a thread), for the service tests."""
from __future__ import annotations

import contextlib
import socket
import threading
import time

import uvicorn

from service.app import create_app
from service.settings import Settings

API_KEY = "test-key"
TEST_LIMITS = dict(max_upload_bytes=2_000_000, max_audio_s=30.0, max_text_chars=4000, max_queue=32,
                   batch_wait_ms=20.0, max_batch=8, threads=2)
@contextlib.contextmanager
def live_server(settings: Settings):
    """Yield the base URL of a uvicorn serving `create_app(settings)`; stop it gracefully after."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_level="warning", timeout_graceful_shutdown=10))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
