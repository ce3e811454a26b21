"""The C SpMM (kernels/csrc/spmm.c) against the reference: each ISA path, block, dtype and odd shape.

The tests build the library themselves (2-7 s per variant): the native one into the kernel cache
(kernels/cbuild.py; what the dispatcher loads), the AVX2 and portable ones into temporary folders.
"""
from __future__ import annotations

import ctypes
import logging

import numpy as np
import pytest
import torch
from kernel_cases import BLOCKS, DTYPES, SHAPES, random_matrix

import kernels
from kernels import cbuild, cpu_c, ops, reference

pytestmark = pytest.mark.skipif(cbuild.compiler() is None,
                                reason="no C compiler (cc or gcc) on PATH: the C kernels cannot be built here")

# extra flags -> the path they select on an x86 CPU with AVX-512 (the build uses -march=native)
VARIANTS = {
    "native": (),
    "avx2": ("-mno-avx512f",),
    "portable": ("-mno-avx512f", "-mno-avx2", "-mno-fma", "-mno-avx", "-mno-f16c"),
}


@pytest.fixture(autouse=True)
def one_torch_thread():
    """The reference on one thread: tiny ops, and a second OpenMP thread spin-waits on a busy machine."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _flags_ok(flags) -> bool:
    import platform
    return not flags or platform.machine() in ("x86_64", "AMD64")


@pytest.fixture(scope="module", params=list(VARIANTS))
def lib(request, tmp_path_factory):
    flags = VARIANTS[request.param]
    if not _flags_ok(flags):
        pytest.skip("x86 flags on a non-x86 machine")
    if not flags:  # the dispatcher's own library: built into the cache on a fresh clone
        lib = cpu_c.spmm_lib()
        assert lib is not None, "the C kernels failed to build (see the log)"
        return lib
    path = cbuild.build("spmm", flags, out_dir=tmp_path_factory.mktemp(request.param))
    lib = cpu_c.declare(ctypes.CDLL(str(path)))
    if request.param == "portable":
        assert lib.sw_isa() == 0 and lib.sw_vector_width() == 4
    return lib


@pytest.mark.parametrize("block", BLOCKS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_c_spmm_matches_reference(lib, block, dtype):
    for rows, cols, density in SHAPES:
        m, _ = random_matrix(rows, cols, density, block, dtype)
        for n in (1, 3, 16, 17, 32, 70):  # 17, 70: masked tails past one and several vectors
            x = torch.randn(cols, n)
            out = torch.full((rows, n), float("nan"))  # every row must be written, empty ones as 0
            cpu_c.spmm_into(lib, m.values, m.col_idx, m.row_ptr, *m.block, x, out)
            torch.testing.assert_close(out, reference.spmm(m, x), atol=1e-5, rtol=1e-5)


def test_c_numpy_args_block_range_and_nan(lib):
    m, dense = random_matrix(37, 22, 0.5, (8, 1), torch.bfloat16)
    x = np.random.default_rng(0).standard_normal((22, 5)).astype(np.float32)
    out = np.full((37, 5), 7.0, np.float32)
    cpu_c.spmm_into(lib, *m.numpy_args(), x, out, rows=(1, 3))  # block rows 1 and 2 only
    np.testing.assert_allclose(out[8:24], dense.numpy()[8:24] @ x, atol=1e-5)
    assert (out[:8] == 7).all() and (out[24:] == 7).all()
    x[3, 2] = np.nan
    cpu_c.spmm_into(lib, *m.numpy_args(), x, out)
    hit = dense[:, 3].numpy() != 0
    assert np.isnan(out[hit, 2]).all() and not np.isnan(out[~hit, 2]).any() and not np.isnan(out[:, :2]).any()


def test_c_bad_input(lib):
    m, _ = random_matrix(20, 9, 0.5, (4, 4))
    x, out = torch.randn(9, 3), torch.empty(20, 3)
    with pytest.raises(TypeError):
        cpu_c.spmm_into(lib, m.values.double(), m.col_idx, m.row_ptr, 4, 4, x, out)
    with pytest.raises(TypeError):
        cpu_c.spmm_into(lib, m.values, m.col_idx, m.row_ptr, 4, 4, x.double(), out)
    with pytest.raises(ValueError):
        cpu_c.spmm_into(lib, m.values, m.col_idx, m.row_ptr, 4, 4, x, torch.empty(20, 4))
    with pytest.raises(ValueError):
        cpu_c.spmm_into(lib, m.values, m.col_idx, m.row_ptr, 4, 4, torch.randn(3, 9).t(), out)


def test_c_callable_from_njit():
    from numba import njit
    lib = ops.c_spmm_lib()
    if lib is None:
        pytest.skip("the C kernels did not build for a vector ISA here")
    fn = lib.sw_spmm

    @njit
    def call(values, col_idx, row_ptr, br, bc, x, out):
        n = x.shape[1]
        return fn(values.ctypes.data, 1, col_idx.ctypes.data, row_ptr.ctypes.data, br, bc, out.shape[0],
                  x.shape[0], x.ctypes.data, n, n, out.ctypes.data, n, 0, row_ptr.shape[0] - 1)

    m, dense = random_matrix(40, 12, 0.4, (16, 1), torch.bfloat16)
    x, out = np.ones((12, 4), np.float32), np.zeros((40, 4), np.float32)
    assert call(*m.numpy_args(), x, out) == 0
    np.testing.assert_allclose(out, dense.numpy() @ x, atol=1e-5)


def test_dispatcher_uses_c_and_falls_back(monkeypatch, caplog, tmp_path):
    m, _ = random_matrix(37, 23, 0.3, (16, 1))
    x = torch.randn(23, 16)
    if ops.c_spmm_lib() is not None:
        assert ops.cpu_spmm_kernel(m, 16) == "c" and ops.cpu_spmm_kernel(m, 1) == "numba"
    monkeypatch.setattr(cbuild, "_LOADED", {})
    monkeypatch.setattr(cbuild, "compiler", lambda: "/bin/false")  # a compiler that always fails
    monkeypatch.setenv("SPARSEWAVE_KERNEL_CACHE", str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="kernels.cbuild"):
        for _ in range(3):
            assert ops.cpu_spmm_kernel(m, 16) == "numba"
            torch.testing.assert_close(kernels.spmm(m, x), reference.spmm(m, x), atol=1e-5, rtol=1e-5)
    assert sum("C kernels unavailable" in r.message for r in caplog.records) == 1


def test_build_is_cached_and_reports_errors(tmp_path):
    first = cbuild.build("spmm", ("-O2",), out_dir=tmp_path)
    stamp = first.stat().st_mtime_ns
    assert cbuild.build("spmm", ("-O2",), out_dir=tmp_path) == first and first.stat().st_mtime_ns == stamp
    with pytest.raises(cbuild.BuildError, match="failed"):
        cbuild.build("spmm", ("-fno-such-flag",), out_dir=tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no temporary left behind


@pytest.mark.parametrize("block", [(16, 1), (4, 1)])
def test_c_conv1d_each_isa_path(lib, block):
    """sw_conv1d (shifted taps, padded edges, chunks, bias) on each ISA path against torch's conv."""
    m, dense = random_matrix(20, 9 * 3, 0.35, block)
    x, bias = torch.randn(2, 9, 700), torch.randn(20)
    want = torch.nn.functional.conv1d(x, dense.reshape(20, 9, 3), bias, padding=4, dilation=4)
    out = torch.empty_like(want)
    cpu_c.conv1d_into(lib, m, cpu_c.conv_taps(m, 3, 4), x, 4, 8, bias, out)
    torch.testing.assert_close(out, want, atol=1e-4, rtol=1e-4)
