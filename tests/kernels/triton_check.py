"""Triton kernels against the reference, on the CPU through the interpreter.

Run as a script in its own process (test_kernels_triton.py does): the
interpreter must be switched on before triton is imported.
"""
import os
import sys
from pathlib import Path

os.environ["TRITON_INTERPRET"] = "1"
sys.path[:0] = [str(Path(__file__).resolve().parents[2]), str(Path(__file__).resolve().parent)]

import torch  # noqa: E402
from kernel_cases import random_matrix  # noqa: E402

from kernels import reference, triton_ops  # noqa: E402

F32, BF16, F16 = torch.float32, torch.bfloat16, torch.float16
# (block, storage dtype, rows, cols, density): every block and dtype, odd
# shapes, fully dense, fully empty; few, because the interpreter is slow
CASES = [((16, 1), F32, 37, 23, 0.3), ((8, 1), F32, 37, 23, 0.3), ((4, 4), F32, 37, 23, 0.3),
         ((1, 1), F32, 13, 10, 0.3), ((16, 1), BF16, 37, 23, 0.3), ((4, 4), F16, 20, 9, 1.0),
         ((16, 1), F32, 16, 12, 0.0)]


def close(a, b, what):
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4, msg=lambda m: f"{what}: {m}")


def main() -> None:
    torch.manual_seed(0)
    n_checks = 0
    for block, dtype, rows, cols, density in CASES:
        m, _ = random_matrix(rows, cols, density, block, dtype)
        what = f"{block} {dtype} {rows}x{cols}@{density}"
        x = torch.randn(cols, 5)
        close(triton_ops.spmm(m, x), reference.spmm(m, x), f"spmm {what}")
        close(triton_ops.spmm(m, x[:, :1]), reference.spmm(m, x[:, :1]), f"spmv {what}")
        close(triton_ops.spmm(m, x.t().contiguous().t()), reference.spmm(m, x), f"spmm strided x {what}")
        x, bias = torch.randn(2, cols, 7), torch.randn(rows)
        close(triton_ops.conv1x1(m, x, bias), reference.conv1x1(m, x, bias), f"conv1x1 {what}")
        a, b = torch.randn(rows, 19), torch.randn(19, cols)
        close(triton_ops.sddmm(a, b, m).values, reference.sddmm(a, b, m).values, f"sddmm {what}")
        n_checks += 1
    assert not triton_ops.supports(random_matrix(8, 9, 0.5, (2, 3))[0])
    print(f"triton interpreter: {n_checks} cases ok")


if __name__ == "__main__":
    main()
