"""WaveRNN (Kalchbrenner et al. 2018, "Efficient Neural Audio Synthesis").

One GRU-style layer over 16-bit samples split into a coarse (high 8 bits)
and a fine (low 8 bits) byte, each scaled to [-1, 1]. Section 2 of the paper:

    x_t = [c_{t-1}, f_{t-1}, c_t]        (c_t is masked out of the coarse half)
    u = sigm(R_u h + I_u x + b),  r = sigm(R_r h + I_r x + b)
    e = tanh(r * (R_e h + b_e) + I_e x + b),  h' = u * h + (1 - u) * e
    P(c_t) = softmax(O2 relu(O1 y_c)),  P(f_t) = softmax(O4 relu(O3 y_f))

with h' = [y_c, y_f] split in halves. This is exactly PyTorch's GRU
(`r * (W_hn h + b_hn)`, z = u), so the teacher-forced training path runs
aten's fused GRU over whole crops.

Conditioning: frame-rate features (200 Hz linguistic features from the text
frontend, or log-mel for copy-synthesis) plus a speaker embedding go through
a small conv net; its output is linearly interpolated to the sample rate and
enters the gates through the input matrix. Because the interpolation and the
input matrix are both linear, inference projects the frames to gate space
once and interpolates the projections per sample (models/wavernn_fused.py).

Samples are handled as unsigned 16-bit integers u in [0, 65535]
(u = pcm + 32768), coarse = u // 256, fine = u % 256, as in
models/features.py (split_coarse_fine, scale_byte).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from models.features import join_coarse_fine, scale_byte
from models.inference import phone_timings

N_CLASSES = 256  # per byte


@dataclasses.dataclass(frozen=True)
class WaveRNNConfig:
    hidden_size: int = 896
    sample_rate: int = 16000
    hop_length: int = 80  # samples per conditioning frame (200 Hz at 16 kHz)
    cond_channels: int = 64  # features per frame (linguistic features or n_mels)
    cond_kind: str = "linguistic"  # linguistic | mel
    cond_hidden: int = 64
    cond_kernel: int = 5
    cond_layers: int = 2
    n_speakers: int = 1
    speaker_dim: int = 16
    sparse_block: tuple[int, int] = (16, 1)  # block of the packed matrices (rows, cols of (out, in))
    # Subscale WaveRNN (models/subscale.py): B sub-tensors (0: plain WaveRNN),
    # future horizon F and past P positions of earlier sub-tensors seen by the
    # context net, whose ctx_hidden outputs join the gate inputs.
    subscale: int = 0
    subscale_future: int = 4
    subscale_past: int = 2
    ctx_hidden: int = 16


# --- sample encoding -------------------------------------------------------------
def split_samples(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unsigned 16-bit samples (any shape, int) -> (coarse, fine) in [0, 255]."""
    return u // N_CLASSES, u % N_CLASSES


def samples_to_audio(u: np.ndarray) -> np.ndarray:
    """Unsigned 16-bit ints -> float32 audio in [-1, 1)."""
    u = torch.as_tensor(np.asarray(u, dtype=np.int64))
    return join_coarse_fine(u // N_CLASSES, u % N_CLASSES).numpy()


def upsample_frames(frames: torch.Tensor, hop: int, n_samples: int) -> torch.Tensor:
    """(B, K, C) frame-rate -> (B, n_samples, C): sample t = k * hop + m takes
    (1 - m / hop) frames[k] + (m / hop) frames[min(k + 1, K - 1)]."""
    K = frames.shape[1]
    t = torch.arange(n_samples, device=frames.device)
    k = torch.clamp(t // hop, max=K - 1)
    k1 = torch.clamp(k + 1, max=K - 1)
    a = ((t % hop).float() / hop).to(frames.dtype)[None, :, None]
    return (1 - a) * frames[:, k] + a * frames[:, k1]


def sample_byte(logits: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF draw: (B, 256) logits, (B,) uniforms in [0, 1) -> (B,) long.

    The first index whose float64 cumulative softmax mass exceeds u * total;
    the fused sampler does exactly the same, so equal draws give equal bytes.
    """
    z = logits.double()
    e = torch.exp(z - z.max(dim=-1, keepdim=True).values)
    cdf = torch.cumsum(e, dim=-1)
    target = u.double()[:, None] * cdf[:, -1:]
    idx = torch.searchsorted(cdf, target, right=True).squeeze(-1)
    return torch.clamp(idx, max=N_CLASSES - 1)


class CondNet(nn.Module):
    """Frame features + speaker embedding -> (B, K, cond_hidden), same length."""

    def __init__(self, config: WaveRNNConfig):
        super().__init__()
        self.speaker = nn.Embedding(config.n_speakers, config.speaker_dim)
        layers, ch = [], config.cond_channels + config.speaker_dim
        for _ in range(config.cond_layers):
            layers += [nn.Conv1d(ch, config.cond_hidden, config.cond_kernel, padding=config.cond_kernel // 2),
                       nn.ReLU()]
            ch = config.cond_hidden
        self.net = nn.Sequential(*layers)

    def forward(self, cond: torch.Tensor, speaker: torch.Tensor) -> torch.Tensor:
        # cond (B, K, C), speaker (B,) long -> (B, K, cond_hidden)
        spk = self.speaker(speaker)[:, None, :].expand(-1, cond.shape[1], -1)
        x = torch.cat([cond, spk], dim=-1).transpose(1, 2)
        return self.net(x).transpose(1, 2)


class WaveRNN(nn.Module):
    """forward(): teacher-forced logits; generate(): the torch reference sampler."""

    # Matrices pruned by the sparse schedule and stored packed in bundles.
    SPARSE = ("weight_hh", "o1.weight", "o2.weight", "o3.weight", "o4.weight")

    def __init__(self, config: WaveRNNConfig):
        super().__init__()
        H = config.hidden_size
        if H % 2 or config.cond_kind not in ("linguistic", "mel"):
            raise ValueError("hidden_size must be even; cond_kind linguistic or mel")
        self.config = config
        self.cond_net = CondNet(config)
        n_in = 3 + config.cond_hidden + (config.ctx_hidden if config.subscale else 0)
        if config.subscale:
            from models.subscale import ContextNet

            self.ctx_net = ContextNet(config)
        bound = 1 / H ** 0.5
        self.weight_ih = nn.Parameter(torch.empty(3 * H, n_in).uniform_(-bound, bound))
        self.weight_hh = nn.Parameter(torch.empty(3 * H, H).uniform_(-bound, bound))
        self.bias_ih = nn.Parameter(torch.zeros(3 * H))
        self.bias_hh = nn.Parameter(torch.zeros(3 * H))
        # c_t (input column 2) reaches only the fine half of each gate.
        mask = torch.ones(3 * H, n_in)
        for g in range(3):
            mask[g * H: g * H + H // 2, 2] = 0
        self.register_buffer("input_mask", mask, persistent=False)
        half = H // 2
        self.o1, self.o2 = nn.Linear(half, half), nn.Linear(half, N_CLASSES)
        self.o3, self.o4 = nn.Linear(half, half), nn.Linear(half, N_CLASSES)

    # --- pieces shared by training and both samplers --------------------------
    def masked_weight_ih(self) -> torch.Tensor:
        return self.weight_ih * self.input_mask

    def cond_frames(self, cond: torch.Tensor, speaker: torch.Tensor) -> torch.Tensor:
        """(B, K, C), (B,) -> conditioning in gate space at frame rate (B, K, 3H),
        input bias included."""
        hidden = self.cond_net(cond, speaker)
        ch = self.config.cond_hidden
        return F.linear(hidden, self.masked_weight_ih()[:, 3: 3 + ch], self.bias_ih)

    # --- training path ---------------------------------------------------------
    def forward(self, samples: torch.Tensor, cond: torch.Tensor, speaker: torch.Tensor,
                cond_offset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher forcing.

        samples (B, T + 1) unsigned 16-bit ints, sample 0 being the one before
        the crop; cond (B, K, cond_channels) with K * hop_length >= T; speaker
        (B,) long. Returns coarse and fine logits, each (B, T, 256), for
        samples[:, 1:]. cond_offset frames of cond before the crop are context
        for the conditioning net only.
        """
        if self.config.subscale:
            from models.subscale import subscale_forward

            return subscale_forward(self, samples, cond, speaker, cond_offset)
        B, T = samples.shape[0], samples.shape[1] - 1
        c, f = split_samples(samples)
        x = torch.stack([scale_byte(c[:, :-1]), scale_byte(f[:, :-1]), scale_byte(c[:, 1:])], -1)
        hidden = upsample_frames(self.cond_net(cond, speaker)[:, cond_offset:], self.config.hop_length, T)
        inp = torch.cat([x, hidden], dim=-1)  # (B, T, 3 + cond_hidden)
        H = self.config.hidden_size
        h0 = torch.zeros(1, B, H, dtype=inp.dtype, device=inp.device)
        weights = [self.masked_weight_ih(), self.weight_hh, self.bias_ih, self.bias_hh]
        out, _ = torch._VF.gru(inp, h0, weights, True, 1, 0.0, self.training, False, True)
        y_c, y_f = out[..., : H // 2], out[..., H // 2:]
        return self.o2(F.relu(self.o1(y_c))), self.o4(F.relu(self.o3(y_f)))

    # --- the reference sampler ---------------------------------------------------
    @torch.no_grad()
    def generate(self, cond: torch.Tensor, speaker: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
        """Plain torch loop, one step per sample (the spec for the fused sampler).

        cond (B, K, C), speaker (B,), uniforms (B, T, 2) in [0, 1) (coarse,
        fine draw per sample), T <= K * hop_length. Returns (B, T) unsigned
        16-bit samples (int64). The sample before the first is 32768 (silence).
        """
        if self.config.subscale:
            from models.subscale import subscale_generate

            return subscale_generate(self, cond, speaker, uniforms)
        hop = self.config.hop_length
        B, T = uniforms.shape[:2]
        frames = self.cond_frames(cond, speaker).float()  # (B, K, 3H)
        K = frames.shape[1]
        h = torch.zeros(B, self.config.hidden_size)
        c_prev = torch.full((B,), 128, dtype=torch.long)
        f_prev = torch.zeros(B, dtype=torch.long)
        out = torch.empty(B, T, dtype=torch.long)
        for t in range(T):
            k, a = min(t // hop, K - 1), (t % hop) / hop
            gi = (1 - a) * frames[:, k] + a * frames[:, min(k + 1, K - 1)]
            h, c_prev, f_prev = self.torch_step(h, gi, c_prev, f_prev, uniforms[:, t])
            out[:, t] = c_prev * N_CLASSES + f_prev
        return out

    def torch_step(self, h, gi, c_prev, f_prev, u):
        """One sample of the reference sampler: h (B, H), gi (B, 3H) conditioning
        in gate space, previous bytes (B,), u (B, 2) -> (h', c_t, f_t)."""
        H = self.config.hidden_size
        half = H // 2
        w_x = self.masked_weight_ih()[:, :3].float()  # (3H, 3)
        gi = gi + scale_byte(c_prev)[:, None] * w_x[:, 0] + scale_byte(f_prev)[:, None] * w_x[:, 1]
        gh = h @ self.weight_hh.float().T + self.bias_hh.float()
        h_new = torch.empty_like(h)
        for part in (0, 1):
            lo = part * half
            if part == 1:
                gi = gi + scale_byte(c_t)[:, None] * w_x[:, 2]
            r = torch.sigmoid(gi[:, lo: lo + half] + gh[:, lo: lo + half])
            z = torch.sigmoid(gi[:, H + lo: H + lo + half] + gh[:, H + lo: H + lo + half])
            n = torch.tanh(gi[:, 2 * H + lo: 2 * H + lo + half] + r * gh[:, 2 * H + lo: 2 * H + lo + half])
            y = (1 - z) * n + z * h[:, lo: lo + half]
            h_new[:, lo: lo + half] = y
            if part == 0:
                c_t = sample_byte(self.o2(F.relu(self.o1(y))), u[:, 0])
            else:
                f_t = sample_byte(self.o4(F.relu(self.o3(y))), u[:, 1])
        return h_new, c_t, f_t

    # --- bundles: pruned matrices stored packed ----------------------------------
    def bundle_tensors(self) -> dict[str, torch.Tensor]:
        from models.wavernn_fused import pack_state

        return pack_state(dict(self.state_dict()), self.SPARSE, self.config.sparse_block)

    def load_bundle_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        from models.bundle import BundleError
        from models.wavernn_fused import unpack_state

        try:
            self.load_state_dict(unpack_state(tensors), strict=True)
        except (RuntimeError, KeyError) as exc:
            raise BundleError(f"WaveRNN weights do not match the config: {str(exc).splitlines()[0]}") from None


def model_spec():
    from models.registry import ModelSpec

    return ModelSpec("wavernn", WaveRNNConfig, WaveRNN, "tts", runtime)


def runtime(bundle):
    return WaveRNNSynthesizer(bundle)


class WaveRNNSynthesizer:
    """models/inference.py's Synthesizer: text -> MBROLA phones (durations,
    pitch) -> 200 Hz linguistic features -> the fused sampler. Streams
    `chunk_s` pieces (the recurrence carries over, so the audio is the same
    as in one piece; subscale bundles give one piece per sentence); sets
    `last_timings` (phonemes) once exhausted."""

    streaming = True
    chunk_s = 0.1

    def __init__(self, bundle, seed: int = 0):
        from models.registry import model_from_bundle
        from models.subscale import FusedSubscale
        from models.text import FrontendConfig
        from models.wavernn_fused import FusedWaveRNN

        self.model = model_from_bundle(bundle)
        cfg = self.model.config
        if cfg.cond_kind != "linguistic":
            raise ValueError("this WaveRNN bundle is mel-conditioned (copy-synthesis); it cannot read text")
        front = dict(bundle.manifest.get("frontend_config", {}))
        self.voices = list(front.pop("speakers", [])) or [f"speaker{i}" for i in range(cfg.n_speakers)]
        fields = {f.name for f in dataclasses.fields(FrontendConfig)}
        self.frontend = FrontendConfig(**{k: v for k, v in front.items() if k in fields})
        self.sample_rate = cfg.sample_rate
        self.threads = int(bundle.manifest.get("inference_defaults", {}).get("threads", 2 if cfg.subscale else 1))
        self.sampler = (FusedSubscale if cfg.subscale else FusedWaveRNN)(self.model, sparse=True)
        self.seed = seed  # each call draws from a fresh generator: the same request gives the same audio

    def phones(self, sentence: str, speed: float = 1.0) -> list:
        """One sentence -> MBROLA phones, durations divided by `speed`."""
        from models.text import Phone, text_to_phones

        return [Phone(p.phoneme, p.duration_ms / speed, p.pitch) for p in text_to_phones(sentence, self.frontend)]

    def features(self, sentence: str, speed: float = 1.0, phones: list | None = None) -> torch.Tensor:
        """One sentence (or its phones) -> (1, K, cond_channels) linguistic features."""
        from models.text import features_from_phones, pho_symbols, to_model_input

        feats = features_from_phones(phones or self.phones(sentence, speed), 0, self.sample_rate)
        return to_model_input(feats, len(pho_symbols()), 1)[None]

    def synthesize(self, text: str, voice: str | None = None, speed: float = 1.0):
        import re

        if voice is not None and voice not in self.voices:
            raise ValueError(f"unknown voice {voice!r}; this model has: {', '.join(self.voices)}")
        if not 0.25 <= speed <= 4.0:
            raise ValueError("speed must be between 0.25 and 4")
        speaker = torch.tensor([self.voices.index(voice) if voice else 0])
        block = max(1, self.model.config.subscale)
        timings, offset = [], 0
        rng = np.random.default_rng(self.seed)
        for sentence in [p for p in re.split(r"(?<=[.!?;])\s+", text.strip()) if p.strip()]:
            phones = self.phones(sentence, speed)
            cond = self.features(sentence, speed, phones)
            n = cond.shape[1] * self.model.config.hop_length // block * block
            u = rng.random((1, n, 2))
            timings += phone_timings(phones, offset / self.sample_rate)
            if block > 1:
                pieces = [self.sampler.generate(cond, speaker, u, threads=self.threads)[0]]
            else:
                pieces = self.sampler.generate_chunks(cond, speaker, u, max(1, int(self.chunk_s * self.sample_rate)))
            for piece in pieces:
                audio = samples_to_audio(piece)
                offset += len(audio)
                yield audio
        self.last_timings = timings  # a new list each time: the service reads it from a copy of this object
