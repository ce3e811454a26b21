"""A lean HTTP/1.1 load client: prebuilt requests on keep-alive connections.

The load generator shares the two cores with the server it measures, so its
own CPU per request is taken from the server. httpx spends about 3 ms per
multipart upload here; this client writes bytes built once and parses only
the status line, the headers it needs and the body, so nearly all of the
CPU goes to the server (the way wrk-style tools measure). It speaks only
what the bench needs: POST with Content-Length, responses with
Content-Length or chunked bodies.
"""
from __future__ import annotations

import asyncio
import time
import uuid


def multipart(fields: dict[str, str], file_field: str, filename: str, data: bytes,
              content_type: str = "audio/wav") -> tuple[bytes, str]:
    """(body, Content-Type header) of a multipart/form-data upload."""
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; filename="{filename}"\r\n'
                 f'Content-Type: {content_type}\r\n\r\n'.encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def post(path: str, host: str, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> bytes:
    """The whole request, headers and body, as bytes."""
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n{extra}\r\n")
    return head.encode() + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """(status, body) of one response; raises ConnectionError on a closed or garbled stream."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length, chunked = 0, False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if not chunked:
            return status, await reader.readexactly(length)
        body = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                return status, b"".join(body)
            body.append(chunk[:-2])
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, IndexError) as exc:
        raise ConnectionError(f"bad response: {exc}") from None


async def send(host: str, port: int, request: bytes) -> tuple[int, bytes]:
    """One request on a fresh connection -> (status, body)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(request)
        return await read_response(reader)
    finally:
        writer.close()


async def hammer(host: str, port: int, requests: list[bytes], seconds: float, clients: int) -> dict:
    """`clients` connections, each sending requests[i % len] back to back until `seconds` pass.
    Returns statuses, latencies (ms, 200s only), transport errors and elapsed seconds (the drain of
    requests started before the deadline included)."""
    out = {"status": [], "ms": [], "transport_errors": 0}
    start = time.monotonic()
    deadline = start + seconds

    async def worker(w: int) -> None:
        i, conn = w, None
        while time.monotonic() < deadline:
            try:
                if conn is None:
                    conn = await asyncio.open_connection(host, port)
                reader, writer = conn
                sent = time.perf_counter()
                writer.write(requests[i % len(requests)])
                status, _ = await read_response(reader)
                out["status"].append(status)
                if status == 200:
                    out["ms"].append((time.perf_counter() - sent) * 1000)
            except (ConnectionError, OSError):
                out["transport_errors"] += 1
                if conn is not None:
                    conn[1].close()
                conn = None
            i += clients
        if conn is not None:
            conn[1].close()

    await asyncio.gather(*(worker(w) for w in range(clients)))
    out["elapsed_s"] = time.monotonic() - start
    return out
