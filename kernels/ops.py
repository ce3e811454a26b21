"""The dispatcher: one entry point per op, the path picked by device, dtype and availability.

CUDA tensors + triton -> kernels.triton_ops; CPU float32 activations ->
kernels.cpu (numba), or for spmm the C kernel (kernels.cpu_c) where it is
faster (`cpu_spmm_kernel`); anything else (autograd, other dtypes, other devices,
no triton) -> kernels.reference, with one logging.warning per reason.
`threads` (CPU): None uses numba's current thread count; > 1 uses the
parallel kernels when the work is large enough to pay for them.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager

import numpy as np
import torch

from . import reference
from .format import BlockSparseMatrix

log = logging.getLogger(__name__)
_WARNED: set[str] = set()
_TRITON: list = []  # [module or None], resolved once
PARALLEL_MIN_FLOPS = 1 << 18  # below this a parallel region costs more than it saves
LONG_N = 64  # without the C kernel, spmm with more columns and (br, 1) blocks runs kernels/conv.py's
# the C SpMM runs for blocks wider than one column, and for (br, 1) blocks from this many columns
# (for one column numba's SpMV is as fast or faster; measured, docs/kernels.md)
C_MIN_N = 2


def _fallback(reason: str) -> str:
    if reason not in _WARNED:
        _WARNED.add(reason)
        log.warning("kernels: using the torch reference (%s)", reason)
    return "reference"


def triton_ops():
    """kernels.triton_ops, or None when triton cannot be imported."""
    if not _TRITON:
        try:
            from . import triton_ops as mod
        except Exception as e:  # ImportError, or a broken triton install
            log.debug("triton unavailable: %s", e)
            mod = None
        _TRITON.append(mod)
    return _TRITON[0]


def pick_path(m: BlockSparseMatrix, *tensors: torch.Tensor) -> str:
    """'triton', 'numba' or 'reference' for these operands."""
    devices = {m.device.type, *(t.device.type for t in tensors)}
    if len(devices) > 1:
        return _fallback(f"operands on different devices {sorted(devices)}")
    if torch.is_grad_enabled() and any(t.requires_grad for t in (m.values, *tensors)):
        return _fallback("autograd needs the reference path")
    if any(t.dtype != torch.float32 for t in tensors):
        return _fallback(f"activations of dtype {[str(t.dtype) for t in tensors]}; fast paths take float32")
    if devices == {"cuda"}:
        if triton_ops() is None:
            return _fallback("CUDA tensors but triton is unavailable")
        if not triton_ops().supports(m):
            return _fallback(f"triton needs power-of-two block dims, got {m.block}")
        return "triton"
    if devices == {"cpu"}:
        return "numba"
    return _fallback(f"no fast path for device {devices.pop()}")


@contextmanager
def _numba_threads(threads: int | None):
    import numba
    torch_threads = torch.get_num_threads()  # first: numba's first call may change it
    old = numba.get_num_threads()
    n = old if threads is None else max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(n)
    try:
        yield n
    finally:
        numba.set_num_threads(old)
        # numba's OpenMP layer sets the calling thread's OpenMP count, which is torch's too
        if torch.get_num_threads() != torch_threads:
            torch.set_num_threads(torch_threads)


def _cpu(m: BlockSparseMatrix, parallel: bool):
    from . import cpu
    args = m.numpy_args()
    cpu.ensure_compiled(args[0].dtype, parallel)
    return cpu, args


def c_spmm_lib():
    """The C SpMM library when it is built for a vector ISA (AVX2 / AVX-512), else None (said once)."""
    from . import cpu_c
    lib = cpu_c.spmm_lib()
    if lib is not None and lib.sw_isa() == 0:
        _fallback_numba("the C kernels were built without AVX2 or AVX-512")
        return None
    return lib


def _fallback_numba(reason: str) -> None:
    if reason not in _WARNED:
        _WARNED.add(reason)
        log.warning("kernels: numba SpMM (%s)", reason)


def cpu_spmm_kernel(m: BlockSparseMatrix, n: int) -> str:
    """'c', 'numba' or 'conv': the CPU kernel ops.spmm runs for float32 x with n columns."""
    if (m.block[1] > 1 or n >= C_MIN_N) and c_spmm_lib() is not None:
        return "c"
    if n > LONG_N and m.block[1] == 1:
        return "conv"
    return "numba"


def spmm(m: BlockSparseMatrix, x: torch.Tensor, threads: int | None = None) -> torch.Tensor:
    """S (R, C) @ x (C, N) -> (R, N) float32."""
    if x.dim() != 2 or x.shape[0] != m.shape[1]:
        raise ValueError(f"x must be ({m.shape[1]}, N), got {tuple(x.shape)}")
    path = pick_path(m, x)
    if path == "triton":
        return triton_ops().spmm(m, x)
    if path == "reference":
        return reference.spmm(m, x)
    kernel = cpu_spmm_kernel(m, x.shape[1])
    if kernel == "conv":  # many columns: the conv kernel's time tiles
        from . import conv
        return conv.conv1d(m, x[None], threads=threads)[0]
    out = torch.empty(m.shape[0], x.shape[1], dtype=torch.float32)
    if kernel == "c":  # one thread: it beats numba on two (docs/kernels.md)
        from . import cpu_c
        cpu_c.spmm_into(c_spmm_lib(), m.values.detach().contiguous(), m.col_idx.contiguous(),
                        m.row_ptr.contiguous(), *m.block, x.detach().contiguous(), out)
        return out
    with _numba_threads(threads) as n:
        parallel = n > 1 and m.values.numel() * x.shape[1] >= PARALLEL_MIN_FLOPS
        cpu, args = _cpu(m, parallel)
        fn = cpu.spmm_into_parallel if parallel else cpu.spmm_into
        fn(*args, x.detach().contiguous().numpy(), out.numpy())
    return out


def spmv(m: BlockSparseMatrix, x: torch.Tensor, threads: int | None = None) -> torch.Tensor:
    """S (R, C) @ x (C,) -> (R,) float32."""
    if x.shape != (m.shape[1],):
        raise ValueError(f"x must be ({m.shape[1]},), got {tuple(x.shape)}")
    path = pick_path(m, x)
    if path == "triton":
        return triton_ops().spmm(m, x[:, None])[:, 0]
    if path == "reference":
        return reference.spmv(m, x)
    out = torch.empty(m.shape[0], dtype=torch.float32)
    with _numba_threads(threads) as n:
        parallel = n > 1 and m.values.numel() >= 4 * PARALLEL_MIN_FLOPS
        cpu, args = _cpu(m, parallel)
        fn = cpu.spmv_into_parallel if parallel else cpu.spmv_into
        fn(*args, x.detach().contiguous().numpy(), out.numpy())
    return out


def sddmm(a: torch.Tensor, b: torch.Tensor, pattern: BlockSparseMatrix,
          threads: int | None = None) -> BlockSparseMatrix:
    """(a (R, K) @ b (K, C)) at pattern's blocks -> float32 matrix of pattern's structure."""
    path = pick_path(pattern, a, b)
    if path == "triton":
        return triton_ops().sddmm(a, b, pattern)
    if path == "reference":
        return reference.sddmm(a, b, pattern)
    if a.shape[0] != pattern.shape[0] or b.shape[1] != pattern.shape[1] or a.shape[1] != b.shape[0]:
        raise ValueError(f"sddmm shapes {tuple(a.shape)} @ {tuple(b.shape)} vs pattern {pattern.shape}")
    from . import cpu
    br, bc = pattern.block
    out = torch.empty(pattern.nnz_blocks, br * bc, dtype=torch.float32)
    cpu.ensure_sddmm()
    with _numba_threads(threads):
        cpu.sddmm_into(a.detach().contiguous().numpy(), b.detach().t().contiguous().numpy(),
                       pattern.col_idx.numpy(), pattern.row_ptr.numpy(), br, bc, out.numpy())
    return BlockSparseMatrix(out.view(-1, br, bc), pattern.col_idx, pattern.row_ptr, pattern.shape, pattern.block)


def conv1x1(m: BlockSparseMatrix, x: torch.Tensor, bias: torch.Tensor | None = None,
            threads: int | None = None) -> torch.Tensor:
    """Sparse 1x1 convolution: weights (Cout, Cin), x (B, Cin, T) -> (B, Cout, T)."""
    if x.dim() != 3 or x.shape[1] != m.shape[1]:
        raise ValueError(f"x must be (B, {m.shape[1]}, T), got {tuple(x.shape)}")
    tensors = (x,) if bias is None else (x, bias)
    path = pick_path(m, *tensors)
    if path == "triton":
        return triton_ops().conv1x1(m, x, bias)
    if path == "reference":
        return reference.conv1x1(m, x, bias)
    if m.block[1] == 1 and cpu_spmm_kernel(m, x.shape[2]) != "c":
        from . import conv
        return conv.conv1d(m, x, bias, threads=threads)
    out = torch.stack([spmm(m, x[i], threads) for i in range(x.shape[0])]) if x.shape[0] else \
        torch.empty(0, m.shape[0], x.shape[2])
    return out + bias[None, :, None] if bias is not None else out


def gru_step(m: BlockSparseMatrix, bias: torch.Tensor, ix: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """One WaveRNN GRU step (see reference.gru_step): R (3H, H), bias, ix (3H,), h (H,) -> (H,)."""
    H = h.shape[0]
    if m.shape != (3 * H, H) or bias.shape != (3 * H,) or ix.shape != (3 * H,):
        raise ValueError(f"gru_step shapes: R {m.shape}, bias {tuple(bias.shape)}, ix {tuple(ix.shape)}, h ({H},)")
    path = pick_path(m, bias, ix, h)
    if path == "triton":
        gh = triton_ops().spmm(m, h[:, None])[:, 0] + bias
        return reference.gru_gates(gh, ix, h)
    if path == "reference":
        return reference.gru_step(m, bias, ix, h)
    cpu, args = _cpu(m, False)
    hn = np.empty(H, np.float32)
    gh = np.empty(m.n_block_rows * m.block[0], np.float32)
    np_ = [t.detach().contiguous().numpy() for t in (bias, ix, h)]
    cpu.gru_step_into(*args, *np_, gh, hn)
    return torch.from_numpy(hn)
