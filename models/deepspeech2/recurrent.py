"""The recurrent stack of a Deep Speech 2 model for inference, batched over utterances.

Deep Speech 2's Batch Dispatch gains because a recurrent step for many
utterances reads the weights once: a (B x H) @ (H x 3H) product instead of B
matrix-vector products. onnxruntime's GRU and the convolutions gained nothing
from batching on this CPU (docs/deepspeech2.md), so this runs only the
recurrences batched, with no padding:

- the frontend output of every utterance is packed one after another
  (frames of all utterances in one (N, D) array);
- per layer, the input projections of all frames and both directions are one
  GEMM, with the inference batch norm folded into the weights;
- each direction's recurrence is kernels/csrc/gru.c over the utterances sorted
  longest first (the running ones are always a prefix); with two threads the
  two directions of a layer run side by side (ctypes releases the GIL).

An utterance gets bit-identical outputs alone or in any batch (the kernel
computes every value with the same chain of operations whatever the batch).
"""
from __future__ import annotations

import ctypes
from concurrent.futures import Executor

import numpy as np
import torch

from models.deepspeech2.model import DeepSpeech2


def gru_library(extra_flags: tuple[str, ...] = ()):
    """The C kernel (kernels/csrc/gru.c), or None when it cannot be built."""
    from kernels.cbuild import load

    lib = load("gru", extra_flags)
    if lib is not None and not getattr(lib, "_sw_declared", False):
        p, i64 = ctypes.c_void_p, ctypes.c_int64
        lib.sw_gru_direction.argtypes = [ctypes.c_int, p, p, ctypes.c_int, ctypes.c_int, p, i64, p, p,
                                         ctypes.c_int, p, i64, p]
        lib.sw_gru_direction.restype = ctypes.c_int
        lib.sw_gru_lanes.restype = ctypes.c_int
        lib._sw_declared = True
    return lib


def supports(model: DeepSpeech2) -> bool:
    """Whether `GRUStack` can run this model's recurrent layers."""
    return model.config.rnn_type == "gru"


class GRUStack:
    """`model`'s recurrent layers (eval mode) on the C kernel: packed frames (N, D) -> (N, H)."""

    def __init__(self, model: DeepSpeech2, lib=None):
        if not supports(model):
            raise ValueError("the native recurrent stack runs GRU layers only")
        self.lib = lib or gru_library()
        if self.lib is None:
            raise RuntimeError("the C GRU kernel could not be built (see kernels/cbuild.py)")
        cfg = model.config
        self.hidden = cfg.rnn_hidden
        self.directions = 2 if cfg.bidirectional else 1
        self.layers = [self._layer(model, i) for i in range(cfg.rnn_layers)]

    @torch.no_grad()
    def _layer(self, model: DeepSpeech2, i: int) -> dict:
        rnn = model.rnns[i]
        suffixes = ["", "_reverse"][: self.directions]
        w_ih = torch.cat([getattr(rnn, "weight_ih_l0" + s) for s in suffixes]).detach().double()
        b_ih = torch.cat([getattr(rnn, "bias_ih_l0" + s) for s in suffixes]).detach().double()
        if model.config.batch_norm:  # eval batch norm x * scale + shift, folded into the projection
            norm = model.norms[i].norm
            scale = norm.weight.double() / torch.sqrt(norm.running_var.double() + norm.eps)
            shift = norm.bias.double() - norm.running_mean.double() * scale
            b_ih = b_ih + w_ih @ shift
            w_ih = w_ih * scale[None, :]
        recurrent = [(self._padded(getattr(rnn, "weight_hh_l0" + s).T), self._padded(getattr(rnn, "bias_hh_l0" + s)))
                     for s in suffixes]
        return {"w_ih_t": w_ih.float().T.contiguous(), "b_ih": b_ih.float(), "recurrent": recurrent}

    def _padded(self, w: torch.Tensor) -> np.ndarray:
        """W_hh^T (H, 3H) or b_hh (3H,) with zero columns up to a multiple of the kernel's vector width."""
        lanes = self.lib.sw_gru_lanes()
        pad = -w.shape[-1] % lanes
        return np.ascontiguousarray(torch.nn.functional.pad(w.detach().float(), (0, pad)).numpy())

    @torch.no_grad()
    def __call__(self, frames: list[np.ndarray], executor: Executor | None = None) -> list[np.ndarray]:
        """Per utterance (T_i, D) frontend frames -> (T_i, H) top-layer outputs (the directions summed)."""
        order = sorted(range(len(frames)), key=lambda i: -len(frames[i]))
        lengths = np.array([len(frames[i]) for i in order], np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        x = torch.from_numpy(np.concatenate([frames[i] for i in order]).astype(np.float32, copy=False))
        for layer in self.layers:
            gx = torch.addmm(layer["b_ih"], x, layer["w_ih_t"]).numpy()  # (N, directions * 3H)
            outs = [np.empty((len(gx), self.hidden), np.float32) for _ in range(self.directions)]
            runs = [(d, gx, outs[d], layer["recurrent"][d], lengths, offsets) for d in range(self.directions)]
            if executor is not None and self.directions == 2:
                list(executor.map(self._direction, runs))
            else:
                for run in runs:
                    self._direction(run)
            x = torch.from_numpy(outs[0] + outs[1] if self.directions == 2 else outs[0])
        out = x.numpy()
        result: list[np.ndarray] = [None] * len(frames)  # type: ignore[list-item]
        for slot, i in enumerate(order):
            result[i] = out[offsets[slot]: offsets[slot] + lengths[slot]]
        return result

    def _direction(self, run) -> None:
        d, gx, out, (w_t, bias), lengths, offsets = run
        h = self.hidden
        work = np.empty(len(lengths) * (h + w_t.shape[1]), np.float32)
        view = gx[:, d * 3 * h:]  # this direction's columns; rows keep gx's stride
        rc = self.lib.sw_gru_direction(len(lengths), offsets.ctypes.data, lengths.ctypes.data, d, h,
                                       view.ctypes.data, gx.shape[1], w_t.ctypes.data, bias.ctypes.data,
                                       w_t.shape[1], out.ctypes.data, h, work.ctypes.data)
        if rc != 0:
            raise RuntimeError(f"sw_gru_direction failed ({rc})")
