"""Deep Speech 2 (Amodei et al. 2015) and Deep Speech 1 (Hannun et al. 2014).

One module covers both:
- frontend "conv" (DS2): 2D convolutions over (time, mel) with stride,
  clipped ReLU; frontend "dense" (DS1): a window of frames stacked and fed
  to clipped-ReLU dense layers.
- a stack of recurrent layers (GRU or plain RNN), bidirectional or
  unidirectional, each with sequence-wise batch norm on its input (only over
  the frames that are not padding);
- for the unidirectional (streaming) variant, a lookahead row convolution;
- a dense layer and CTC logits over characters (models/deepspeech2/text.py).

Time padding is added once, at the input, and every convolution is "valid"
in time, so a frame's output depends only on real frames and zeros: batched,
single and streaming runs agree exactly.
"""
from __future__ import annotations

import dataclasses
import re

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from models.deepspeech2.text import N_CLASSES

GRU_MATRIX = re.compile(r"rnns\.\d+\.weight_(ih|hh)_l0(_reverse)?")  # the matrices a bundle may pack


@dataclasses.dataclass(frozen=True)
class DeepSpeech2Config:
    n_mels: int = 80
    frontend: str = "conv"  # conv (DS2) | dense (DS1)
    # conv frontend: per layer (time, freq) kernels and strides
    conv_channels: tuple[int, ...] = (32, 32)
    conv_kernels: tuple[tuple[int, int], ...] = ((11, 41), (11, 21))
    conv_strides: tuple[tuple[int, int], ...] = ((2, 2), (1, 2))
    # dense (DS1) frontend
    context: int = 5  # frames each side stacked into one input
    dense_stride: int = 2  # time stride of the window
    dense_layers: int = 3
    dense_size: int = 512
    # recurrent stack
    rnn_type: str = "gru"  # gru | rnn
    rnn_layers: int = 3
    rnn_hidden: int = 256
    bidirectional: bool = True
    batch_norm: bool = True  # sequence-wise BN on each recurrent layer's input
    lookahead: int = 0  # row convolution over this many future frames (unidirectional)
    fc_size: int = 0  # 0: no dense layer between the recurrent stack and the output
    clip: float = 20.0  # clipped ReLU ceiling
    n_classes: int = N_CLASSES

    def __post_init__(self):
        if self.frontend not in ("conv", "dense"):
            raise ValueError(f"frontend={self.frontend!r}; choose conv or dense")
        if self.rnn_type not in ("gru", "rnn"):
            raise ValueError(f"rnn_type={self.rnn_type!r}; choose gru or rnn")
        if len(self.conv_kernels) != len(self.conv_channels) or len(self.conv_strides) != len(self.conv_channels):
            raise ValueError("conv_channels, conv_kernels and conv_strides need one entry per layer")
        if self.lookahead and self.bidirectional:
            raise ValueError("lookahead (row convolution) is for the unidirectional model")


def masked_frames(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """(B,) lengths -> (B, steps) bool, True on real frames."""
    return torch.arange(steps, device=lengths.device)[None, :] < lengths[:, None]


class MaskedBatchNorm(nn.Module):
    """Sequence-wise batch norm: statistics over all real frames of a batch."""

    def __init__(self, size: int):
        super().__init__()
        self.norm = nn.BatchNorm1d(size)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # (B, T, C), (B, T)
        if not self.training:  # a fixed affine map per frame: streaming-safe
            return self.norm(x.reshape(-1, x.shape[-1])).reshape(x.shape) * mask[..., None]
        out = torch.zeros_like(x)
        out[mask] = self.norm(x[mask])
        return out


class ConvFrontend(nn.Module):
    """(B, T, n_mels) -> (B, T', C * F'); valid convolutions in time."""

    def __init__(self, cfg: DeepSpeech2Config):
        super().__init__()
        self.clip = cfg.clip
        layers, channels, freq = [], 1, cfg.n_mels
        for out_ch, (kt, kf), (st, sf) in zip(cfg.conv_channels, cfg.conv_kernels, cfg.conv_strides):
            # Frequency padding is a separate F.pad (forward_valid): oneDNN's padded-conv path on AVX2-only
            # CPUs ran this layer 250x slower (234 ms vs 0.9 ms, 300 frames, one thread); same values.
            layers.append(nn.Conv2d(channels, out_ch, (kt, kf), (st, sf)))
            channels, freq = out_ch, (freq + 2 * (kf // 2) - kf) // sf + 1
        self.convs = nn.ModuleList(layers)
        self.out_size = channels * freq
        # Receptive field and stride in input frames, for padding and streaming.
        self.stride = 1
        self.field = 1
        for (kt, _), (st, _) in zip(cfg.conv_kernels, cfg.conv_strides):
            self.field += (kt - 1) * self.stride
            self.stride *= st
        # field - 1 frames of padding give ceil(T / stride) outputs, centred.
        self.pad_left = (self.field - 1) // 2
        self.pad_right = self.field - 1 - self.pad_left

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return torch.div(lengths + self.stride - 1, self.stride, rounding_mode="floor")

    def forward_valid(self, x: torch.Tensor) -> torch.Tensor:
        """Already time-padded (B, T, n_mels) -> (B, T', C * F')."""
        y = x.unsqueeze(1)  # (B, 1, T, F)
        for conv in self.convs:
            pad = conv.kernel_size[1] // 2
            y = torch.clamp(conv(F.pad(y, (pad, pad))), 0.0, self.clip)
        b, c, t, f = y.shape
        return y.permute(0, 2, 1, 3).reshape(b, t, c * f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (0, 0, self.pad_left, self.pad_right))
        return self.forward_valid(x)


class DenseFrontend(nn.Module):
    """DS1: stack 2*context+1 frames (stride dense_stride), clipped-ReLU dense layers."""

    def __init__(self, cfg: DeepSpeech2Config):
        super().__init__()
        self.clip = cfg.clip
        self.stride = cfg.dense_stride
        self.field = 2 * cfg.context + 1
        self.pad_left = cfg.context
        self.pad_right = cfg.context
        sizes = [cfg.n_mels * self.field] + [cfg.dense_size] * cfg.dense_layers
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.out_size = sizes[-1]

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return torch.div(lengths + self.stride - 1, self.stride, rounding_mode="floor")

    def forward_valid(self, x: torch.Tensor) -> torch.Tensor:
        b, t, f = x.shape
        windows = x.unfold(1, self.field, self.stride)  # (B, T', F, field)
        y = windows.transpose(2, 3).reshape(b, windows.shape[1], self.field * f)
        for layer in self.layers:
            y = torch.clamp(layer(y), 0.0, self.clip)
        return y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_valid(F.pad(x, (0, 0, self.pad_left, self.pad_right)))


class RowConv(nn.Module):
    """Lookahead convolution: y_t = sum_{j=0..tau} w_j * h_{t+j}, per channel."""

    def __init__(self, size: int, lookahead: int):
        super().__init__()
        self.lookahead = lookahead
        self.weight = nn.Parameter(torch.zeros(size, 1, lookahead + 1))
        with torch.no_grad():
            self.weight[:, 0, 0] = 1.0  # starts as the identity

    def forward_valid(self, h: torch.Tensor) -> torch.Tensor:  # (B, T + tau, C) -> (B, T, C)
        return F.conv1d(h.transpose(1, 2), self.weight, groups=h.shape[-1]).transpose(1, 2)

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # (B, T, C), zeros past each length
        return self.forward_valid(F.pad(h, (0, 0, 0, self.lookahead)))


class DeepSpeech2(nn.Module):
    """features (B, T, n_mels) log-mel + lengths (B,) -> CTC logits (B, T', n_classes), lengths (B,)."""

    def __init__(self, config: DeepSpeech2Config):
        super().__init__()
        self.config = cfg = config
        # Input normalization (a batch norm over mel bins, fixed at inference).
        self.input_norm = MaskedBatchNorm(cfg.n_mels)
        self.frontend = ConvFrontend(cfg) if cfg.frontend == "conv" else DenseFrontend(cfg)
        rnn_cls = nn.GRU if cfg.rnn_type == "gru" else nn.RNN
        size = self.frontend.out_size
        self.norms = nn.ModuleList()
        self.rnns = nn.ModuleList()
        for _ in range(cfg.rnn_layers):
            self.norms.append(MaskedBatchNorm(size) if cfg.batch_norm else nn.Identity())
            self.rnns.append(rnn_cls(size, cfg.rnn_hidden, batch_first=True, bidirectional=cfg.bidirectional))
            size = cfg.rnn_hidden  # the two directions are summed (DS1)
        self.row_conv = RowConv(size, cfg.lookahead) if cfg.lookahead else None
        self.fc = nn.Linear(size, cfg.fc_size) if cfg.fc_size else None
        self.out = nn.Linear(cfg.fc_size or size, cfg.n_classes)

    @property
    def time_stride(self) -> int:
        return self.frontend.stride

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return self.frontend.output_lengths(lengths)

    def encode(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, n_mels) -> frontend output (B, T', D) zeroed past the lengths, lengths (B,)."""
        mask = masked_frames(lengths, features.shape[1])
        x = self.input_norm(features, mask)
        h = self.frontend(x)
        out_lengths = self.output_lengths(lengths)
        return h, out_lengths

    def rnn_layer(self, i: int, h: torch.Tensor, lengths: torch.Tensor, mask: torch.Tensor,
                  state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One normalized recurrent layer; (B, T, D) -> (B, T, H) and the final state."""
        h = self.norms[i](h, mask) if self.config.batch_norm else h
        if self.config.bidirectional:  # a forward-only layer needs no packing: padding comes last
            packed = pack_padded_sequence(h, lengths.cpu(), batch_first=True, enforce_sorted=False)
            y, state = self.rnns[i](packed, state)
            y, _ = pad_packed_sequence(y, batch_first=True, total_length=h.shape[1])
        else:
            y, state = self.rnns[i](h, state)
        if self.config.bidirectional:
            y = y[..., : self.config.rnn_hidden] + y[..., self.config.rnn_hidden:]
        return y, state

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """(B, T, H) -> logits (B, T, n_classes)."""
        if self.fc is not None:
            h = torch.clamp(self.fc(h), 0.0, self.config.clip)
        return self.out(h)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """features (B, T, n_mels), lengths (B,) -> logits (B, T', n_classes), lengths (B,)."""
        h, out_lengths = self.encode(features, lengths)
        mask = masked_frames(out_lengths, h.shape[1])
        for i in range(len(self.rnns)):
            h, _ = self.rnn_layer(i, h, out_lengths, mask)
        if self.row_conv is not None:
            h = self.row_conv(h * mask[..., None])
        return self.head(h), out_lengths

    def bundle_tensors(self) -> dict[str, torch.Tensor]:
        """What a bundle stores: floating-point tensors as float16 (half the size on disk); GRU
        matrices with at least half their entries zero (pruned: configs/deepspeech2/sparse.yaml)
        packed in kernels/format.py's block-sparse format (name.bsr_values, ...), which the
        native engine runs (models/deepspeech2/recurrent.py)."""
        from kernels.format import BlockSparseMatrix
        from kernels.sparse_layers import choose_block, sparsity_of

        out = {}
        for k, v in self.state_dict().items():
            v = v.detach()
            if GRU_MATRIX.fullmatch(k) and sparsity_of(v) >= 0.5:
                block = choose_block(v.float()).block
                out.update(BlockSparseMatrix.from_dense(v.float(), None, block, torch.float16).to_tensors(k))
            else:
                out[k] = v.half() if v.is_floating_point() else v
        return out

    def load_bundle_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """Load `bundle_tensors()` output (float16 widened back to float32, packed matrices unpacked)."""
        from kernels.format import SUFFIXES, BlockSparseMatrix

        state = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()
                 if not k.endswith(SUFFIXES)}
        for key in tensors:
            if key.endswith(SUFFIXES[-1]):
                name = key[: -len(SUFFIXES[-1])]
                state[name] = BlockSparseMatrix.from_tensors(tensors, name).to_dense()
        try:
            self.load_state_dict(state)
        except RuntimeError as exc:
            raise ValueError(f"weights do not match the deepspeech2 config: {str(exc).splitlines()[-1].strip()}")

    @torch.no_grad()
    def infer(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The inference path: log-probabilities (B, T', n_classes) and lengths (B,)."""
        logits, out_lengths = self(features, lengths)
        return logits.log_softmax(-1), out_lengths
