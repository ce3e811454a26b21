"""Packed sparse layers for trained models: SparseConv1d, and swapping a model's
sparse-enough Conv1d/Linear layers for packed ones (any model family, no bespoke code).

    n = pack_sparse_layers(model, min_sparsity=0.5)  # in place; names of the swapped layers
    tensors = packed_state_dict(model)       # state dict, packed layers as .bsr_* arrays
    load_packed_state(fresh_model, tensors)  # swaps the same layers in, returns a state dict
                                             # that fresh_model.load_state_dict(strict=True) takes
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .format import SUFFIXES, BlockSparseMatrix
from .linear import BlockSparseLinear

ROW_BLOCKS = ((16, 1), (8, 1), (4, 1))
GEOMETRY = ".conv_geometry"  # int64 [kernel_size, dilation, padding] of a packed Conv1d


class SparseConv1d(nn.Module):
    """A Conv1d (stride 1, groups 1, zero padding) with a packed block-sparse weight.

    x (B, Cin, T) -> (B, Cout, T + 2 padding - dilation (kernel_size - 1)); the
    weight (Cout, Cin, k) is packed as (Cout, Cin * k) in (br, 1) blocks and run
    by kernels/conv.py (k shifted pointwise products for k > 1). Inference only:
    under autograd, on other devices or dtypes, the torch reference runs.
    """

    def __init__(self, packed: BlockSparseMatrix, bias: torch.Tensor | None, kernel_size: int = 1,
                 dilation: int = 1, padding: int = 0):
        super().__init__()
        if packed.shape[1] % kernel_size:
            raise ValueError(f"{packed.shape[1]} packed columns are not Cin * kernel_size {kernel_size}")
        self.packed = packed
        self.out_channels, self.in_channels = packed.shape[0], packed.shape[1] // kernel_size
        self.kernel_size, self.dilation, self.padding = kernel_size, dilation, padding
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())
        self.threads: int | None = None  # None: numba's current thread count
        self._taps = None  # the C kernel's per-block (input row, shift), made on first use

    @classmethod
    def from_conv(cls, layer: nn.Conv1d, block: tuple[int, int] = (16, 1),
                  dtype: torch.dtype = torch.float32) -> SparseConv1d:
        if not convertible(layer):
            raise ValueError(f"cannot pack {layer}: needs stride 1, groups 1, zero integer padding")
        w = layer.weight.detach().reshape(layer.out_channels, -1)
        packed = BlockSparseMatrix.from_dense(w, block=block, dtype=dtype)
        return cls(packed, layer.bias, layer.kernel_size[0], layer.dilation[0], layer.padding[0])

    def dense_weight(self) -> torch.Tensor:
        """(Cout, Cin, k) float32."""
        return self.packed.to_dense().reshape(self.out_channels, self.in_channels, self.kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from . import conv, cpu_c  # numba loads on first use

        if self._taps is None:
            self._taps = cpu_c.conv_taps(self.packed, self.kernel_size, self.dilation)
        return conv.conv1d(self.packed, x, self.bias, self.kernel_size, self.dilation, self.padding, self.threads,
                           self._taps)

    def to_tensors(self, prefix: str) -> dict[str, torch.Tensor]:
        geometry = torch.tensor([self.kernel_size, self.dilation, self.padding], dtype=torch.int64)
        return {**self.packed.to_tensors(prefix + ".weight"), prefix + GEOMETRY: geometry}

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"dilation={self.dilation}, padding={self.padding}, block={self.packed.block}, "
                f"density={self.packed.density:.3f}")


def convertible(layer: nn.Module) -> bool:
    """A Conv1d the kernels can run, or any Linear."""
    if isinstance(layer, nn.Linear):
        return True
    return (isinstance(layer, nn.Conv1d) and layer.stride == (1,) and layer.groups == 1
            and layer.padding_mode == "zeros" and not isinstance(layer.padding, str))


def sparsity_of(weight: torch.Tensor) -> float:
    return float((weight == 0).float().mean())


def choose_block(matrix: torch.Tensor, blocks=ROW_BLOCKS, dtype=torch.float32) -> BlockSparseMatrix:
    """The packing with the tallest (br, 1) block that stores no more than 5% over
    the nonzeros (so a mask pruned in 4x1 blocks packs 4x1, in 16x1 packs 16x1)."""
    nonzero = max(1e-9, 1.0 - sparsity_of(matrix))
    for block in blocks:
        packed = BlockSparseMatrix.from_dense(matrix, block=block, dtype=dtype)
        if packed.density <= 1.05 * nonzero:
            return packed
    return packed


def _linear_from(packed: BlockSparseMatrix, bias: torch.Tensor | None) -> BlockSparseLinear:
    lin = BlockSparseLinear(packed.shape[1], packed.shape[0], bias is not None, packed.block)
    dense = packed.to_dense()
    with torch.no_grad():
        lin.weight.copy_(dense)
        if bias is not None:
            lin.bias.copy_(bias)
    lin.set_mask(dense != 0)
    lin.packed = packed
    return lin


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, module)


@torch.no_grad()
def pack_sparse_layers(model: nn.Module, min_sparsity: float = 0.5, blocks=ROW_BLOCKS,
                       dtype: torch.dtype = torch.float32) -> list[str]:
    """Swap every Conv1d/Linear whose weight has at least `min_sparsity` zeros for
    SparseConv1d / a packed BlockSparseLinear, in place; returns their names."""
    done = []
    for name, layer in list(model.named_modules()):
        if not name or not convertible(layer) or sparsity_of(layer.weight) < min_sparsity:
            continue
        packed = choose_block(layer.weight.detach().reshape(layer.weight.shape[0], -1).float(), blocks, dtype)
        if isinstance(layer, nn.Linear):
            new = _linear_from(packed, layer.bias)
        else:
            new = SparseConv1d(packed, layer.bias, layer.kernel_size[0], layer.dilation[0], layer.padding[0])
        _set(model, name, new)
        done.append(name)
    return done


def packed_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """model.state_dict() with packed layers stored as their .bsr_* arrays (no dense weight, no mask)."""
    out = {}
    packed = {n: m for n, m in model.named_modules()
              if isinstance(m, SparseConv1d) or (isinstance(m, BlockSparseLinear) and m.packed is not None)}
    for name, tensor in model.state_dict().items():
        owner, _, leaf = name.rpartition(".")
        if owner in packed and leaf in ("weight", "mask"):
            continue
        out[name] = tensor
    for name, m in packed.items():
        out.update(m.to_tensors(name) if isinstance(m, SparseConv1d) else m.packed.to_tensors(name + ".weight"))
    return out


def has_packed(tensors: dict[str, torch.Tensor]) -> bool:
    return any(k.endswith(SUFFIXES[-1]) for k in tensors)


def load_packed_state(model: nn.Module, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Swap the layers packed in `tensors` into `model`; returns the state dict
    (the swapped layers' own entries filled in) for model.load_state_dict."""
    rest = dict(tensors)
    prefixes = [k[: -len(".weight" + SUFFIXES[-1])] for k in tensors if k.endswith(".weight" + SUFFIXES[-1])]
    for name in prefixes:
        packed = BlockSparseMatrix.from_tensors(tensors, name + ".weight")
        for s in SUFFIXES:
            rest.pop(name + ".weight" + s)
        bias = tensors.get(name + ".bias")
        layer = model.get_submodule(name)
        if isinstance(layer, (nn.Linear, BlockSparseLinear)):
            new = _linear_from(packed, bias)
        elif isinstance(layer, nn.Conv1d):
            k, d, p = (int(v) for v in rest.pop(name + GEOMETRY).tolist())
            new = SparseConv1d(packed, bias, k, d, p)
        else:
            raise ValueError(f"packed tensors for {name!r}, which is a {type(layer).__name__}")
        _set(model, name, new)
        for key, value in new.state_dict().items():
            rest.setdefault(f"{name}.{key}", value)
    return rest


def set_threads(model: nn.Module, threads: int | None) -> None:
    """Thread count of every packed conv layer (None: numba's current count)."""
    for m in model.modules():
        if isinstance(m, SparseConv1d):
            m.threads = threads


__all__ = ["SparseConv1d", "pack_sparse_layers", "packed_state_dict", "load_packed_state", "has_packed",
           "set_threads"]
