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
