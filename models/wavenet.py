"""WaveNet (van den Oord et al. 2016) as the Parallel WaveNet teacher (2017).

    x (B, T) in [-1, 1], shifted right by one sample
      -> causal conv (kernel 2) -> L residual layers:
         a = dilated causal conv_l(h) + V_l c          (kernel 2, dilation 2^(l mod cycle))
         g = tanh(a_f) * sigmoid(a_g);  skip += S_l g;  h += R_l g
      -> relu -> 1x1 -> relu -> 1x1 -> 3K mixture params per sample
      (discretized mixture of K logistics over 16-bit audio: models/logistic_mixture.py)

Conditioning c: 200 Hz frame features (linguistic features from the text
frontend, or log-mel for copy-synthesis) and a speaker embedding through the
conditioning net that WaveRNN uses (models/wavernn.py `CondNet`), linearly
interpolated to the sample rate (`upsample_frames`).

Fast generation is the queue method of Fast WaveNet (Paine et al. 2016):
each layer keeps the inputs it saw in the last `dilation` steps in a ring
buffer, so one step costs one matrix product per layer whatever the
receptive field. Because V_l and the interpolation are both linear, the
conditioning is projected once at frame rate and interpolated per step.
`WaveNetStack` is shared with the student's flows (models/parallel_wavenet.py).
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn
from torch.nn import functional as F

from models.logistic_mixture import discretized_mol_log_prob, sample_mol
from models.wavernn import CondNet


@dataclasses.dataclass(frozen=True)
class WaveNetConfig:
    sample_rate: int = 16000
    hop_length: int = 80  # samples per conditioning frame (200 Hz at 16 kHz)
    residual_channels: int = 64
    skip_channels: int = 128
    layers: int = 20
    dilation_cycle: int = 10  # layer l has dilation 2 ** (l % dilation_cycle)
    n_mixtures: int = 10  # the paper's 10 logistics
    log_scale_min: float = -9.0  # floor of ln(scale); a 16-bit bin is e^-10.4 wide
    # Conditioning (field names shared with models.wavernn.CondNet).
    cond_kind: str = "linguistic"  # linguistic | mel
    cond_channels: int = 87  # features per frame: to_model_input width, or n_mels
    cond_hidden: int = 64
    cond_kernel: int = 5
    cond_layers: int = 2
    n_speakers: int = 1
    speaker_dim: int = 16

    def __post_init__(self):
        if self.cond_kind not in ("linguistic", "mel"):
            raise ValueError(f"cond_kind={self.cond_kind!r}; choose linguistic or mel")

    @property
    def dilations(self) -> tuple[int, ...]:
        return dilations(self.layers, self.dilation_cycle)

    @property
    def receptive_field(self) -> int:
        return receptive_field(self.dilations)


def dilations(layers: int, cycle: int) -> tuple[int, ...]:
    return tuple(2 ** (i % cycle) for i in range(layers))


def receptive_field(dils: tuple[int, ...]) -> int:
    """Past samples a prediction sees: the shift, the input conv and every dilated conv."""
    return 2 + sum(dils)


class WaveNetStack(nn.Module):
    """The causal conv stack: input (B, in_ch, T) already shifted, conditioning
    (B, cond_hidden, T) -> (B, out_ch, T); output t depends on inputs <= t."""

    def __init__(self, in_channels: int, out_channels: int, residual: int, skip: int,
                 dils: tuple[int, ...], cond_hidden: int):
        super().__init__()
        self.dils, self.residual = tuple(dils), residual
        self.input = nn.Conv1d(in_channels, residual, 2)
        self.dilated = nn.ModuleList(nn.Conv1d(residual, 2 * residual, 2, dilation=d) for d in self.dils)
        self.cond = nn.ModuleList(nn.Conv1d(cond_hidden, 2 * residual, 1, bias=False) for _ in self.dils)
        self.res = nn.ModuleList(nn.Conv1d(residual, residual, 1) for _ in self.dils)
        self.skip = nn.ModuleList(nn.Conv1d(residual, skip, 1) for _ in self.dils)
        self.out1 = nn.Conv1d(skip, skip, 1)
        self.out2 = nn.Conv1d(skip, out_channels, 1)

    def forward(self, x: torch.Tensor, cond: torch.Tensor, hop: int = 0) -> torch.Tensor:
        """cond is (B, cond_hidden, T) at the sample rate, or, with hop > 0, (B, cond_hidden, K)
        frames (K * hop >= T): each layer's projection is then taken at the frame rate and
        interpolated (the same values, both maps being linear; 1 / hop of the work)."""
        R, T = self.residual, x.shape[-1]
        frames = F.conv1d(cond, self.cond_weight()[:, :, None]) if hop else None  # (B, L * 2R, K)
        h = self.input(F.pad(x, (1, 0)))
        skips = 0.0
        last = len(self.dils) - 1
        for i, (d, conv, cproj, res, skip) in enumerate(zip(self.dils, self.dilated, self.cond, self.res, self.skip)):
            c = upsample_linear(frames[:, i * 2 * R:(i + 1) * 2 * R], hop, T) if hop else cproj(cond)
            a = conv(F.pad(h, (d, 0))) + c
            g = torch.tanh(a[:, :R]) * torch.sigmoid(a[:, R:])
            skips = skips + skip(g)
            if i < last:  # the last layer's residual output is never read
                h = h + res(g)
        return self.out2(F.relu(self.out1(F.relu(skips))))

    # --- the queue method -----------------------------------------------------------------------
    def cond_weight(self) -> torch.Tensor:
        """All layers' conditioning projections stacked: (L * 2R, cond_hidden)."""
        return torch.cat([c.weight[:, :, 0] for c in self.cond], dim=0)

    def init_queues(self, batch: int, dtype, device) -> list[torch.Tensor]:
        """Zeroed ring buffers: the input conv's (B, 1, in_ch), then one (B, d, R) per layer."""
        queues = [torch.zeros(batch, 1, self.input.in_channels, dtype=dtype, device=device)]
        queues += [torch.zeros(batch, d, self.residual, dtype=dtype, device=device) for d in self.dils]
        return queues

    def step(self, x_t: torch.Tensor, cond_t: torch.Tensor, queues: list[torch.Tensor], t: int) -> torch.Tensor:
        """One sample: x_t (B, in_ch) (the shifted input at t), cond_t (B, L * 2R)
        (projected conditioning at t) -> (B, out_ch). Updates the queues in place."""
        R = self.residual

        def causal(conv: nn.Module, queue: torch.Tensor, cur: torch.Tensor, d: int) -> torch.Tensor:
            slot = t % d
            old = queue[:, slot].clone()
            queue[:, slot] = cur
            if is_packed(conv):  # columns cin * 2 + tap of the packed (out, in * 2) matrix
                return packed_step(conv, torch.stack([old, cur], dim=2).flatten(1))
            w = conv.weight  # (out, in, 2): tap 0 sees t - d, tap 1 sees t
            return torch.addmm(conv.bias, torch.cat([old, cur], dim=1), torch.cat([w[:, :, 0], w[:, :, 1]], 1).T)

        h = causal(self.input, queues[0], x_t, 1)
        skips = 0.0
        for i, (d, conv, res, skip) in enumerate(zip(self.dils, self.dilated, self.res, self.skip)):
            a = causal(conv, queues[i + 1], h, d) + cond_t[:, i * 2 * R:(i + 1) * 2 * R]
            g = torch.tanh(a[:, :R]) * torch.sigmoid(a[:, R:])
            skips = skips + pointwise_step(skip, g)
            h = h + pointwise_step(res, g)
        y = pointwise_step(self.out1, F.relu(skips))
        return pointwise_step(self.out2, F.relu(y))


def is_packed(layer: nn.Module) -> bool:
    from kernels.sparse_layers import SparseConv1d

    return isinstance(layer, SparseConv1d)


def packed_step(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """One time step of a packed conv (kernels/sparse_layers.SparseConv1d) on the sparse kernels:
    x (B, Cin * k) in its column order -> (B, Cout)."""
    from kernels import spmm

    out = spmm(layer.packed, x.T.to(torch.float32).contiguous()).T.to(x.dtype)
    return out if layer.bias is None else out + layer.bias.to(x.dtype)


def pointwise_step(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """One time step of a 1x1 conv, dense or packed: (B, Cin) -> (B, Cout)."""
    if is_packed(layer):
        return packed_step(layer, x)
    return F.linear(x, layer.weight[:, :, 0], layer.bias)


def upsample_linear(frames: torch.Tensor, hop: int, n_samples: int) -> torch.Tensor:
    """(B, C, K) -> (B, C, n_samples): `upsample_frames` channels-first, as broadcast ops
    (sample k * hop + m = f[k] + (m / hop) (f[k + 1] - f[k]), the last frame held)."""
    extra = 1 + max(0, -(-n_samples // hop) - frames.shape[-1])  # 1 in the exported graph (T = K * hop)
    p = torch.cat([frames, frames[..., -1:].expand(-1, -1, extra)], dim=-1)
    f0, step = p[..., :-1], p[..., 1:] - p[..., :-1]
    ramp = torch.arange(hop, dtype=frames.dtype, device=frames.device) / hop
    return (f0[..., None] + step[..., None] * ramp).flatten(2)[..., :n_samples]


def shift_right(x: torch.Tensor) -> torch.Tensor:
    """(B, T) -> (B, 1, T) with x[t - 1] at t and 0 at t = 0."""
    return F.pad(x, (1, 0))[:, :-1].unsqueeze(1)


def frame_at(frames: torch.Tensor, t: int, hop: int) -> torch.Tensor:
    """Linear interpolation of (B, K, C) frames at sample t, as `upsample_frames`."""
    K = frames.shape[1]
    k, a = min(t // hop, K - 1), (t % hop) / hop
    return (1 - a) * frames[:, k] + a * frames[:, min(k + 1, K - 1)]


class WaveNet(nn.Module):
    """forward(): mixture params for teacher forcing; generate(): the queue sampler."""

    def __init__(self, config: WaveNetConfig):
        super().__init__()
        self.config = config
        self.cond_net = CondNet(config)
        self.stack = WaveNetStack(1, 3 * config.n_mixtures, config.residual_channels, config.skip_channels,
                                  config.dilations, config.cond_hidden)

    def conditioning(self, cond: torch.Tensor, speaker: torch.Tensor, cond_offset: int = 0) -> torch.Tensor:
        """cond (B, K, cond_channels), speaker (B,) -> (B, cond_hidden, K - cond_offset) at the frame
        rate (the stack interpolates each layer's projection); the first cond_offset frames are
        context for the conditioning net only."""
        return self.cond_net(cond, speaker)[:, cond_offset:].transpose(1, 2)

    def forward(self, audio: torch.Tensor, cond: torch.Tensor, speaker: torch.Tensor,
                cond_offset: int = 0) -> torch.Tensor:
        """audio (B, T) in [-1, 1] -> mixture params (B, T, 3K); params[:, t] predict audio[:, t]
        from audio[:, :t]."""
        c = self.conditioning(cond, speaker, cond_offset)
        return self.stack(shift_right(audio), c, self.config.hop_length).transpose(1, 2)

    def log_prob(self, audio: torch.Tensor, cond: torch.Tensor, speaker: torch.Tensor,
                 cond_offset: int = 0) -> torch.Tensor:
        """(B, T) 16-bit audio -> per-sample log-probabilities (B, T)."""
        params = self(audio, cond, speaker, cond_offset)
        return discretized_mol_log_prob(params, audio, self.config.log_scale_min)

    @torch.no_grad()
    def generate(self, cond: torch.Tensor, speaker: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
        """Fast generation (queue method), batched.

        cond (B, K, cond_channels), speaker (B,), uniforms (B, T, 2) in [0, 1)
        (component and value draw per sample), T <= K * hop_length.
        Returns (B, T) audio on the 16-bit grid.
        """
        B, T = uniforms.shape[:2]
        dtype, device = uniforms.dtype, uniforms.device
        hidden = self.cond_net(cond, speaker).to(dtype)  # (B, K, cond_hidden)
        frames = F.linear(hidden, self.stack.cond_weight().to(dtype))  # (B, K, L * 2R)
        queues = self.stack.init_queues(B, dtype, device)
        out = torch.empty(B, T, dtype=dtype, device=device)
        prev = torch.zeros(B, 1, dtype=dtype, device=device)
        for t in range(T):
            params = self.stack.step(prev, frame_at(frames, t, self.config.hop_length), queues, t)
            x = sample_mol(params, uniforms[:, t], self.config.log_scale_min).to(dtype)
            out[:, t] = x
            prev = x[:, None]
        return out

    @torch.no_grad()
    def generate_naive(self, cond: torch.Tensor, speaker: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
        """The spec for `generate`: the full forward pass over the whole prefix at every step (O(T^2))."""
        B, T = uniforms.shape[:2]
        out = torch.zeros(B, T, dtype=uniforms.dtype, device=uniforms.device)
        c = self.conditioning(cond, speaker).to(uniforms.dtype)
        for t in range(T):
            params = self.stack(shift_right(out[:, :t + 1]), c, self.config.hop_length)[:, :, t]
            out[:, t] = sample_mol(params, uniforms[:, t], self.config.log_scale_min).to(out.dtype)
        return out


def model_spec():
    """The registry entry (models/registry.py). The teacher has no text runtime of its own:
    it is too slow to serve; the student (parallel-wavenet) is what serving loads."""
    from models.registry import ModelSpec

    return ModelSpec("wavenet", WaveNetConfig, WaveNet, "tts", None)
