"""The hand-vectorized C SpMM (kernels/csrc/spmm.c) through ctypes.

    lib = spmm_lib()          # the loaded library, or None (then use kernels.cpu)
    spmm_into(lib, values, col_idx, row_ptr, br, bc, x, out)

takes the same arguments as kernels.cpu.spmm_into after the library: the
packed matrix from `BlockSparseMatrix.numpy_args()` (float32, or bfloat16 /
float16 bits as uint16 / int16; decoded in the kernel), x (C, N) and out
(R, N) float32 C-contiguous; out = S x. CPU torch tensors work too
(`m.values, m.col_idx, m.row_ptr`, any storage dtype): kernels.ops passes
those, as taking their pointers costs less. `rows=(rb0, rb1)` computes only
those block rows (for splitting over threads). x must have the matrix's C rows.

From @njit code (the WaveRNN sampler), call `lib.sw_spmm` directly: numba
calls ctypes functions, with arrays passed as `a.ctypes.data`:

    sw_spmm(values, vdtype, col_idx, row_ptr, br, bc, R, C, x, ldx, N, out, ldo, rb0, rb1)
    vdtype: 0 float32, 1 bfloat16 bits, 2 float16 bits; ld* = row strides in
    elements; returns 0, or -1 when scratch memory ran out.

Convolutions ((br, 1) blocks; the layout of kernels/conv.py):

    conv1d_into(lib, m, taps, x (B, Cin, T), padding, reach, bias, out (B, Cout, T_out))

with taps = conv_taps(m, kernel_size, dilation): each stored block's input row
and frame shift. The C side (sw_conv1d) reads the unpadded input in place and
pads only the edges, adds the bias in the store, and walks the time axis in
chunks that keep the input rows in L2.

    affine_relu(lib, x (B, C, T), a (B, C), b (B, C), factor) -> relu(a x + b), each frame
    repeated `factor` times (eval batch norm, ReLU, nearest upsampling in one pass)

    wavenet_layer(lib, WaveNetLayer(...), frames (B, 2R, K), hop, h, h_out, skips): one layer of a
    WaveNet flow (causal dilated conv, gate with the interpolated conditioning, skip and residual
    1x1s) in one pass over time tiles
"""
from __future__ import annotations

import ctypes

import numpy as np
import torch

from . import cbuild

# values dtype (numpy or torch, by name) -> the kernel's vdtype code
VDTYPE = {"float32": 0, "uint16": 1, "bfloat16": 1, "int16": 2, "float16": 2}
_P, _I, _L = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64


def declare(lib: ctypes.CDLL) -> ctypes.CDLL:
    """Set the argument and result types of the library's functions; returns lib."""
    lib.sw_spmm.argtypes = [_P, _I, _P, _P, _I, _I, _I, _I, _P, _L, _I, _P, _L, _I, _I]
    lib.sw_spmm.restype = _I
    lib.sw_conv1d.argtypes = [_P, _I, _P, _P, _P, _I, _I, _I, _P, _L, _I, _I, _I, _P, _L, _P]
    lib.sw_conv1d.restype = _I
    lib.sw_affine_relu.argtypes = [_P, _L, _I, _I, _P, _P, _I, _P]
    lib.sw_affine_relu.restype = None
    lib.sw_wavenet_layer.argtypes = [_P, _P, _P, _P, _I, _P, _I, _I, _P, _L, _I, _I, _P, _P, _P, _I, _P, _I, _P, _P,
                                     _P, _I]
    lib.sw_wavenet_layer.restype = _I
    lib.sw_vector_width.restype = _I
    lib.sw_isa.restype = _I
    return lib


def spmm_lib(extra_flags: tuple[str, ...] = ()) -> ctypes.CDLL | None:
    """The SpMM library built for this CPU (extra compiler flags make a variant), or None."""
    lib = cbuild.load("spmm", extra_flags)
    if lib is not None and not hasattr(lib, "_sw_declared"):
        declare(lib)
        lib._sw_declared = True
    return lib


def _ptr(a) -> int:
    return a.data_ptr() if isinstance(a, torch.Tensor) else a.__array_interface__["data"][0]


def _name(a) -> str:
    return str(a.dtype).removeprefix("torch.")


def _check(values, col_idx, row_ptr, br, x, out) -> int:
    """The kernel's vdtype code for these operands (numpy arrays or CPU tensors); raises on bad input."""
    vdtype = VDTYPE.get(_name(values))
    if vdtype is None:
        raise TypeError(f"values dtype must be float32, bfloat16 / uint16 or float16 / int16, got {values.dtype}")
    if any(_name(a) != "float32" or a.ndim != 2 for a in (x, out)):
        raise TypeError("x and out must be 2-D float32")
    if _name(col_idx) != "int32" or _name(row_ptr) != "int32":
        raise TypeError("col_idx and row_ptr must be int32")
    if not all(a.flags.c_contiguous if isinstance(a, np.ndarray) else a.is_contiguous()
               for a in (values, col_idx, row_ptr, x, out)):
        raise ValueError("values, col_idx, row_ptr, x and out must be C-contiguous")
    nbr = row_ptr.shape[0] - 1
    if values.shape[0] != col_idx.shape[0]:
        raise ValueError(f"{values.shape[0]} blocks of values but {col_idx.shape[0]} column indices")
    if x.shape[1] != out.shape[1] or -(-out.shape[0] // br) != nbr:
        raise ValueError(f"x (C, N) and out (R, N) with R in {nbr} block rows of {br} expected, "
                         f"got x {tuple(x.shape)}, out {tuple(out.shape)}")
    return vdtype


def spmm_into(lib, values, col_idx, row_ptr, br, bc, x, out, rows: tuple[int, int] | None = None) -> None:
    """out (R, N) = S (R, C) @ x (C, N) in the C kernel (see the module docstring); numpy
    arrays or CPU torch tensors (bfloat16 / float16 values tensors are fine as they are)."""
    vdtype = _check(values, col_idx, row_ptr, br, x, out)
    rb0, rb1 = rows or (0, row_ptr.shape[0] - 1)
    n = x.shape[1]
    rc = lib.sw_spmm(_ptr(values), vdtype, _ptr(col_idx), _ptr(row_ptr), br, bc, out.shape[0], x.shape[0],
                     _ptr(x), n, n, _ptr(out), n, rb0, rb1)
    if rc != 0:
        raise MemoryError("sw_spmm: out of scratch memory")


def conv_taps(m, kernel_size: int, dilation: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input row, frame shift) int32 of each stored block of m, which packs weight.reshape(Cout, Cin * k)."""
    col = m.col_idx.long()
    return ((col // kernel_size).int().contiguous(), ((col % kernel_size) * dilation).int().contiguous())


def conv1d_into(lib, m, taps, x: torch.Tensor, padding: int, reach: int, bias: torch.Tensor | None,
                out: torch.Tensor) -> None:
    """out[b] = conv(x[b]) for every batch item (see the module docstring); x and out
    float32 C-contiguous CPU tensors, m with (br, 1) blocks."""
    values = m.values.detach().contiguous()
    vdtype = VDTYPE.get(_name(values))
    if vdtype is None or m.block[1] != 1:
        raise TypeError(f"sw_conv1d needs (br, 1) blocks of float32 / bfloat16 / float16, got {m.block} {values.dtype}")
    (cout, _), (cin, t) = m.shape, x.shape[1:]
    t_out = out.shape[2]
    if out.shape[:2] != (x.shape[0], cout) or t_out != t + 2 * padding - reach or not (x.is_contiguous() and out.is_contiguous()):
        raise ValueError(f"conv1d_into: x {tuple(x.shape)} and out {tuple(out.shape)} do not match "
                         f"a {cout}-channel conv with padding {padding}, reach {reach}")
    row_ptr, (x_row, shift) = m.row_ptr.contiguous(), taps
    bp = None if bias is None else _ptr(bias)
    for b in range(x.shape[0]):
        rc = lib.sw_conv1d(_ptr(values), vdtype, _ptr(x_row), _ptr(shift), _ptr(row_ptr), m.block[0], cout, cin,
                           _ptr(x[b]), t, t, padding, reach, _ptr(out[b]), t_out, bp)
        if rc != 0:
            raise MemoryError("sw_conv1d: out of memory")


class WaveNetLayer:
    """The packed operands of one WaveNet layer for `wavenet_layer`: the dilated conv (kernel 2,
    dilation d; a BlockSparseMatrix of weight.reshape(2R, 2R_in) with (br, 1) blocks) and the skip
    and residual 1x1s stacked as one (S + R, R) matrix, with their biases."""

    def __init__(self, dilated, d: int, dilated_bias: torch.Tensor, pointwise, pointwise_bias: torch.Tensor,
                 skip_channels: int):
        for m in (dilated, pointwise):
            if m.block[1] != 1 or m.values.dtype != torch.float32:
                raise TypeError(f"wavenet_layer needs float32 (br, 1) blocks, got {m.block} {m.values.dtype}")
        self.dilated, self.pointwise, self.d, self.skip_channels = dilated, pointwise, d, skip_channels
        self.taps = conv_taps(dilated, 2, d)
        self.dilated_bias = dilated_bias.detach().float().contiguous()
        self.pointwise_bias = pointwise_bias.detach().float().contiguous()
        self.residual = dilated.shape[0] // 2


def wavenet_layer(lib, layer: WaveNetLayer, frames: torch.Tensor, hop: int, h: torch.Tensor,
                  h_out: torch.Tensor | None, skips: torch.Tensor) -> None:
    """One WaveNet layer in one pass over time tiles (sw_wavenet_layer): skips (B, S, T) += skip(g);
    h_out (B, R, T) = h + res(g) (not computed when None), g = tanh(a_f + c_f) * sigmoid(a_g + c_g),
    a the causal dilated conv of h, c the frames (B, 2R, K) interpolated to hop samples each."""
    (bsz, r, t), s = h.shape, layer.skip_channels
    ok = (r == layer.residual and skips.shape == (bsz, s, t) and frames.shape[:2] == (bsz, 2 * r)
          and (h_out is None or h_out.shape == h.shape) and frames.stride(2) == 1
          and all(v.is_contiguous() and v.dtype == torch.float32 for v in (h, skips, *(() if h_out is None else (h_out,)))))
    if not ok:
        raise ValueError(f"wavenet_layer: h {tuple(h.shape)}, skips {tuple(skips.shape)}, frames {tuple(frames.shape)}")
    dm, um = layer.dilated, layer.pointwise
    for b in range(bsz):
        rc = lib.sw_wavenet_layer(_ptr(dm.values), _ptr(layer.taps[0]), _ptr(layer.taps[1]), _ptr(dm.row_ptr),
                                  dm.block[0], _ptr(layer.dilated_bias), r, layer.d, _ptr(frames[b]), frames.stride(1),
                                  frames.shape[2], hop, _ptr(um.values), _ptr(um.col_idx), _ptr(um.row_ptr),
                                  um.block[0], _ptr(layer.pointwise_bias), s, _ptr(h[b]),
                                  None if h_out is None else _ptr(h_out[b]), _ptr(skips[b]), t)
        if rc != 0:
            raise MemoryError("sw_wavenet_layer: out of memory")


def affine_relu(lib, x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, factor: int = 1) -> torch.Tensor:
    """relu(a[..., None] * x + b[..., None]) upsampled `factor` times (nearest), float32 CPU tensors."""
    bsz, c, t = x.shape
    if a.shape != (bsz, c) or b.shape != (bsz, c) or factor < 1:
        raise ValueError(f"affine_relu: x {tuple(x.shape)}, a {tuple(a.shape)}, b {tuple(b.shape)}, factor {factor}")
    x, a, b = (v.detach().float().contiguous() for v in (x, a, b))
    out = torch.empty(bsz, c, t * factor, dtype=torch.float32)
    for i in range(bsz):
        lib.sw_affine_relu(_ptr(x[i]), t, c, t, _ptr(a[i]), _ptr(b[i]), factor, _ptr(out[i]))
    return out
