"""Parallel WaveNet speed: the student's one parallel pass (torch and onnxruntime)
against the teacher's fast (queue) generation, same utterance, 2 threads, 16 kHz.

    python -m bench.parallel_wavenet [--quick] [--teacher BUNDLE] [--student BUNDLE]
                                     [--seconds S] [--teacher-seconds S] [--threads N] [--profile]
    python -m bench.parallel_wavenet --sparse [--quick] [--threads N]   # dense vs sparse students

--profile prints onnxruntime's per-op-kind times of the student graph (the time is
spent in the convolutions; docs/parallel_wavenet.md, Speed).

Without bundles the shapes are the model sections of configs/wavenet/cpu_mel.yaml
and configs/parallel_wavenet/cpu_mel.yaml with fresh weights (the cost does not
depend on the values); `--paper` uses the paper-sized student (4 flows of
10, 10, 10, 30 layers, 64 channels) and configs/wavenet/default.yaml's teacher.
The student generates the whole utterance (S seconds); the teacher generates
its first `--teacher-seconds` (its cost per sample is constant: the queues make
every step the same work) and its rate is extrapolated from that.

Last line, one JSON object:
  teacher_samples_per_s, teacher_realtime_factor            queue generation, batch 1
  student_realtime_factor_torch, student_realtime_factor_onnx  audio s per wall s (best of N;
                                                             onnx with idle threads sleeping)
  student_realtime_factor_torch_1thread                      torch with one intra-op thread (no OpenMP waits)
  student_realtime_factor_onnx_one_pass                      onnx over the whole utterance at once (the runtime
                                                             runs 1 s pieces with their context: the same audio)
  student_realtime_factor_onnx_spinning                      the runtime's path with onnxruntime's spinning threads
  student_speedup_vs_teacher                                 onnx student rate / teacher rate
  teacher_cpu_s_per_audio_s, student_onnx_cpu_s_per_audio_s  process CPU seconds per audio second (all threads;
                                                             the student's least of N, the teacher's one run)
  student_speedup_vs_teacher_cpu                             their ratio: the work saved, much less sensitive
                                                             than wall time to the other jobs on shared cores
  student_torch_vs_onnx_max_abs_diff                         same noise, same conditioning
  plus the shapes, threads and seconds timed.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from models.logistic_mixture import logistic_noise
from models.parallel_wavenet import (ParallelWaveNet, ParallelWaveNetConfig, export_onnx, onnx_session, run_onnx,
                                     run_onnx_chunked)
from models.wavenet import WaveNet, WaveNetConfig

ROOT = Path(__file__).resolve().parents[1]


def best_time(fn, repeats: int, warm_up: bool = True):
    """(best wall time of `repeats` calls after a warm-up call, the last output, and the least
    process CPU time of a call: all threads' work, much less sensitive to other jobs than wall time)."""
    out = fn() if warm_up else None
    times, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return min(times), out, min(cpu)


def profile_ops(onnx_file, feed: dict, threads: int, runs: int = 10) -> list[tuple[str, float, float]]:
    """onnxruntime's profiler over `runs` runs: (kind, share of the kernel time, ms per run) per op
    type, convolutions split by kernel (dilated / 1x1), activation and summed 4th input."""
    import collections

    import onnx
    import onnxruntime as ort

    nodes = {n.name: n for n in onnx.load(str(onnx_file)).graph.node}
    opts = ort.SessionOptions()
    opts.enable_profiling, opts.profile_file_prefix = True, str(Path(tempfile.gettempdir()) / "pwn_profile")
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(str(onnx_file), opts, providers=["CPUExecutionProvider"])
    for _ in range(runs):
        session.run(None, feed)
    trace = Path(session.end_profiling())
    spent = collections.Counter()
    for event in json.loads(trace.read_text()):
        if event.get("cat") != "Node" or not event["name"].endswith("_kernel_time"):
            continue
        kind, node = event["args"]["op_name"], nodes.get(event["name"][:-len("_kernel_time")])
        if node is not None and "Conv" in kind:
            attrs = {a.name: a for a in node.attribute}
            kind += " dilated" if "dilations" in attrs else " 1x1"
            kind += f" {attrs['activation'].s.decode()}" if "activation" in attrs else ""
            kind += " +sum" if len(node.input) > 3 else ""
        spent[kind] += event["dur"]
    trace.unlink()
    total = sum(spent.values())
    return [(k, v / total, v / 1e3 / runs) for k, v in spent.most_common()]


def config_from_yaml(cls, path: Path, **overrides):
    import yaml

    from models.config import config_from_dict

    model = (yaml.safe_load(path.read_text()) or {}).get("model", {})
    return config_from_dict(cls, {**model, **overrides})


def load_models(args):
    onnx_file = None
    if args.student:
        from models.bundle import load_bundle
        from models.registry import model_from_bundle

        bundle = load_bundle(args.student)
        student, onnx_file = model_from_bundle(bundle), bundle.onnx_path
    elif args.paper:
        student = ParallelWaveNet(ParallelWaveNetConfig(cond_kind="mel", cond_channels=80))
    else:
        student = ParallelWaveNet(config_from_yaml(ParallelWaveNetConfig, ROOT / "configs/parallel_wavenet/cpu_mel.yaml"))
    if args.teacher:
        from models.bundle import load_bundle
        from models.registry import model_from_bundle

        teacher = model_from_bundle(load_bundle(args.teacher))
    else:
        path = ROOT / ("configs/wavenet/default.yaml" if args.paper else "configs/wavenet/cpu_mel.yaml")
        s = student.config
        teacher = WaveNet(config_from_yaml(WaveNetConfig, path, cond_kind=s.cond_kind, cond_channels=s.cond_channels,
                                           n_speakers=s.n_speakers, hop_length=s.hop_length))
    return student.eval(), teacher.eval(), onnx_file


# --- dense against sparse students on their runtimes (issue 13; bench.sparse_conv calls this) -----------
DENSE_BUNDLE = "bundles/parallel-wavenet-default"
SPARSE_BUNDLES = {"80": ("bundles/parallel-wavenet-sparse80", "runs/pwn-sparse80-bundle"),
                  "90": ("bundles/parallel-wavenet-sparse90", "runs/pwn-sparse90-bundle")}


def _vocoder(path: str, engine: str | None, threads: int, packed: bool = False):
    """The runtime of a bundle as `sparsewave synth` and the service build it (engine None: the
    bundle's default: onnxruntime for dense students, the packed runtime for sparse ones);
    packed=True runs a dense student's convs on the packed runtime as dense (4, 1) blocks."""
    from models.bundle import load_bundle
    from models.parallel_wavenet import ParallelWaveNetSynthesizer, packed_runtime

    synth = ParallelWaveNetSynthesizer(load_bundle(path), engine=engine, threads=threads)
    if packed:
        packed_runtime(synth.model)
        synth.threads = threads
    return synth


def one_thread(fn, *args):
    """fn(*args) with one torch thread: torch eager's OpenMP threads wait for each other at every
    op, which on shared cores made 2 threads 10-100x slower than one (docs/parallel_wavenet.md)."""
    from models.gan_tts import one_torch_thread

    with one_torch_thread():
        return fn(*args)


def alternating_times(fns: dict, n_rounds: int, calls: int) -> tuple[dict[str, float], dict[str, float]]:
    """(median over rounds of each fn's median wall time per call, least process CPU time of a call);
    the fns alternate within a round, after one warm-up call each. On shared cores the wall time
    follows the other jobs; the CPU time is the work."""
    wall, cpu = {k: [] for k in fns}, {k: [] for k in fns}
    for fn in fns.values():
        fn()
    for _ in range(n_rounds):
        for k, fn in fns.items():
            times = []
            for _ in range(calls):
                t0, c0 = time.perf_counter(), time.process_time()
                fn()
                times.append(time.perf_counter() - t0)
                cpu[k].append(time.process_time() - c0)
            wall[k].append(float(np.median(times)))
    return {k: float(np.median(v)) for k, v in wall.items()}, {k: min(v) for k, v in cpu.items()}


def parallel_wavenet_rows(quick: bool, threads: int = 2) -> dict:
    """Real-time factors (audio s per wall s, `threads` threads) of the dense student on
    onnxruntime (its default), on torch eager (one thread) and on the packed runtime, against the
    sparse students on the packed runtime, each vocoding the same random log-mel through
    ParallelWaveNetSynthesizer.vocode (1 s pieces; the packed runtime runs `threads` pieces at
    once, one thread each), plus each one's process CPU seconds per audio second (`_cpu_s`).
    Rounds alternate the runtimes (`alternating_times`). A sparse bundle not in the tree is
    skipped. quick: 2 s of audio, 2 rounds of 2 calls, the sparsest bundle, no dense_packed row
    (under 15 s)."""
    seconds, (n_rounds, calls) = (2.0, (2, 2)) if quick else (4.0, (5, 5))
    present = {s: next(p for p in paths if (Path(p) / "manifest.json").exists())
               for s, paths in SPARSE_BUNDLES.items() if any((Path(p) / "manifest.json").exists() for p in paths)}
    if quick and present:
        present = dict([max(present.items())])
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        synths = {"dense": _vocoder(DENSE_BUNDLE, None, threads), "dense_torch_1thread": _vocoder(DENSE_BUNDLE, "torch", 1),
                  **{f"sparse{s}": _vocoder(p, None, threads) for s, p in present.items()}}
        if not quick:  # the dense weights on the packed runtime: what the zeros themselves buy
            synths["dense_packed"] = _vocoder(DENSE_BUNDLE, "torch", threads, packed=True)
        cfg = synths["dense"].config
        mel = np.random.default_rng(0).standard_normal((int(seconds * cfg.sample_rate / cfg.hop_length),
                                                        cfg.cond_channels)).astype(np.float32)
        fns = {k: (lambda s=s: s.vocode(mel)) for k, s in synths.items()}
        fns["dense_torch_1thread"] = lambda: one_thread(synths["dense_torch_1thread"].vocode, mel)
        wall, cpu = alternating_times(fns, n_rounds, calls)
    finally:
        torch.set_num_threads(torch_threads)
    out = {}
    for k in wall:
        out[f"parallel_wavenet_{k}_realtime_factor"] = round(seconds / wall[k], 2)
        out[f"parallel_wavenet_{k}_cpu_s"] = round(cpu[k] / seconds, 4)
    if present:
        best = f"sparse{max(present)}"
        out["parallel_wavenet_sparse_realtime_factor"] = out[f"parallel_wavenet_{best}_realtime_factor"]
        out["parallel_wavenet_sparse_cpu_s"] = out[f"parallel_wavenet_{best}_cpu_s"]
    out["parallel_wavenet_bundles"] = {"dense": DENSE_BUNDLE, **{f"sparse{s}": p for s, p in present.items()}}
    out["parallel_wavenet_load_average_1min"] = os.getloadavg()[0]
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--paper", action="store_true", help="paper-sized student and default teacher shapes")
    parser.add_argument("--teacher", help="time this wavenet bundle")
    parser.add_argument("--student", help="time this parallel-wavenet bundle (and its model.onnx)")
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--teacher-seconds", type=float, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--profile", action="store_true", help="print the student graph's time per op kind")
    parser.add_argument("--sparse", action="store_true",
                        help="only the dense against sparse students rows (parallel_wavenet_rows)")
    args = parser.parse_args()
    if args.sparse:
        print(json.dumps(parallel_wavenet_rows(args.quick, args.threads)))
        return
    torch.set_num_threads(args.threads)
    seconds = args.seconds or (0.25 if args.quick else 2.0)
    teacher_seconds = args.teacher_seconds or (0.025 if args.quick else 0.25)
    repeats = 1 if args.quick else 5
    student, teacher, onnx_file = load_models(args)
    cfg = student.config
    sr, hop = cfg.sample_rate, cfg.hop_length
    frames = int(seconds * sr / hop)
    rng = np.random.default_rng(0)
    cond = rng.standard_normal((1, frames, cfg.cond_channels)).astype(np.float32)
    speaker = np.zeros(1, dtype=np.int64)
    z = logistic_noise((1, frames * hop), torch.Generator().manual_seed(0))
    cond_t, speaker_t = torch.from_numpy(cond), torch.from_numpy(speaker)
    with tempfile.TemporaryDirectory() as tmp:
        if onnx_file is None:
            onnx_file = export_onnx(student, Path(tmp) / "student.onnx")
        # Idle onnxruntime threads sleep (allow_spinning 0): on shared cores a spinning thread
        # takes the time its peer needs (docs/parallel_wavenet.md); spinning is timed for the record.
        session = onnx_session(onnx_file, threads=args.threads, spinning=False)
        # the runtime's path: 1 s pieces with their context (the same audio; cache-sized tensors)
        t_onnx, onnx_audio, cpu_onnx = best_time(lambda: run_onnx_chunked(session, cfg, z.numpy(), cond, speaker),
                                                 repeats)
        t_pass = best_time(lambda: run_onnx(session, z.numpy(), cond, speaker), repeats)[0]
        spinning = onnx_session(onnx_file, threads=args.threads, spinning=True)
        t_spin = best_time(lambda: run_onnx_chunked(spinning, cfg, z.numpy(), cond, speaker), repeats)[0]
        if args.profile:
            feed = {"z": z.numpy(), "cond": cond, "speaker": speaker}
            for kind, share, ms in profile_ops(onnx_file, feed, args.threads):
                print(f"{kind:32s} {100 * share:5.1f}% {ms:8.2f} ms per run")
    with torch.no_grad():
        t_torch, torch_audio, _ = best_time(lambda: student.generate(cond_t, speaker_t, z).numpy(), repeats,
                                            warm_up=not args.quick)
        # torch's OpenMP threads wait for each other at every op: on shared cores one thread is faster
        torch.set_num_threads(1)
        t_torch1 = best_time(lambda: student.generate(cond_t, speaker_t, z).numpy(), repeats, warm_up=not args.quick)[0]
        torch.set_num_threads(args.threads)  # the teacher runs as before
    n_teacher = int(teacher_seconds * sr)
    uniforms = torch.rand(1, n_teacher, 2, generator=torch.Generator().manual_seed(1))
    teacher_cond = cond_t[:, : n_teacher // hop + 1]
    teacher.generate(teacher_cond, speaker_t, uniforms[:, : min(100, n_teacher)])  # warm-up
    t0, c0 = time.perf_counter(), time.process_time()
    teacher.generate(teacher_cond, speaker_t, uniforms)
    t_teacher, cpu_teacher = time.perf_counter() - t0, time.process_time() - c0
    teacher_rate = n_teacher / t_teacher
    onnx_rate = frames * hop / t_onnx
    result = {
        "threads": args.threads, "sample_rate": sr, "student_seconds": seconds, "teacher_seconds": teacher_seconds,
        "student_flow_layers": list(cfg.flow_layers), "student_residual_channels": cfg.residual_channels,
        "teacher_layers": teacher.config.layers, "teacher_residual_channels": teacher.config.residual_channels,
        "teacher_samples_per_s": teacher_rate,
        "teacher_realtime_factor": teacher_rate / sr,
        "student_realtime_factor_torch": seconds / t_torch,
        "student_realtime_factor_torch_1thread": seconds / t_torch1,
        "student_realtime_factor_onnx": seconds / t_onnx,
        "student_realtime_factor_onnx_one_pass": seconds / t_pass,
        "student_realtime_factor_onnx_spinning": seconds / t_spin,
        "student_speedup_vs_teacher": onnx_rate / teacher_rate,
        "teacher_cpu_s_per_audio_s": cpu_teacher / teacher_seconds,
        "student_onnx_cpu_s_per_audio_s": cpu_onnx / seconds,
        "student_speedup_vs_teacher_cpu": (cpu_teacher / teacher_seconds) / (cpu_onnx / seconds),
        "student_torch_vs_onnx_max_abs_diff": float(np.abs(onnx_audio - torch_audio).max()),
        "load_average_1min": os.getloadavg()[0],
    }
    print(f"student onnx {result['student_realtime_factor_onnx']:.2f}x real time, torch "
          f"{result['student_realtime_factor_torch']:.2f}x; teacher {teacher_rate:.0f} samples/s "
          f"({result['teacher_realtime_factor']:.4f}x); speed-up {result['student_speedup_vs_teacher']:.0f}x")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
