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

Sparse models (configs/deepspeech2/sparse.yaml; bundles store the pruned GRU
matrices packed, kernels/format.py): a matrix with at least half its entries
zero runs packed, as (br, 1) block-sparse rows, on gru.c's BSR product: the
input projections of all frames (frames @ W_ih^T, rows of 4 frames) and the
recurrent product of the running utterances. It adds only the stored blocks,
in the same order for every row, so an utterance still gets the same floats
alone or in any batch, and the recurrence the same floats as the dense kernel
on the same (masked) weights.
"""
from __future__ import annotations

import ctypes
from concurrent.futures import Executor

import numpy as np
import torch

from kernels.format import BlockSparseMatrix
from models.deepspeech2.model import DeepSpeech2


def gru_library(extra_flags: tuple[str, ...] = ()):
    """The C kernel (kernels/csrc/gru.c), or None when it cannot be built."""
    from kernels.cbuild import load

    # no implicit contraction: the kernel's products are explicit FMAs, the same in every tile (gru.c)
    lib = load("gru", ("-ffp-contract=off", *extra_flags))
    if lib is not None and not getattr(lib, "_sw_declared", False):
        p, i64 = ctypes.c_void_p, ctypes.c_int64
        lib.sw_gru_direction.argtypes = [ctypes.c_int, p, p, ctypes.c_int, ctypes.c_int, p, i64, p, p,
                                         ctypes.c_int, p, i64, p]
        lib.sw_gru_direction.restype = ctypes.c_int
        lib.sw_gru_direction_bsr.argtypes = [ctypes.c_int, p, p, ctypes.c_int, ctypes.c_int, p, i64, p, p, p,
                                             ctypes.c_int, p, ctypes.c_int, p, i64, p]
        lib.sw_gru_direction_bsr.restype = ctypes.c_int
        lib.sw_bsr_rows.argtypes = [ctypes.c_int, p, i64, p, p, p, ctypes.c_int, ctypes.c_int, p, p, i64]
        lib.sw_bsr_rows.restype = ctypes.c_int
        lib.sw_bsr_ok.argtypes = [ctypes.c_int, ctypes.c_int]
        lib.sw_bsr_ok.restype = ctypes.c_int
        lib.sw_gru_lanes.restype = ctypes.c_int
        lib._sw_declared = True
    return lib


def supports(model: DeepSpeech2) -> bool:
    """Whether `GRUStack` can run this model's recurrent layers."""
    return model.config.rnn_type == "gru"


def sparse_block(weight: torch.Tensor) -> tuple[int, int] | None:
    """The (br, 1) block a GRU matrix runs packed in, or None to run it dense
    (under half zeros: kernels/sparse_layers.py's rule and block choice)."""
    from kernels.sparse_layers import choose_block, sparsity_of

    if sparsity_of(weight) < 0.5:
        return None
    block = choose_block(weight.detach().float()).block
    return block if block[1] == 1 else None


class GRUStack:
    """`model`'s recurrent layers (eval mode) on the C kernel: packed frames (N, D) -> (N, H).

    sparse=False runs every matrix dense (the A/B of bench.deepspeech2's sparse figures)."""

    def __init__(self, model: DeepSpeech2, lib=None, sparse: bool = True):
        if not supports(model):
            raise ValueError("the native recurrent stack runs GRU layers only")
        self.lib = lib or gru_library()
        if self.lib is None:
            raise RuntimeError("the C GRU kernel could not be built (see kernels/cbuild.py)")
        self.sparse = sparse
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
        recurrent = [self._recurrent(getattr(rnn, "weight_hh_l0" + s), getattr(rnn, "bias_hh_l0" + s))
                     for s in suffixes]
        layer = {"b_ih": b_ih.float(), "recurrent": recurrent}
        w_orig = torch.cat([getattr(rnn, "weight_ih_l0" + s) for s in suffixes])
        block = self._block(w_orig)
        if block is None:
            layer["w_ih_t"] = w_ih.float().T.contiguous()
        else:  # the folded weights keep the zeros of the pruned ones (a column scale)
            values, col_idx, row_ptr, br, _ = BlockSparseMatrix.from_dense(w_ih.float(), w_orig != 0, block).numpy_args()
            layer["w_ih_bsr"] = (np.ascontiguousarray(values), col_idx, row_ptr, br)
        return layer

    def _block(self, weight: torch.Tensor) -> tuple[int, int] | None:
        """The block `weight` runs packed in, or None (dense: not sparse, or a block the kernel lacks)."""
        block = sparse_block(weight) if self.sparse else None
        return block if block is not None and self.lib.sw_bsr_ok(weight.shape[0], block[0]) else None

    def _recurrent(self, w_hh: torch.Tensor, b_hh: torch.Tensor) -> tuple:
        """(W_hh^T padded, b_hh padded) for the dense kernel, or (BSR arrays, b_hh padded) for the packed one."""
        block = self._block(w_hh)
        if block is None:
            return self._padded(w_hh.T), self._padded(b_hh)
        m = BlockSparseMatrix.from_dense(w_hh.detach().float(), None, block)
        values, col_idx, row_ptr, br, _ = m.numpy_args()
        return (np.ascontiguousarray(values), col_idx, row_ptr, br), self._padded(b_hh)

    @property
    def packed(self) -> int:
        """How many of the stack's matrices run packed (input projections count one per layer)."""
        return sum(("w_ih_bsr" in layer) + sum(isinstance(w, tuple) for w, _ in layer["recurrent"])
                   for layer in self.layers)

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
            gx = self._projections(layer, x)  # (N, directions * 3H)
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

    def _projections(self, layer: dict, x: torch.Tensor) -> np.ndarray:
        """Input projections of all frames, both directions: (N, D) -> (N, directions * 3H)."""
        if "w_ih_t" in layer:
            return torch.addmm(layer["b_ih"], x, layer["w_ih_t"]).numpy()
        values, col_idx, row_ptr, br = layer["w_ih_bsr"]
        x = np.ascontiguousarray(x.numpy())
        bias = layer["b_ih"].numpy()
        gx = np.empty((len(x), len(bias)), np.float32)
        rc = self.lib.sw_bsr_rows(len(x), x.ctypes.data, x.shape[1], values.ctypes.data, col_idx.ctypes.data,
                                  row_ptr.ctypes.data, br, len(bias), bias.ctypes.data, gx.ctypes.data, len(bias))
        if rc != 0:
            raise RuntimeError(f"sw_bsr_rows failed ({rc})")
        return gx

    def _direction(self, run) -> None:
        d, gx, out, (w, bias), lengths, offsets = run
        h, ldw = self.hidden, len(bias)
        work = np.empty(len(lengths) * (h + ldw), np.float32)
        view = gx[:, d * 3 * h:]  # this direction's columns; rows keep gx's stride
        args = (len(lengths), offsets.ctypes.data, lengths.ctypes.data, d, h, view.ctypes.data, gx.shape[1])
        if isinstance(w, tuple):  # packed W_hh
            values, col_idx, row_ptr, br = w
            rc = self.lib.sw_gru_direction_bsr(*args, values.ctypes.data, col_idx.ctypes.data, row_ptr.ctypes.data,
                                               br, bias.ctypes.data, ldw, out.ctypes.data, h, work.ctypes.data)
        else:
            rc = self.lib.sw_gru_direction(*args, w.ctypes.data, bias.ctypes.data, ldw, out.ctypes.data, h,
                                           work.ctypes.data)
        if rc != 0:
            raise RuntimeError(f"sw_gru_direction failed ({rc})")
