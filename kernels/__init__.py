"""Block-sparse formats and kernels (CPU: numba and a C SpMM, GPU: triton, reference: torch).

    from kernels import BlockSparseMatrix, spmv, spmm, sddmm, conv1x1, gru_step
    from kernels import BlockSparseLinear, block_magnitude_mask
    from kernels import SparseConv1d, pack_sparse_layers  # packed Conv1d/Linear of trained models
    import kernels.cpu  # raw @njit kernels on numpy arrays (see its docstring)

Imports nothing of the project's other packages; numba and triton load
lazily, on the first op that needs them; the C SpMM (kernels/csrc/spmm.c)
is compiled on first use and cached (kernels/cbuild.py).
"""
from .format import BLOCKS, STORAGE_DTYPES, BlockSparseMatrix
from .linear import BlockSparseLinear, block_magnitude_mask
from .ops import conv1x1, gru_step, pick_path, sddmm, spmm, spmv
from .sparse_layers import SparseConv1d, load_packed_state, pack_sparse_layers, packed_state_dict

__all__ = ["BLOCKS", "STORAGE_DTYPES", "BlockSparseMatrix", "BlockSparseLinear", "block_magnitude_mask",
           "conv1x1", "gru_step", "pick_path", "sddmm", "spmm", "spmv",
           "SparseConv1d", "load_packed_state", "pack_sparse_layers", "packed_state_dict"]
