"""numba helpers shared by the CPU kernels: compile flags, half decoding, tanh."""
from __future__ import annotations

import contextlib

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import config as numba_config
from numba.extending import intrinsic, overload

# fastmath minus nnan/ninf: reassociation vectorizes the sums, while NaN and
# inf in the inputs still propagate as they would in the reference.
FASTMATH = {"nsz", "arcp", "contract", "reassoc", "afn"}
OPTS = dict(fastmath=FASTMATH, error_model="numpy", cache=True, nogil=True)


@contextlib.contextmanager
def slp_only():
    """Compile under LLVM's SLP vectorizer only (see the module docstring)."""
    old = numba_config.LOOP_VECTORIZE, numba_config.SLP_VECTORIZE
    numba_config.LOOP_VECTORIZE, numba_config.SLP_VECTORIZE = 0, 1
    try:
        yield
    finally:
        numba_config.LOOP_VECTORIZE, numba_config.SLP_VECTORIZE = old


@intrinsic
def _bits_f32(typingctx, bits):
    """Reinterpret the low 32 bits of an integer as float32."""
    if not isinstance(bits, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        v = args[0]
        if bits.bitwidth > 32:
            v = builder.trunc(v, ir.IntType(32))
        return builder.bitcast(v, ir.FloatType())
    return types.float32(bits), codegen


def load_f32(values, k, i):
    """values[k, i] as float32, decoding bfloat16 (uint16) or float16 (int16) bits."""
    raise NotImplementedError("only callable from numba")


@overload(load_f32, inline="always")
def _load_f32_impl(values, k, i):
    if values.dtype == types.float32:
        return lambda values, k, i: values[k, i]
    if values.dtype == types.uint16:  # bfloat16: the high half of a float32
        return lambda values, k, i: _bits_f32(np.uint32(values[k, i]) << np.uint32(16))
    if values.dtype == types.int16:  # float16: move the bits, then rescale the exponent by 2^112
        def f16(values, k, i):
            u = np.uint32(values[k, i]) & np.uint32(0xFFFF)
            bits = ((u & np.uint32(0x8000)) << np.uint32(16)) | ((u & np.uint32(0x7FFF)) << np.uint32(13))
            return _bits_f32(bits) * np.float32(5.192296858534828e33)
        return f16
    return None



@njit(fastmath=FASTMATH, error_model="numpy", inline="always")
def tanh_f32(x):
    """Rational tanh (Eigen's float32 fit), |error| < 1e-6; branch-free so it vectorizes."""
    x = min(max(x, np.float32(-9.0)), np.float32(9.0))
    x2 = x * x
    p = x2 * np.float32(-2.76076847742355e-16) + np.float32(2.00018790482477e-13)
    p = x2 * p + np.float32(-8.60467152213735e-11)
    p = x2 * p + np.float32(5.12229709037114e-08)
    p = x2 * p + np.float32(1.48572235717979e-05)
    p = x2 * p + np.float32(6.37261928875436e-04)
    p = x2 * p + np.float32(4.89352455891786e-03)
    q = x2 * np.float32(1.19825839466702e-06) + np.float32(1.18534705686654e-04)
    q = x2 * q + np.float32(2.26843463243900e-03)
    q = x2 * q + np.float32(4.89352518554385e-03)
    return x * p / q
