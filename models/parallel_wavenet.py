"""The Parallel WaveNet student (van den Oord et al. 2017, Sec. 2.2-2.3).

A stack of inverse-autoregressive flows over logistic noise z ~ L(0, 1):

    x^0 = z;   x^i_t = x^{i-1}_t * s^i(x^{i-1}_{<t}, c) + mu^i(x^{i-1}_{<t}, c)

each (mu^i, ln s^i) from a WaveNet (models.wavenet.WaveNetStack) reading
the previous flow's output shifted by one sample. Given z_{<t} the output is
a single logistic, x_t ~ L(mu_tot_t, s_tot_t) with

    s_tot = prod_i s^i,   mu_tot = sum_i mu^i prod_{j > i} s^j,

so a sample, its per-sample means and scales, and hence the analytic
entropy H = sum_t (ln s_tot_t + 2), all come out of one parallel pass.
Conditioning is the teacher's (the WaveRNN conditioning net, shared by the
flows). `invert` undoes the flows sample by sample (for tests and density
checks only). The runtime serves the exported ONNX graph (z, cond, speaker)
-> audio through onnxruntime.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from models.logistic_mixture import logistic_log_pdf, logistic_noise
from models.wavenet import WaveNetStack, dilations, receptive_field, shift_right
from models.wavernn import CondNet
from models.onnx_runtime import onnx_session


@dataclasses.dataclass(frozen=True)
class ParallelWaveNetConfig:
    sample_rate: int = 16000
    hop_length: int = 80
    flow_layers: tuple[int, ...] = (10, 10, 10, 30)  # the paper's four flows
    dilation_cycle: int = 10
    residual_channels: int = 64
    skip_channels: int = 64
    log_scale_min: float = -9.0  # floor of each flow's ln s
    init_log_scale: float = -3.0  # ln s_tot at initialization (audio-sized noise)
    # Conditioning (field names shared with models.wavernn.CondNet; match the teacher's).
    cond_kind: str = "linguistic"
    cond_channels: int = 87
    cond_hidden: int = 64
    cond_kernel: int = 5
    cond_layers: int = 2
    n_speakers: int = 1
    speaker_dim: int = 16

    @property
    def receptive_field(self) -> int:
        return sum(receptive_field(dilations(n, self.dilation_cycle)) for n in self.flow_layers)


class ParallelWaveNet(nn.Module):
    """forward(z, cond, speaker) -> (x, mean, log_scale), each (B, T)."""

    def __init__(self, config: ParallelWaveNetConfig):
        super().__init__()
        self.config = config
        self.cond_net = CondNet(config)
        self.flows = nn.ModuleList(
            WaveNetStack(1, 2, config.residual_channels, config.skip_channels,
                         dilations(n, config.dilation_cycle), config.cond_hidden)
            for n in config.flow_layers)
        for flow in self.flows:  # each flow starts as a fixed affine map (Glow-style zero init)
            nn.init.zeros_(flow.out2.weight)
            nn.init.zeros_(flow.out2.bias)
        with torch.no_grad():
            self.flows[0].out2.bias[1] = config.init_log_scale

    def conditioning(self, cond: torch.Tensor, speaker: torch.Tensor, cond_offset: int = 0) -> torch.Tensor:
        """(B, K, C), (B,) -> (B, cond_hidden, K - cond_offset) at the frame rate: each flow's
        layers project it there and interpolate to the sample rate (WaveNetStack, hop > 0)."""
        return self.cond_net(cond, speaker)[:, cond_offset:].transpose(1, 2)

    def flow_params(self, flow: WaveNetStack, x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One flow's (mu, ln s), each (B, T), from its input x (B, T) and frame-rate conditioning c."""
        out = flow(shift_right(x), c, self.config.hop_length)
        return out[:, 0], torch.clamp(out[:, 1], min=self.config.log_scale_min)

    def forward(self, z: torch.Tensor, cond: torch.Tensor, speaker: torch.Tensor,
                cond_offset: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """z (B, T) logistic noise, cond (B, K, C), speaker (B,) -> x, mean, log_scale (B, T):
        x_t = mean_t + exp(log_scale_t) z_t, mean and scale depending on z_{<t} only."""
        c = self.conditioning(cond, speaker, cond_offset)
        x, mean, log_s = z, torch.zeros_like(z), torch.zeros_like(z)
        for flow in self.flows:
            mu, ls = self.flow_params(flow, x, c)
            s = torch.exp(ls)
            x, mean, log_s = x * s + mu, mean * s + mu, log_s + ls
        return x, mean, log_s

    @torch.no_grad()
    def generate(self, cond: torch.Tensor, speaker: torch.Tensor, z: torch.Tensor | None = None,
                 seed: int = 0) -> torch.Tensor:
        """One parallel pass: (B, K, C) -> audio (B, K * hop) in [-1, 1] (z drawn from `seed` if not given)."""
        if z is None:
            g = torch.Generator().manual_seed(seed)
            z = logistic_noise((cond.shape[0], cond.shape[1] * self.config.hop_length), g).to(cond.device)
        if getattr(self, "_packed", False):  # packed_runtime: the C kernels, on one thread per call
            from models.gan_tts import one_torch_thread

            with one_torch_thread():
                return self._generate(cond, speaker, z)
        return self._generate(cond, speaker, z)

    def _generate(self, cond: torch.Tensor, speaker: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        c = self.conditioning(cond, speaker)
        x, hop, lsm = z, self.config.hop_length, self.config.log_scale_min
        if getattr(self, "_packed", False):
            bufs = PackedBuffers(self.config, *z.shape)
            params = lambda flow, x: flow_params_packed(flow, x, c, hop, lsm, bufs)  # noqa: E731
        elif has_packed_layers(self):  # packed layers but no C kernels: the eager forward runs them
            params = lambda flow, x: self.flow_params(flow, x, c)  # noqa: E731
        else:
            params = lambda flow, x: flow_params_fast(flow, x, c, hop, lsm)  # noqa: E731
        for flow in self.flows:
            mu, log_s = params(flow, x)
            x = x * torch.exp(log_s) + mu
        return torch.clamp(x, -1.0, 1.0)

    @torch.no_grad()
    def invert(self, x: torch.Tensor, cond: torch.Tensor, speaker: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Sequential inverse: x (B, T) -> (z, sum over flows of ln s) (B, T). T passes per flow."""
        c = self.conditioning(cond, speaker)
        total_ls = torch.zeros_like(x)
        for flow in reversed(self.flows):
            prev = torch.zeros_like(x)
            for t in range(x.shape[1]):
                mu, ls = self.flow_params(flow, prev, c)  # position t sees prev[:, :t] only
                prev[:, t] = (x[:, t] - mu[:, t]) * torch.exp(-ls[:, t])
            mu, ls = self.flow_params(flow, prev, c)
            total_ls = total_ls + ls
            x = prev
        return x, total_ls

    def log_prob(self, x: torch.Tensor, cond: torch.Tensor, speaker: torch.Tensor) -> torch.Tensor:
        """log p_S(x) (B,) by change of variables through the inverse (slow; tests)."""
        z, total_ls = self.invert(x, cond, speaker)
        return (logistic_log_pdf(z, torch.zeros_like(z), torch.zeros_like(z)) - total_ls).sum(-1)


def flow_params_fast(flow: WaveNetStack, x: torch.Tensor, c: torch.Tensor, hop: int,
                     log_scale_min: float) -> tuple[torch.Tensor, torch.Tensor]:
    """`ParallelWaveNet.flow_params` without autograd, as the ONNX graph computes it
    (models/parallel_wavenet_onnx.py): each layer's conditioning interpolated by one product with
    [1; ramp], the dilated conv as two in-place products (taps t and t - d, no padded copy), the
    skip and residual 1x1s added in place, the skip biases summed once. 1.5x less CPU than eager."""
    B, T = x.shape
    R, last = flow.residual, len(flow.dils) - 1
    frames = F.conv1d(c, flow.cond_weight()[:, :, None])  # (B, L * 2R, K)
    step = torch.cat([frames[..., 1:], frames[..., -1:]], -1) - frames  # the last frame held
    ramp = torch.stack([torch.ones(hop, dtype=x.dtype), torch.arange(hop, dtype=x.dtype) / hop])  # (2, hop)
    bmm = lambda w: w.expand(B, -1, -1)  # noqa: E731  (out, in) weights for baddbmm
    h = F.conv1d(x[:, None, :-1], flow.input.weight, flow.input.bias, padding=2)[..., :T]  # taps x[t-2], x[t-1]
    skips, skip_bias = None, 0.0
    for i, (d, conv, res, skip) in enumerate(zip(flow.dils, flow.dilated, flow.res, flow.skip)):
        rows = slice(i * 2 * R, (i + 1) * 2 * R)
        f0 = frames[:, rows] + conv.bias[:, None]
        a = torch.matmul(torch.stack([f0, step[:, rows]], -1), ramp).flatten(2)[..., :T]  # (B, 2R, T)
        a.baddbmm_(bmm(conv.weight[None, :, :, 1]), h)
        if d < T:
            a[..., d:].baddbmm_(bmm(conv.weight[None, :, :, 0]), h[..., :-d])
        g = torch.tanh_(a[:, :R]) * torch.sigmoid_(a[:, R:])
        s = bmm(skip.weight[None, :, :, 0])
        skips = torch.bmm(s, g) if skips is None else skips.baddbmm_(s, g)
        skip_bias = skip_bias + skip.bias
        if i < last:  # the last layer's residual output is never read
            h = h.baddbmm_(bmm(res.weight[None, :, :, 0]), g).add_(res.bias[:, None])
    y = F.relu(F.conv1d(torch.relu_(skips.add_(skip_bias[:, None])), flow.out1.weight, flow.out1.bias))
    out = F.conv1d(y, flow.out2.weight, flow.out2.bias)
    return out[:, 0], torch.clamp(out[:, 1], min=log_scale_min)


# --- the packed runtime (sparse students; engine torch) ------------------------------------------
def has_packed_layers(model: nn.Module) -> bool:
    from kernels.sparse_layers import SparseConv1d

    return any(isinstance(m, SparseConv1d) for m in model.modules())


def packed_runtime(model: ParallelWaveNet) -> ParallelWaveNet:
    """The torch engine of a student with packed (sparse) layers, in place: where the C kernels are
    built, every other conv of the flows (input, the dilated convs and 1x1s left dense, out2) is
    packed too, as dense (4, 1) blocks, and `generate` runs each flow through
    `flow_params_packed`. The conditioning projections stay dense (one product at the frame rate)."""
    from kernels import ops
    from kernels.sparse_layers import SparseConv1d, convertible

    model.eval()
    if ops.c_spmm_lib() is None:
        return model
    for flow in model.flows:
        for name, layer in list(flow.named_modules()):
            if isinstance(layer, nn.Conv1d) and convertible(layer) and not name.startswith("cond."):
                parent, _, leaf = name.rpartition(".")
                setattr(flow.get_submodule(parent) if parent else flow, leaf, SparseConv1d.from_conv(layer, (4, 1)))
        flow._fused = [fused_layer(*layer, flow.skip[0].out_channels)
                       for layer in zip(flow.dils, flow.dilated, flow.skip, flow.res)]
    model._packed = True
    return model


def fused_layer(d: int, dilated, skip, res, skip_channels: int):
    """A layer's packed operands for kernels.cpu_c.wavenet_layer: its dilated conv as packed, the
    skip and residual 1x1s stacked into one matrix (the same zero blocks)."""
    from kernels import BlockSparseMatrix
    from kernels.cpu_c import WaveNetLayer

    br = skip.packed.block[0] if skip.packed.block == res.packed.block and skip_channels % skip.packed.block[0] == 0 else 1
    stacked = torch.cat([skip.dense_weight()[:, :, 0], res.dense_weight()[:, :, 0]])
    pointwise = BlockSparseMatrix.from_dense(stacked, block=(br, 1))
    return WaveNetLayer(dilated.packed, d, dilated.bias, pointwise, torch.cat([skip.bias, res.bias]), skip_channels)


class PackedBuffers:
    """Work tensors of `flow_params_packed`, allocated once per utterance (not per layer)."""

    def __init__(self, config: ParallelWaveNetConfig, batch: int, samples: int):
        from kernels import ops

        self.lib = ops.c_spmm_lib()
        self.res = torch.empty(batch, config.residual_channels, samples)  # h, ping-pong with the input conv's
        self.skips = torch.empty(batch, config.skip_channels, samples)


def flow_params_packed(flow: WaveNetStack, x: torch.Tensor, c: torch.Tensor, hop: int, log_scale_min: float,
                       bufs: PackedBuffers) -> tuple[torch.Tensor, torch.Tensor]:
    """`ParallelWaveNet.flow_params` for a flow set up by `packed_runtime`, on the C kernels
    (kernels/csrc/spmm.c): each layer (dilated conv, gate with the interpolated conditioning, skip
    and residual 1x1s) is one pass over time tiles that stay in L1 (sw_wavenet_layer)."""
    from kernels import cpu_c

    R = flow.residual
    frames = F.conv1d(c, flow.cond_weight()[:, :, None]).contiguous()  # (B, L * 2R, K)
    h = flow.input(F.pad(x, (2, 0))[:, None, :-1].contiguous())  # taps x[t - 2], x[t - 1]
    h_next, skips = bufs.res, bufs.skips.zero_()
    last = len(flow._fused) - 1
    for i, layer in enumerate(flow._fused):  # the last layer's residual output is never read
        cpu_c.wavenet_layer(bufs.lib, layer, frames[:, i * 2 * R:(i + 1) * 2 * R], hop, h,
                            h_next if i < last else None, skips)
        h, h_next = h_next, h
    out = flow.out2(torch.relu_(flow.out1(torch.relu_(skips))))
    return out[:, 0], torch.clamp(out[:, 1], min=log_scale_min)


def export_onnx(model: ParallelWaveNet, path: str | Path) -> Path:
    """The graph written op by op from the weights (models/parallel_wavenet_onnx.py; about 1.2x
    less CPU time than the traced one), dynamic batch and length, samples = frames * hop."""
    from models.parallel_wavenet_onnx import export_student

    return export_student(model, path)


def run_onnx(session, z: np.ndarray, cond: np.ndarray, speaker: np.ndarray) -> np.ndarray:
    """(B, T) float32 noise, (B, K, C) float32, (B,) int64 -> (B, T) audio."""
    return session.run(["audio"], {"z": z.astype(np.float32), "cond": cond.astype(np.float32),
                                   "speaker": speaker.astype(np.int64)})[0]


def run_onnx_chunked(session, config: ParallelWaveNetConfig, z: np.ndarray, cond: np.ndarray, speaker: np.ndarray,
                     chunk_frames: int = 200) -> np.ndarray:
    """`run_onnx` in pieces of `chunk_frames` frames (`run_chunked`): the same audio."""
    return run_chunked(lambda *a: run_onnx(session, *a), config, z, cond, speaker, chunk_frames)


def run_torch(model: ParallelWaveNet, z: np.ndarray, cond: np.ndarray, speaker: np.ndarray) -> np.ndarray:
    """`run_onnx` with the torch model (`generate`; the packed runtime's when it is set up)."""
    with torch.no_grad():
        return model.generate(torch.from_numpy(cond).float(), torch.from_numpy(speaker), torch.from_numpy(z)).numpy()


def run_chunked(run, config: ParallelWaveNetConfig, z: np.ndarray, cond: np.ndarray, speaker: np.ndarray,
                chunk_frames: int = 200, threads: int = 1) -> np.ndarray:
    """run(z, cond, speaker) -> audio in pieces of `chunk_frames` frames, each run with the frames its
    output depends on (the flows' receptive field and the conditioning net's context on the left, the
    conditioning net's context and the interpolation's next frame on the right): the same audio, but
    tensors that stay in cache (one pass over a long utterance is memory-bound; docs/parallel_wavenet.md).
    threads > 1 runs that many pieces at once (the packed runtime's kernels are single-threaded)."""
    hop, K = config.hop_length, cond.shape[1]
    ctx = config.cond_layers * (config.cond_kernel // 2)
    left, right = -(-config.receptive_field // hop) + ctx + 1, ctx + 1
    if K <= chunk_frames + left + right:
        return run(z, cond, speaker)
    spans = [(a, min(a + chunk_frames, K)) for a in range(0, K, chunk_frames)]

    def piece(span: tuple[int, int]) -> np.ndarray:
        a, b = span
        lo, hi = max(a - left, 0), min(b + right, K)
        out = run(np.ascontiguousarray(z[:, lo * hop:hi * hop]), np.ascontiguousarray(cond[:, lo:hi]), speaker)
        return out[:, (a - lo) * hop:(b - lo) * hop]

    if threads > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(threads) as pool:
            return np.concatenate(list(pool.map(piece, spans)), axis=1)
    return np.concatenate([piece(s) for s in spans], axis=1)


class ParallelWaveNetSynthesizer:
    """models.inference.Synthesizer: text -> MBROLA-voice prosody (espeak-ng --pho) -> 200 Hz
    linguistic features -> the student through onnxruntime (or torch) -> audio, one chunk.
    Mel-conditioned bundles vocode log-mel instead (`vocode`); they cannot read text."""

    streaming = False

    def __init__(self, bundle, engine: str | None = None, threads: int | None = None):
        from models.registry import model_from_bundle

        front, defaults = bundle.manifest["frontend_config"], bundle.manifest.get("inference_defaults", {})
        self.voices: list[str] = list(front.get("speakers", [])) or ["default"]
        self.prosody_voices: dict[str, str] = dict(front.get("prosody_voices", {}))
        self.frontend = front.get("frontend", {})
        self.model: ParallelWaveNet = model_from_bundle(bundle)
        self.config = self.model.config
        self.sample_rate = self.config.sample_rate
        self.seed = int(defaults.get("seed", 0))
        self.engine = engine or defaults.get("engine", "onnx")
        threads = threads if threads is not None else int(defaults.get("threads", 0))
        self.session = None
        if self.engine == "onnx":
            if bundle.onnx_path is None:
                raise ValueError(f"{bundle.path}: engine onnx needs model.onnx in the bundle")
            self.session = onnx_session(bundle.onnx_path, threads, spinning=False)  # 2-3x faster on shared cores
        elif self.engine != "torch":
            raise ValueError(f"engine={self.engine!r}; choose onnx or torch")
        elif has_packed_layers(self.model):  # a sparse student: its packed convs on kernels/csrc
            packed_runtime(self.model)
        # the packed runtime runs `threads` pieces at once, one thread each; dense torch uses torch's threads
        self.threads = max(1, threads) if getattr(self.model, "_packed", False) else 1

    def features(self, text: str, voice: str | None = None, speed: float = 1.0) -> np.ndarray:
        """Text -> (K, C) linguistic features (the training layout: one constant speaker column)."""
        from models.text import FrontendConfig, Phone, features_from_phones, pho_symbols, text_to_phones, to_model_input

        if self.config.cond_kind != "linguistic":
            raise ValueError("this Parallel WaveNet is a log-mel vocoder (copy-synthesis): it cannot read text "
                             "(sparsewave has no text-to-mel model); it vocodes mel frames, see "
                             "`sparsewave eval parallel-wavenet`")
        voice = self._voice(voice)
        if not 0.25 <= speed <= 4.0:
            raise ValueError(f"speed {speed} is outside 0.25 ... 4")
        config = FrontendConfig.from_dict(self.frontend) if self.frontend else FrontendConfig()
        config = dataclasses.replace(config, prosody_voice=self.prosody_voices.get(voice, config.prosody_voice))
        phones = [Phone(p.phoneme, p.duration_ms / speed, p.pitch) for p in text_to_phones(text, config)]
        feats = features_from_phones(phones, 0, self.sample_rate)
        return to_model_input(feats, len(pho_symbols()), 1).numpy().astype(np.float32)

    def _voice(self, voice: str | None) -> str:
        voice = voice or self.voices[0]
        if voice not in self.voices:
            raise ValueError(f"unknown voice {voice!r}; this model has: {', '.join(self.voices)}")
        return voice

    def vocode(self, cond: np.ndarray, voice: str | None = None, seed: int | None = None) -> np.ndarray:
        """(K, C) frame features -> (K * hop,) float32 audio in one parallel pass."""
        speaker = np.array([self.voices.index(self._voice(voice))], dtype=np.int64)
        g = torch.Generator().manual_seed(self.seed if seed is None else seed)
        z = logistic_noise((1, cond.shape[0] * self.config.hop_length), g)
        cond = np.asarray(cond, dtype=np.float32)[None]
        if self.session is not None:
            return run_onnx_chunked(self.session, self.config, z.numpy(), cond, speaker)[0]
        return run_chunked(lambda *a: run_torch(self.model, *a), self.config, z.numpy(), cond, speaker,
                           threads=self.threads)[0]

    def synthesize(self, text: str, voice: str | None = None, speed: float = 1.0) -> Iterator[np.ndarray]:
        yield self.vocode(self.features(text, voice, speed), voice).astype(np.float32)


def model_spec():
    from models.registry import ModelSpec

    return ModelSpec("parallel-wavenet", ParallelWaveNetConfig, ParallelWaveNet, "tts", ParallelWaveNetSynthesizer)
