"""One way to open an ONNX graph for CPU inference, shared by every family's runtime."""
from __future__ import annotations

from pathlib import Path


def onnx_session(path: str | Path, threads: int = 0, spinning: bool = True):
    """An onnxruntime CPU session with `threads` intra-op threads (0: its default).

    spinning=False stops idle threads from busy-waiting: right where requests
    arrive in bursts and torch or other sessions share the cores."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if not spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
