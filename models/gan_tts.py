"""GAN-TTS (Binkowski et al. 2019): a feed-forward generator from 200 Hz
conditioning features to the waveform.

    features (B, C, T_frames) at 200 Hz, noise (B, noise_dim), speaker (B,)
      -> conv3 -> GBlocks (upsampling by `upsample`, product = hop) -> conv3 -> tanh
      -> audio (B, T_frames * hop)

A GBlock is two residual sub-blocks; each layer is conditional batch norm
(scale and shift from a linear map of [noise, speaker embedding]), ReLU,
(nearest upsampling), dilated conv; dilations 1, 2 then 4, 8.

The generator takes any conditioning with `in_channels` channels at 200 Hz,
so EATS (issue 8) reuses it as its decoder on the aligner's output. In eval
mode batch norm uses its running statistics, so inference is a fixed
function of (features, noise, speaker): that is the ONNX graph.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import threading
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from models.inference import phone_timings
from models.onnx_runtime import onnx_session

FRAME_RATE_HZ = 200


@dataclasses.dataclass(frozen=True)
class GanTTSConfig:
    sample_rate: int = 16000
    in_channels: int = 64  # conditioning channels (the frontend's feature dim)
    noise_dim: int = 32  # the paper's 128 costs parameters in every conditional BN
    n_speakers: int = 1  # 0: no speaker embedding
    speaker_dim: int = 16
    # output channels and upsampling factor per GBlock; factors multiply to hop
    channels: tuple[int, ...] = (96, 96, 64, 64, 48, 32, 16)  # the paper: 768, 768, 384, 384, 384, 256, 192
    upsample: tuple[int, ...] = (1, 1, 2, 2, 2, 2, 5)
    pre_kernel: int = 3
    bn_momentum: float = 0.01  # slow running stats: the eval-mode function is the average generator

    def __post_init__(self):
        if len(self.channels) != len(self.upsample):
            raise ValueError("channels and upsample need one entry per GBlock")
        if self.sample_rate % FRAME_RATE_HZ:
            raise ValueError(f"sample_rate {self.sample_rate} is not a multiple of {FRAME_RATE_HZ} Hz")
        if math.prod(self.upsample) != self.hop_length:
            raise ValueError(f"upsample factors {self.upsample} multiply to {math.prod(self.upsample)}, "
                             f"not hop {self.hop_length} = sample_rate / {FRAME_RATE_HZ}")

    @property
    def hop_length(self) -> int:
        return self.sample_rate // FRAME_RATE_HZ

    @property
    def cond_dim(self) -> int:
        return self.noise_dim + (self.speaker_dim if self.n_speakers > 0 else 0)

    @property
    def lookahead_frames(self) -> int:
        """How many 200 Hz frames past frame t reach the audio of frame t: the pre conv, each
        GBlock's dilated convs (1 + 2 + 4 + 8 taps each side at the block's output rate; nearest
        upsampling adds none) and the post conv. Padding an utterance with this many zero frames
        makes its audio independent of whatever follows (another item of a batch)."""
        reach, rate = (self.pre_kernel - 1) / 2, 1
        for factor in self.upsample:
            rate *= factor
            reach += 15 / rate
        return math.ceil(reach + 1 / rate)


def default_upsample(sample_rate: int) -> tuple[int, ...]:
    """The paper's (1, 1, 2, 2, 2, 3, 5) at 24 kHz, (1, 1, 2, 2, 2, 2, 5) at 16 kHz."""
    return {24000: (1, 1, 2, 2, 2, 3, 5), 16000: (1, 1, 2, 2, 2, 2, 5)}[sample_rate]


class ConditionalBatchNorm(nn.Module):
    """BatchNorm1d without affine; scale 1 + W z and shift V z from the condition z."""

    def __init__(self, channels: int, cond_dim: int, momentum: float):
        super().__init__()
        self.norm = nn.BatchNorm1d(channels, affine=False, momentum=momentum)
        self.scale = nn.Linear(cond_dim, channels)
        self.shift = nn.Linear(cond_dim, channels)
        for lin in (self.scale, self.shift):  # near the identity at first
            nn.init.normal_(lin.weight, std=0.02)
            nn.init.zeros_(lin.bias)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:  # (B, C, T), (B, D)
        scale, shift = 1 + self.scale(z), self.shift(z)
        if self.training or self.norm.running_var is None:
            return self.norm(x) * scale.unsqueeze(-1) + shift.unsqueeze(-1)
        a, b = self.coefficients(z)
        return torch.addcmul(b.unsqueeze(-1), x, a.unsqueeze(-1))

    def coefficients(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Eval mode: (a, b), each (B, C), with output a x + b: the running statistics fold
        into one multiply-add per element (one pass, not four)."""
        scale, shift = 1 + self.scale(z), self.shift(z)
        a = scale * torch.rsqrt(self.norm.running_var + self.norm.eps)
        return a, shift - self.norm.running_mean * a


def _conv(cin: int, cout: int, kernel: int = 3, dilation: int = 1) -> nn.Conv1d:
    conv = nn.Conv1d(cin, cout, kernel, padding=dilation * (kernel - 1) // 2, dilation=dilation)
    nn.init.orthogonal_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


def _upsample(x: torch.Tensor, factor: int) -> torch.Tensor:
    return x if factor == 1 else F.interpolate(x, scale_factor=float(factor), mode="nearest")


def _bn_relu_up(bn: ConditionalBatchNorm, x: torch.Tensor, z: torch.Tensor, factor: int = 1) -> torch.Tensor:
    """_upsample(relu(bn(x, z)), factor) in eval mode: one pass in the C kernels when they are
    built (kernels/cpu_c.affine_relu), else ReLU in place and upsampling as a broadcast copy
    (5x faster than F.interpolate on one CPU thread)."""
    from kernels import ops

    a, b = bn.coefficients(z)
    lib = ops.c_spmm_lib() if x.device.type == "cpu" and x.dtype == torch.float32 else None
    if lib is not None:
        from kernels import cpu_c
        return cpu_c.affine_relu(lib, x, a, b, factor)
    y = torch.addcmul(b.unsqueeze(-1), x, a.unsqueeze(-1)).clamp_min_(0)
    n, c, t = y.shape
    return y if factor == 1 else y[..., None].expand(n, c, t, factor).reshape(n, c, t * factor)


class GBlock(nn.Module):
    """(B, cin, T) -> (B, cout, T * factor); two residual sub-blocks."""

    def __init__(self, cin: int, cout: int, factor: int, cond_dim: int, momentum: float):
        super().__init__()
        self.factor = factor
        self.bn1 = ConditionalBatchNorm(cin, cond_dim, momentum)
        self.conv1 = _conv(cin, cout, dilation=1)
        self.bn2 = ConditionalBatchNorm(cout, cond_dim, momentum)
        self.conv2 = _conv(cout, cout, dilation=2)
        self.skip = _conv(cin, cout, kernel=1)
        self.bn3 = ConditionalBatchNorm(cout, cond_dim, momentum)
        self.conv3 = _conv(cout, cout, dilation=4)
        self.bn4 = ConditionalBatchNorm(cout, cond_dim, momentum)
        self.conv4 = _conv(cout, cout, dilation=8)
        self.fast_glue = False  # set by packed_runtime: inference only

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        if self.fast_glue and not self.training:
            return self._forward_fast(x, z)
        h = self.conv1(_upsample(F.relu(self.bn1(x, z)), self.factor))
        h = self.conv2(F.relu(self.bn2(h, z)))
        x = h + self.skip(_upsample(x, self.factor))
        h = self.conv3(F.relu(self.bn3(x, z)))
        h = self.conv4(F.relu(self.bn4(h, z)))
        return x + h

    def _forward_fast(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """forward's function (eval mode) with less glue: batch norm, ReLU and upsampling in one
        pass (_bn_relu_up), and the 1x1 skip conv at the input rate (it commutes with nearest
        upsampling), its upsampling fused into the residual add. Same values up to rounding."""
        h = self.conv1(_bn_relu_up(self.bn1, x, z, self.factor))
        h = self.conv2(_bn_relu_up(self.bn2, h, z))
        s, (b, c, t) = self.skip(x), h.shape
        x = h.view(b, c, -1, self.factor).add_(s[..., None]).view(b, c, t)
        h = self.conv4(_bn_relu_up(self.bn4, self.conv3(_bn_relu_up(self.bn3, x, z)), z))
        return x.add_(h)


class GanTTSGenerator(nn.Module):
    """features (B, in_channels, T_frames), noise (B, noise_dim), speaker (B,) -> audio (B, T_frames * hop)."""

    def __init__(self, config: GanTTSConfig):
        super().__init__()
        self.config = config
        self.speaker = nn.Embedding(config.n_speakers, config.speaker_dim) if config.n_speakers > 0 else None
        self.pre = _conv(config.in_channels, config.channels[0], kernel=config.pre_kernel)
        blocks, cin = [], config.channels[0]
        for cout, factor in zip(config.channels, config.upsample):
            blocks.append(GBlock(cin, cout, factor, config.cond_dim, config.bn_momentum))
            cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.post = _conv(cin, 1, kernel=3)

    def condition(self, noise: torch.Tensor, speaker: torch.Tensor | None) -> torch.Tensor:
        """[noise, speaker embedding]: (B, cond_dim)."""
        if self.speaker is None:
            return noise
        if speaker is None:
            speaker = torch.zeros(noise.shape[0], dtype=torch.long, device=noise.device)
        return torch.cat([noise, self.speaker(speaker)], dim=-1)

    def forward(self, features: torch.Tensor, noise: torch.Tensor,
                speaker: torch.Tensor | None = None) -> torch.Tensor:
        if getattr(self, "_packed", False):  # set by packed_runtime
            with one_torch_thread():
                return self._forward(features, noise, speaker)
        return self._forward(features, noise, speaker)

    def _forward(self, features: torch.Tensor, noise: torch.Tensor, speaker: torch.Tensor | None) -> torch.Tensor:
        z = self.condition(noise, speaker)
        x = self.pre(features)
        for block in self.blocks:
            x = block(x, z)
        return torch.tanh(self.post(x)).squeeze(1)

    @torch.no_grad()
    def generate(self, features: torch.Tensor, speaker: torch.Tensor | None = None,
                 seed: int = 0, noise_scale: float = 1.0) -> torch.Tensor:
        """Inference: noise drawn from `seed`; eval-mode batch norm. (B, C, T) -> (B, T * hop)."""
        g = torch.Generator().manual_seed(seed)
        noise = noise_scale * torch.randn(features.shape[0], self.config.noise_dim, generator=g)
        return self(features, noise.to(features.device), speaker)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def packed_runtime(model: GanTTSGenerator) -> GanTTSGenerator:
    """The torch engine of a generator with packed (sparse) layers, in place: the GBlocks'
    inference glue (GBlock._forward_fast), and, where the C conv kernel is built, every
    remaining dense Conv1d on that kernel too, as dense (br, 1) blocks (at 16 channels and
    64,000 frames it runs a dilated conv 3x faster than torch's; docs/sparse_conv.md)."""
    from kernels import ops
    from kernels.sparse_layers import SparseConv1d, convertible

    model.eval()
    if ops.c_spmm_lib() is not None:
        for name, layer in list(model.named_modules()):
            if isinstance(layer, nn.Conv1d) and convertible(layer):
                parent, _, leaf = name.rpartition(".")
                block = (16, 1) if layer.out_channels % 16 == 0 else (4, 1)
                setattr(model.get_submodule(parent) if parent else model, leaf, SparseConv1d.from_conv(layer, block))
    for block in model.blocks:
        block.fast_glue = True
    model._packed = True  # forward runs under one_torch_thread
    return model


# The packed runtime's kernels run on one thread; its few remaining torch ops (residual adds,
# tanh, the batch norms' small linear maps) run on one thread too: on 2 threads every one of
# them is a parallel region, and on the shared 2-core machine that made the forward 3-9x
# slower (bench.sparse_conv, docs/sparse_conv.md). The count is process-wide, so the first of
# any concurrent calls sets it and the last one out puts the caller's count back, even on error.
_threads_lock = threading.Lock()
_threads_users = 0
_threads_saved = 1


@contextlib.contextmanager
def one_torch_thread():
    global _threads_users, _threads_saved
    with _threads_lock:
        if _threads_users == 0:
            _threads_saved = torch.get_num_threads()
            torch.set_num_threads(1)
        _threads_users += 1
    try:
        yield
    finally:
        with _threads_lock:
            _threads_users -= 1
            if _threads_users == 0 and _threads_saved != 1:
                torch.set_num_threads(_threads_saved)


def has_packed_layers(model: nn.Module) -> bool:
    from kernels.sparse_layers import SparseConv1d
    return any(isinstance(m, SparseConv1d) for m in model.modules())


def export_onnx(model: GanTTSGenerator, path: str | Path, frames: int = 40, opset: int = 17) -> Path:
    """ONNX graph (features, noise, speaker) -> audio, dynamic batch and length."""
    model = model.eval()
    cfg = model.config
    features = torch.randn(1, cfg.in_channels, frames)
    noise = torch.randn(1, cfg.noise_dim)
    speaker = torch.zeros(1, dtype=torch.long)
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation notice
        warnings.simplefilter("ignore", DeprecationWarning)
        _export(model, (features, noise, speaker), path, opset)
    return Path(path)


def _export(model: nn.Module, args: tuple, path: str | Path, opset: int) -> None:
    torch.onnx.export(
        model, args, str(path), dynamo=False, opset_version=opset,
        input_names=["features", "noise", "speaker"], output_names=["audio"],
        dynamic_axes={"features": {0: "batch", 2: "frames"}, "noise": {0: "batch"},
                      "speaker": {0: "batch"}, "audio": {0: "batch", 1: "samples"}},
    )


def run_onnx(session, features: np.ndarray, noise: np.ndarray, speaker: np.ndarray) -> np.ndarray:
    """(B, C, T) float32, (B, noise_dim) float32, (B,) int64 -> (B, T * hop)."""
    feeds = {"features": features.astype(np.float32), "noise": noise.astype(np.float32)}
    if "speaker" in {i.name for i in session.get_inputs()}:
        feeds["speaker"] = speaker.astype(np.int64)
    return session.run(["audio"], feeds)[0]


def phones_from_label(row: dict) -> list:
    """A corpus label row (pho_phonemes, durations_ms, pitch) -> MBROLA phones."""
    from models.text import Phone

    return [Phone(p, float(d), tuple((float(a), float(b)) for a, b in pitch))
            for p, d, pitch in zip(row["pho_phonemes"], row["durations_ms"], row["pitch"])]


def conditioning(phones, speaker: int, n_speakers: int, sample_rate: int, symbols=None) -> np.ndarray:
    """MBROLA phones -> the generator's input (C, T) at 200 Hz: the frontend's layout
    (models/text/prosody.py), C = n_symbols + 4 + n_speakers. Training and inference call this."""
    from models.text import features_from_phones, pho_symbols, to_model_input

    symbols = symbols or pho_symbols()
    feats = features_from_phones(phones, speaker, sample_rate, symbols)
    return to_model_input(feats, len(symbols), n_speakers).T.contiguous().numpy()


class GanTTSSynthesizer:
    """models.inference.Synthesizer: text -> MBROLA-voice prosody (espeak-ng --pho) -> 200 Hz
    features -> generator (onnxruntime by default, or torch) -> 16/24 kHz audio, one chunk."""

    streaming = False

    def __init__(self, bundle, engine: str | None = None, threads: int | None = None):
        from models.text import FrontendConfig, SymbolTable

        manifest = bundle.manifest
        front = manifest["frontend_config"]
        defaults = manifest.get("inference_defaults", {})
        self.voices: list[str] = list(front["voices"])
        self.prosody_voices: dict[str, str] = dict(front["prosody_voices"])
        self.frontend = FrontendConfig.from_dict(front["frontend"])
        self.symbols = SymbolTable.from_dict(front["symbols"])
        self.seed, self.noise_scale = int(defaults.get("seed", 0)), float(defaults.get("noise_scale", 1.0))
        self.engine = engine or defaults.get("engine", "onnx")
        from models.registry import model_from_bundle

        self.model = model_from_bundle(bundle)
        if self.engine == "torch" and has_packed_layers(self.model):
            packed_runtime(self.model)
        self.config: GanTTSConfig = self.model.config
        self.sample_rate = self.config.sample_rate
        self.session = None
        if self.engine == "onnx":
            if bundle.onnx_path is None:
                raise ValueError(f"{bundle.path}: engine onnx needs model.onnx in the bundle")
            self.session = onnx_session(bundle.onnx_path, threads or 0)
        elif self.engine != "torch":
            raise ValueError(f"engine={self.engine!r}; choose onnx or torch")

    def phones(self, text: str, voice: str | None = None, speed: float = 1.0) -> list:
        """Text -> MBROLA phones in `voice`'s prosody, durations divided by `speed`."""
        from models.text import Phone, text_to_phones

        voice = voice or self.voices[0]
        if voice not in self.voices:
            raise ValueError(f"unknown voice {voice!r}; this model has: {', '.join(self.voices)}")
        if not 0.25 <= speed <= 4.0:
            raise ValueError(f"speed {speed} is outside 0.25 ... 4")
        config = dataclasses.replace(self.frontend, prosody_voice=self.prosody_voices[voice])
        return [Phone(p.phoneme, p.duration_ms / speed, p.pitch) for p in text_to_phones(text, config)]

    def features(self, text: str, voice: str | None = None, speed: float = 1.0,
                 phones: list | None = None) -> np.ndarray:
        """Text (or its phones) -> (C, T) conditioning for `voice` (default: the first)."""
        voice = voice or self.voices[0]
        phones = phones or self.phones(text, voice, speed)
        return conditioning(phones, self.voices.index(voice), len(self.voices), self.sample_rate, self.symbols)

    def generate(self, features: np.ndarray, speaker: int, seed: int | None = None) -> np.ndarray:
        """(C, T) features -> (T * hop,) float32 audio."""
        return self.generate_batch([features], [speaker], seed)[0]

    def generate_batch(self, features: list[np.ndarray], speakers: list[int],
                       seed: int | None = None) -> list[np.ndarray]:
        """(C, T_i) features -> (T_i * hop,) float32 audio each, in one generator call; all items
        get the same seeded noise vector. In a batch of several, each item is zero-padded by
        `lookahead_frames` at least, so the other items cannot reach its audio: it equals the item
        generated alone except in its last `lookahead_frames` frames (where alone, the convolutions'
        own zero padding stands in for the padded frames; usually the trailing silence)."""
        hop, lengths = self.config.hop_length, [f.shape[1] for f in features]
        width = max(lengths) + (self.config.lookahead_frames if len(features) > 1 else 0)
        batch = np.stack([np.pad(f, ((0, 0), (0, width - f.shape[1]))) for f in features]).astype(np.float32)
        g = torch.Generator().manual_seed(self.seed if seed is None else seed)
        noise = (self.noise_scale * torch.randn(1, self.config.noise_dim, generator=g)).expand(len(features), -1)
        if self.session is not None:
            audio = run_onnx(self.session, batch, noise.numpy(), np.array(speakers))
        else:
            with torch.no_grad():
                audio = self.model(torch.from_numpy(batch), noise, torch.tensor(speakers)).numpy()
        return [audio[i, :n * hop].astype(np.float32) for i, n in enumerate(lengths)]

    def synthesize(self, text: str, voice: str | None = None, speed: float = 1.0) -> Iterator[np.ndarray]:
        """One chunk; sets `last_timings` (phonemes) once exhausted."""
        voice = voice or self.voices[0]
        phones = self.phones(text, voice, speed)
        yield self.generate(self.features(text, voice, speed, phones), self.voices.index(voice))
        self.last_timings = phone_timings(phones)  # a new list: the service reads it from a copy of this object

    def synthesize_batch(self, requests: list[tuple[str, str | None, float]]) -> list[np.ndarray]:
        """The service's batching (service/workers.py): (text, voice, speed) each -> its audio, the
        samples `synthesize` gives up to the last `lookahead_frames` frames. Items are sorted by length and cut into groups whose
        longest is at most twice the shortest, so padding wastes at most half of a group."""
        voices = [voice or self.voices[0] for _, voice, _ in requests]
        feats = [self.features(text, voice, speed) for (text, _, speed), voice in zip(requests, voices)]
        return self.generate_grouped(feats, [self.voices.index(v) for v in voices])

    def generate_grouped(self, features: list[np.ndarray], speakers: list[int]) -> list[np.ndarray]:
        """`generate_batch` over groups of similar length, results in the input order."""
        out: list[np.ndarray] = [np.zeros(0, np.float32)] * len(features)
        for group in length_groups([f.shape[1] for f in features]):
            for i, a in zip(group, self.generate_batch([features[i] for i in group], [speakers[i] for i in group])):
                out[i] = a
        return out


def length_groups(lengths: list[int]) -> list[list[int]]:
    """Indices sorted by length and cut into groups whose longest is at most twice the shortest
    (so padding wastes at most half of a batch); each group in length order."""
    order, groups = sorted(range(len(lengths)), key=lambda i: lengths[i]), []
    while order:
        groups.append([i for i in order if lengths[i] <= 2 * lengths[order[0]]])
        order = order[len(groups[-1]):]
    return groups


def model_spec():
    """The registry entry (models/registry.py)."""
    from models.registry import ModelSpec

    return ModelSpec("gan-tts", GanTTSConfig, GanTTSGenerator, "tts", GanTTSSynthesizer)
