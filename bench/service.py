"""Load test of the HTTP service on 127.0.0.1; stops by itself.

    python -m bench.service [--quick] [--models DIR] [--tts NAME] [--asr NAME]

Starts `service.app` under uvicorn in a child process on a free port with
the bundles of DIR (default: the shipped bundles/), then:
1. 16 concurrent clients for 60 s (--quick: 12 s) of mixed speech synthesis
   (short sentences, streamed pcm where the model streams) and transcription;
   resident memory of the server is read after a warm-up and at the end;
   before the load, nine different short sentences, one request at a time,
   give the first-byte latency without load;
2. transcription only, 16 clients, with Batch Dispatch and with MAX_BATCH=1,
   two fresh servers loaded in turn (3 rounds of 5 s windows, 1 with
   --quick, so that drifting background load hits both): the ratio of
   completed requests per second (over each window and its drain) is the
   batching gain, also given per round. Measured twice: with the lean
   client of bench/http_load.py (`asr_batching_throughput_gain`: prebuilt
   requests, so the load generator takes little of the cores the server
   runs on) and with httpx (`..._httpx`: about 3 ms of client CPU per upload).
Last line: one JSON object. `--plugin FILE.py` imports a file whose
`install()` registers extra model types in the server (development only).
"""
from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SENTENCES = ["The quick brown fox jumps over the lazy dog.", "Sparse networks sing on small machines.",
             "Please call Stella and ask her to bring these things.", "It was a bright cold day in April.",
             "Wave after wave rolled onto the shore.", "Numbers like four and forty are spoken too."]
# nine different short sentences: the frontend caches phones per text, so a repeated one would skip it
SHORT = ["Hello.", "Hi there.", "Good morning to you.", "Thank you.", "See you soon.", "Good night.",
         "Yes, please.", "How are you?", "Welcome back."]


def child(args) -> None:
    """The server process: optional plugin, then uvicorn on the given port."""
    sys.path.insert(0, str(ROOT))
    if args.plugin:
        import importlib.util

        spec = importlib.util.spec_from_file_location("bench_plugin", args.plugin)
        module = importlib.util.module_from_spec(spec)
        sys.modules["bench_plugin"] = module
        sys.path.insert(0, str(Path(args.plugin).resolve().parent))
        spec.loader.exec_module(module)
        module.install()
    import uvicorn

    from service.app import create_app

    uvicorn.run(create_app(), host="127.0.0.1", port=args.port, log_level="warning", timeout_graceful_shutdown=10)


class Server:
    def __init__(self, models: Path, plugin: str | None, **env: str):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        environ = {**os.environ, "SPARSEWAVE_MODELS_DIR": str(models), "SPARSEWAVE_LOAD_DEFAULTS": "0",
                   "SPARSEWAVE_MAX_QUEUE": "256", "PYTHONPATH": str(ROOT), **env}
        cmd = [sys.executable, "-m", "bench.service", "--child", "--port", str(self.port)]
        self.proc = subprocess.Popen(cmd + (["--plugin", plugin] if plugin else []), env=environ, cwd=ROOT)

    def __enter__(self):
        import httpx

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"bench.service: the server exited with status {self.proc.returncode}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise SystemExit("bench.service: the server did not become ready in 120 s")

    def __exit__(self, *exc):
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")


def find_models(models: Path) -> dict[str, str]:
    """name -> task of every bundle directory under `models` (manifest only)."""
    from models.bundle import BundleError, read_manifest

    found = {}
    for path in sorted(p for p in models.iterdir() if (p / "manifest.json").is_file()) if models.is_dir() else []:
        try:
            found[path.name.removesuffix(".bundle")] = read_manifest(path).get("task", "")
        except BundleError:
            continue
    return found


async def _one_tts(url: str, model: str, voice: str | None, text: str, fmt: str, out: dict) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        await tts_once(client, model, voice, text, fmt, out)


def pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


async def tts_once(client, model: str, voice: str | None, text: str, fmt: str, out: dict) -> None:
    body = {"model": model, "input": text, "response_format": fmt, **({"voice": voice} if voice else {})}
    start = time.perf_counter()
    first = None
    async with client.stream("POST", "/v1/audio/speech", json=body) as resp:
        async for chunk in resp.aiter_bytes():
            if first is None and chunk:
                first = time.perf_counter() - start
        out["status"].append(resp.status_code)
    if resp.status_code == 200:
        out["tts_ms"].append((time.perf_counter() - start) * 1000)
        out["tts_first_ms"].append(first * 1000 if first is not None else float("nan"))


async def asr_once(client, model: str, clip: bytes, out: dict) -> None:
    start = time.perf_counter()
    resp = await client.post("/v1/audio/transcriptions", files={"file": ("clip.wav", clip)},
                             data={"model": model, "response_format": "json"})
    out["status"].append(resp.status_code)
    if resp.status_code == 200:
        out["asr_ms"].append((time.perf_counter() - start) * 1000)


async def load(url: str, seconds: float, clients: int, plan) -> dict:
    """`clients` loops, each issuing plan(i, client, out) until `seconds` pass."""
    import httpx

    out = {"status": [], "tts_ms": [], "tts_first_ms": [], "asr_ms": [], "transport_errors": 0}
    start = time.monotonic()
    deadline = start + seconds
    limits = httpx.Limits(max_connections=clients * 2)

    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        async def worker(w: int):
            i = w
            while time.monotonic() < deadline:
                try:
                    await plan(i, client, out)
                except httpx.HTTPError:
                    out["transport_errors"] += 1
                i += clients
        await asyncio.gather(*(worker(w) for w in range(clients)))
    out["elapsed_s"] = time.monotonic() - start  # requests started before the deadline finish after it
    return out


def asr_throughput(models: Path, plugin: str | None, asr: str, clips: list[bytes], clients: int, seconds: float,
                   rounds: int, client: str) -> dict:
    """Transcription only: requests per second with Batch Dispatch and with MAX_BATCH=1, and their ratio.

    Both servers are up at once and loaded in turn over several short windows: the load that other
    work puts on a shared machine drifts, and alternating spreads the drift over both instead of one.
    `client`: "lean" (bench/http_load.py, prebuilt requests: the client takes little of the two cores
    the server runs on) or "httpx" (multipart built per request, about 3 ms of CPU each here)."""
    from bench.http_load import hammer, multipart, post

    async def asr_only(i, http, out):
        await asr_once(http, asr, clips[i % len(clips)], out)

    bodies = [multipart({"model": asr, "response_format": "json"}, "file", "clip.wav", clip) for clip in clips]

    def window(server, length: float) -> dict:
        if client == "httpx":
            out = asyncio.run(load(server.url, length, clients, asr_only))
            return {"done": len(out["asr_ms"]), "elapsed_s": out["elapsed_s"]}
        requests = [post("/v1/audio/transcriptions", f"127.0.0.1:{server.port}", *body) for body in bodies]
        out = asyncio.run(hammer("127.0.0.1", server.port, requests, length, clients))
        return {"done": len(out["ms"]), "elapsed_s": out["elapsed_s"]}

    done = {"batched": 0, "single": 0}
    spent = {"batched": 0.0, "single": 0.0}
    ratios = []
    with Server(models, plugin, SPARSEWAVE_MAX_BATCH="16") as batched, \
            Server(models, plugin, SPARSEWAVE_MAX_BATCH="1") as single:
        servers = {"batched": batched, "single": single}
        for server in servers.values():
            window(server, 2.0)  # warm-up
        for r in range(rounds):
            rate = {}
            for label in (("batched", "single") if r % 2 == 0 else ("single", "batched")):
                out = window(servers[label], seconds / rounds)
                done[label] += out["done"]
                spent[label] += out["elapsed_s"]
                rate[label] = out["done"] / out["elapsed_s"]
            ratios.append(rate["batched"] / max(rate["single"], 1e-9))
    # completed requests over the time they took, the drain after each window included: dividing by the
    # nominal window would credit the up to `clients` requests finishing after it, which shrinks the ratio
    rps = {label: done[label] / spent[label] for label in done}
    return {"batched": round(rps["batched"], 2), "single": round(rps["single"], 2),
            "gain": round(rps["batched"] / max(rps["single"], 1e-9), 2), "per_round": [round(x, 2) for x in ratios]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--models", default=str(ROOT / "bundles"))
    p.add_argument("--tts"), p.add_argument("--asr")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--seconds", type=float)
    p.add_argument("--plugin")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(args)
        return 0
    import httpx
    import soundfile as sf

    if args.plugin:  # read_manifest needs nothing registered, but the model types must exist in the child
        args.plugin = str(Path(args.plugin).resolve())
    models = Path(args.models)
    found = find_models(models)
    tts = args.tts or next((n for n, t in found.items() if t == "tts"), None)
    asr = args.asr or next((n for n, t in found.items() if t == "asr"), None)
    if tts is None or asr is None:
        print(f"bench.service: needs a speech synthesis and a speech recognition bundle in {models} "
              f"(found: {found or 'no bundles'}); export some with `sparsewave export` or pass --models DIR")
        return 2
    seconds = args.seconds or (12.0 if args.quick else 60.0)
    asr_seconds = max(5.0, seconds / 4)

    with Server(models, args.plugin) as server:
        info = {m["id"]: m for m in httpx.get(server.url + "/v1/models").json()["data"]}
        if tts not in info or asr not in info:
            failed = httpx.get(server.url + "/readyz").json()["failed"]
            print(f"bench.service: {tts} or {asr} did not load: {failed}")
            return 2
        voice = (info[tts]["voices"] or [None])[0]
        fmt = "pcm" if info[tts]["streaming"] else "wav"
        clips = []
        for text in SENTENCES[:3]:  # the recognizer hears what the synthesizer said
            body = {"model": tts, "input": text, "response_format": "wav", **({"voice": voice} if voice else {})}
            wav = httpx.post(server.url + "/v1/audio/speech", json=body, timeout=300).content
            audio, rate = sf.read(io.BytesIO(wav), dtype="float32")
            buffer = io.BytesIO()
            sf.write(buffer, audio, rate, format="WAV", subtype="PCM_16")
            clips.append(buffer.getvalue())
        clip_s = float(np.mean([sf.info(io.BytesIO(c)).duration for c in clips]))

        async def mixed(i, client, out):
            if i % 2:
                await asr_once(client, asr, clips[i % len(clips)], out)
            else:
                await tts_once(client, tts, voice, SENTENCES[i % len(SENTENCES)], fmt, out)

        asyncio.run(load(server.url, min(5.0, seconds / 4), args.clients, mixed))  # warm-up
        alone = {"status": [], "tts_ms": [], "tts_first_ms": []}  # the target: a short sentence, no load
        for text in SHORT:
            asyncio.run(_one_tts(server.url, tts, voice, text, fmt, alone))
        rss_before = server.rss_mb()
        run = asyncio.run(load(server.url, seconds, args.clients, mixed))
        rss_after = server.rss_mb()

    rounds = 1 if args.quick else 3
    lean = asr_throughput(models, args.plugin, asr, clips, args.clients, asr_seconds, rounds, "lean")
    slow = asr_throughput(models, args.plugin, asr, clips, args.clients, asr_seconds, rounds, "httpx")

    statuses = run["status"]
    result = {
        "tts_model": tts, "asr_model": asr, "tts_format": fmt, "clients": args.clients, "seconds": seconds,
        "requests": len(statuses), "errors_5xx": sum(s >= 500 for s in statuses),
        "errors_4xx": sum(400 <= s < 500 for s in statuses), "transport_errors": run["transport_errors"],
        "tts_requests": len(run["tts_ms"]), "tts_p50_ms": pct(run["tts_ms"], 50), "tts_p99_ms": pct(run["tts_ms"], 99),
        "tts_first_byte_p50_ms": pct(run["tts_first_ms"], 50),
        "tts_first_byte_alone_p50_ms": pct(alone["tts_first_ms"], 50), "asr_requests": len(run["asr_ms"]),
        "asr_clip_s": round(clip_s, 2), "asr_p50_ms": pct(run["asr_ms"], 50), "asr_p99_ms": pct(run["asr_ms"], 99),
        "asr_rps_batched": lean["batched"], "asr_rps_single": lean["single"],
        "asr_batching_throughput_gain": lean["gain"], "asr_batching_gain_per_round": lean["per_round"],
        "asr_client": "lean (bench/http_load.py)", "asr_rps_batched_httpx": slow["batched"],
        "asr_rps_single_httpx": slow["single"], "asr_batching_throughput_gain_httpx": slow["gain"],
        "asr_batching_gain_per_round_httpx": slow["per_round"],
        "rss_before_mb": round(rss_before, 1), "rss_after_mb": round(rss_after, 1),
        "rss_growth_mb": round(rss_after - rss_before, 1),
    }
    for key in ("requests", "errors_5xx", "tts_p50_ms", "tts_first_byte_p50_ms", "tts_first_byte_alone_p50_ms",
                "asr_p50_ms", "asr_batching_throughput_gain", "asr_batching_throughput_gain_httpx", "rss_growth_mb"):
        print(f"{key:32s} {result[key]}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
