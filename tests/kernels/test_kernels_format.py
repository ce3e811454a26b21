import pytest
import torch
from kernel_cases import BLOCKS, DTYPES, SHAPES, random_matrix

from kernels import BlockSparseMatrix, block_magnitude_mask


@pytest.mark.parametrize("block", BLOCKS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_pack_roundtrip(block, dtype):
    for rows, cols, density in SHAPES:
        m, dense = random_matrix(rows, cols, density, block, dtype)
        assert m.values.dtype == dtype and m.values.shape[1:] == block
        assert m.row_ptr.shape == (-(-rows // block[0]) + 1,)
        assert torch.equal(m.to_dense(), dense)
        again = BlockSparseMatrix.from_tensors(m.to_tensors("layer.w"), "layer.w")
        assert torch.equal(again.to_dense(), dense) and again.values.dtype == dtype
        assert m.nbytes() == m.values.numel() * m.values.element_size() + 4 * (m.col_idx.numel() + m.row_ptr.numel())


def test_block_kept_if_any_mask_element():
    w = torch.ones(8, 4)
    mask = torch.zeros(8, 4)
    mask[5, 2] = 1  # one element of block (1, 0) for 4x4 blocks
    m = BlockSparseMatrix.from_dense(w, mask, (4, 4))
    assert m.nnz_blocks == 1 and m.col_idx.tolist() == [0] and m.row_ptr.tolist() == [0, 0, 1]
    assert torch.equal(m.to_dense(), w * mask)  # the packed matrix is weight * mask


def test_safetensors_roundtrip(tmp_path):
    from safetensors.torch import load_file, save_file
    m, dense = random_matrix(37, 23, 0.3, (16, 1), torch.bfloat16)
    save_file(m.to_tensors("rnn"), tmp_path / "w.safetensors")
    assert torch.equal(BlockSparseMatrix.from_tensors(load_file(tmp_path / "w.safetensors"), "rnn").to_dense(), dense)


def test_from_tensors_rejects_inconsistent():
    m, _ = random_matrix(37, 23, 0.3, (16, 1))
    t = m.to_tensors("w")
    t["w.bsr_meta"] = torch.tensor([37, 23, 8, 1])
    with pytest.raises(ValueError):
        BlockSparseMatrix.from_tensors(t, "w")
    with pytest.raises(KeyError):
        BlockSparseMatrix.from_tensors(t, "other")


@pytest.mark.parametrize("block", [(16, 1), (4, 4), (8, 1), (1, 1)])
def test_block_magnitude_mask(block):
    torch.manual_seed(0)
    w = torch.randn(50, 37)
    for sparsity in (0.0, 0.5, 0.9, 1.0):
        mask = block_magnitude_mask(w, sparsity, block)
        m = BlockSparseMatrix.from_dense(w, mask, block)
        n_blocks = -(-50 // block[0]) * -(-37 // block[1])
        assert m.nnz_blocks == round((1 - sparsity) * n_blocks)
        # every kept block is fully kept: the mask is constant on blocks
        assert torch.equal(m.to_dense() != 0, mask & (w != 0))
        assert torch.equal(BlockSparseMatrix.from_dense(mask.float(), None, block).to_dense().bool(), mask)
    # the kept blocks are the largest ones
    mask = block_magnitude_mask(w, 0.5, block)
    from kernels.format import block_view
    scores = block_view(w.abs(), block).sum(dim=(2, 3))
    kept = block_view(mask.float(), block).amax(dim=(2, 3)) > 0
    assert scores[kept].min() >= scores[~kept].max()
