"""EATS (Donahue et al. 2020): end-to-end adversarial text to speech with a learned aligner.

    tokens (B, N) (IPA symbols of the frontend, or MBROLA phones), noise (B, noise_dim), speaker (B,)
      -> embedding -> dilated conv blocks (layer norm with scale/shift from [noise, speaker])
      -> token features (B, aligned_channels, N) and lengths l = ReLU(...) (B, N), in 200 Hz frames
      -> ends e = cumsum(l), centres c = e - l / 2
      -> frame t (centre t + 0.5): softmax_n(-(t + 0.5 - c_n)^2 / sigma2)-weighted mix of token features
      -> aligned features (B, aligned_channels, T) at 200 Hz
      -> the GAN-TTS generator (models/gan_tts.py) -> audio (B, T * hop)

The noise and speaker enter the aligner through the decoder's own condition
vector `GanTTSGenerator.condition`, so both halves share one speaker
embedding. Training decodes random windows of the aligned features
(`forward`); inference (`infer`, the ONNX graph) decodes the whole
utterance, its length T = ceil(sum l) taken from the aligner.
"""
from __future__ import annotations

import contextlib
import dataclasses
import re
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from models.features import FeatureConfig, mel_power
from models.gan_tts import (FRAME_RATE_HZ, GanTTSConfig, GanTTSGenerator, has_packed_layers, length_groups,
                             one_torch_thread, onnx_session, packed_runtime)
from models.inference import Timing

MODIFIERS_AFTER = frozenset("ːˑ\u0329")  # length marks and the syllabic mark belong to the phoneme before
STRESS = frozenset("ˈˌ")  # stress marks belong to the phoneme after
TOKEN_KINDS = ("ipa", "pho")  # what the tokens are: espeak-ng IPA characters, or MBROLA phone names


def token_symbols(kind: str):
    """The symbol table of a token kind: ipa (the frontend's IPA characters, inference from text
    needs only espeak-ng) or pho (the MBROLA phones of a labelled corpus, whose exact durations
    the learned ones can be compared with)."""
    from models.text import ipa_symbols, pho_symbols

    if kind not in TOKEN_KINDS:
        raise ValueError(f"tokens {kind!r}; choose one of {', '.join(TOKEN_KINDS)}")
    return ipa_symbols() if kind == "ipa" else pho_symbols()


def row_tokens(row: dict, kind: str) -> list[str]:
    """A corpus row's token sequence: its IPA (`phonemes`, one token a character) or its MBROLA
    phones (`pho_phonemes`, one token a labelled phone)."""
    if kind == "ipa":
        return list(row["phonemes"])
    if not row.get("pho_phonemes"):
        raise ValueError(f"utterance {row.get('id', '?')} has no pho_phonemes (tokens pho needs an MBROLA corpus)")
    return list(row["pho_phonemes"])


@dataclasses.dataclass(frozen=True)
class EATSConfig:
    sample_rate: int = 16000
    n_tokens: int = 82  # len(models.text.ipa_symbols()); index 0 is padding
    n_speakers: int = 1  # 0: no speaker embedding
    token_dim: int = 128
    aligner_channels: int = 128
    dilations: tuple[int, ...] = (1, 2, 4, 8, 16, 1, 2, 4, 8, 16)  # the paper's 10 blocks
    aligned_channels: int = 64  # the decoder's input channels
    sigma2: float = 10.0  # Gaussian kernel width, in frames^2 (the paper's)
    init_length: float = 12.0  # frames per token at initialization (about a corpus's mean)
    noise_dim: int = 32
    speaker_dim: int = 16
    channels: tuple[int, ...] = (96, 96, 64, 64, 48, 32, 16)  # decoder GBlocks (the paper: 768 ... 192)
    upsample: tuple[int, ...] = (1, 1, 2, 2, 2, 2, 5)
    bn_momentum: float = 0.01

    def __post_init__(self):
        self.decoder  # validates rate and upsampling

    @property
    def decoder(self) -> GanTTSConfig:
        return GanTTSConfig(sample_rate=self.sample_rate, in_channels=self.aligned_channels,
                            noise_dim=self.noise_dim, n_speakers=self.n_speakers, speaker_dim=self.speaker_dim,
                            channels=self.channels, upsample=self.upsample, bn_momentum=self.bn_momentum)

    @property
    def hop_length(self) -> int:
        return self.sample_rate // FRAME_RATE_HZ


class ConditionalLayerNorm(nn.Module):
    """Layer norm over channels per token (no batch statistics: padding cannot leak in),
    then scale 1 + W z and shift V z. (B, C, N), (B, D) -> (B, C, N)."""

    def __init__(self, channels: int, cond_dim: int):
        super().__init__()
        self.channels = channels
        self.scale = nn.Linear(cond_dim, channels)
        self.shift = nn.Linear(cond_dim, channels)
        for lin in (self.scale, self.shift):
            nn.init.normal_(lin.weight, std=0.02)
            nn.init.zeros_(lin.bias)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(x.transpose(1, 2), (self.channels,)).transpose(1, 2)
        return x * (1 + self.scale(z)).unsqueeze(-1) + self.shift(z).unsqueeze(-1)


class AlignerBlock(nn.Module):
    """Residual: norm, ReLU, dilated conv3, norm, ReLU, conv1."""

    def __init__(self, channels: int, dilation: int, cond_dim: int):
        super().__init__()
        self.norm1 = ConditionalLayerNorm(channels, cond_dim)
        self.conv1 = nn.Conv1d(channels, channels, 3, padding=dilation, dilation=dilation)
        self.norm2 = ConditionalLayerNorm(channels, cond_dim)
        self.conv2 = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor, z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.relu(self.norm1(x, z)) * mask)
        h = self.conv2(F.relu(self.norm2(h, z)))
        return (x + h) * mask


class Aligner(nn.Module):
    """tokens (B, N), mask (B, 1, N), z (B, cond_dim) -> features (B, aligned_channels, N), lengths (B, N)."""

    def __init__(self, config: EATSConfig, cond_dim: int):
        super().__init__()
        self.embed = nn.Embedding(config.n_tokens, config.token_dim, padding_idx=0)
        self.pre = nn.Conv1d(config.token_dim, config.aligner_channels, 1)
        self.blocks = nn.ModuleList(AlignerBlock(config.aligner_channels, d, cond_dim) for d in config.dilations)
        self.norm = ConditionalLayerNorm(config.aligner_channels, cond_dim)
        self.features = nn.Conv1d(config.aligner_channels, config.aligned_channels, 1)
        self.length = nn.Conv1d(config.aligner_channels, 1, 1)
        nn.init.normal_(self.length.weight, std=0.01)
        nn.init.constant_(self.length.bias, config.init_length)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor, z: torch.Tensor):
        x = self.pre(self.embed(tokens).transpose(1, 2)) * mask
        for block in self.blocks:
            x = block(x, z, mask)
        h = F.relu(self.norm(x, z))
        return self.features(h) * mask, F.relu(self.length(h)).squeeze(1) * mask.squeeze(1)


def interpolate(features: torch.Tensor, lengths: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor,
                sigma2: float) -> torch.Tensor:
    """Gaussian-kernel interpolation. features (B, C, N), lengths (B, N) in frames, mask (B, N) bool,
    positions (B, T) or (T,) frame times -> (B, C, T)."""
    ends = torch.cumsum(lengths, dim=1)
    centres = ends - lengths / 2
    if positions.dim() == 1:
        positions = positions.unsqueeze(0).expand(lengths.shape[0], -1)
    logits = -(positions.unsqueeze(-1) - centres.unsqueeze(1)) ** 2 / sigma2  # (B, T, N)
    logits = logits.masked_fill(~mask.unsqueeze(1), -1e9)
    return torch.bmm(features, torch.softmax(logits, dim=-1).transpose(1, 2))


class EATS(nn.Module):
    """Aligner + GAN-TTS decoder. `forward` (training): a window of `frames` frames from
    `offsets` (B,) -> audio (B, frames * hop), lengths (B, N). `infer`: the whole utterance."""

    def __init__(self, config: EATSConfig):
        super().__init__()
        self.config = config
        self.decoder = GanTTSGenerator(config.decoder)
        self.aligner = Aligner(config, config.decoder.cond_dim)

    def align(self, tokens: torch.Tensor, noise: torch.Tensor, speaker: torch.Tensor | None):
        """-> token features (B, C, N), lengths (B, N), mask (B, N), condition z (B, D)."""
        mask = tokens != 0
        z = self.decoder.condition(noise, speaker)
        feats, lengths = self.aligner(tokens, mask.unsqueeze(1).to(noise.dtype), z)
        return feats, lengths, mask, z

    def forward(self, tokens: torch.Tensor, noise: torch.Tensor, speaker: torch.Tensor | None,
                offsets: torch.Tensor, frames: int) -> tuple[torch.Tensor, torch.Tensor]:
        feats, lengths, mask, _ = self.align(tokens, noise, speaker)
        positions = offsets.to(noise.dtype).unsqueeze(1) + torch.arange(frames, device=noise.device) + 0.5
        aligned = interpolate(feats, lengths, mask, positions, self.config.sigma2)
        return self.decoder(aligned, noise, speaker), lengths

    def infer(self, tokens: torch.Tensor, noise: torch.Tensor, speaker: torch.Tensor,
              speed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, N), (B, noise_dim), (B,), (B,) -> audio (B, T * hop), lengths (B, N) in frames,
        T = ceil(max total length). `speed` divides the lengths. The ONNX graph."""
        feats, lengths, mask, _ = self.align(tokens, noise, speaker)
        lengths = lengths / speed.unsqueeze(1)
        total = torch.ceil(lengths.sum(dim=1).max()).long().clamp_min(1)
        positions = torch.arange(total, device=noise.device).to(noise.dtype) + 0.5
        aligned = interpolate(feats, lengths, mask, positions, self.config.sigma2)
        return self.decoder(aligned, noise, speaker), lengths

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


class _InferenceGraph(nn.Module):
    def __init__(self, model: EATS):
        super().__init__()
        self.model = model

    def forward(self, tokens, noise, speaker, speed):
        return self.model.infer(tokens, noise, speaker, speed)


def export_onnx(model: EATS, path: str | Path, opset: int = 17) -> Path:
    """ONNX graph (tokens, noise, speaker, speed) -> (audio, lengths), dynamic batch, tokens and samples."""
    model = model.eval()
    args = (torch.randint(4, model.config.n_tokens, (1, 12)), torch.randn(1, model.config.noise_dim),
            torch.zeros(1, dtype=torch.long), torch.ones(1))
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation and tracer notices
        warnings.simplefilter("ignore")
        # an eval-mode wrapper: the exporter restores the wrapper's mode, recursively, afterwards
        torch.onnx.export(
            _InferenceGraph(model).eval(), args, str(path), dynamo=False, opset_version=opset,
            input_names=["tokens", "noise", "speaker", "speed"], output_names=["audio", "lengths"],
            dynamic_axes={"tokens": {0: "batch", 1: "tokens"}, "noise": {0: "batch"}, "speaker": {0: "batch"},
                          "speed": {0: "batch"}, "audio": {0: "batch", 1: "samples"},
                          "lengths": {0: "batch", 1: "tokens"}})
    return Path(path)


def run_onnx(session, tokens: np.ndarray, noise: np.ndarray, speaker: np.ndarray,
             speed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(B, N) int64, (B, noise_dim), (B,) int64, (B,) float -> audio (B, T * hop), lengths (B, N)."""
    feeds = {"tokens": tokens.astype(np.int64), "noise": noise.astype(np.float32),
             "speed": speed.astype(np.float32)}
    if "speaker" in {i.name for i in session.get_inputs()}:
        feeds["speaker"] = speaker.astype(np.int64)
    audio, lengths = session.run(["audio", "lengths"], feeds)
    return audio, lengths


@dataclasses.dataclass(frozen=True)
class MelDiscriminatorConfig:
    sample_rate: int = 16000
    n_fft: int = 1024
    hop_length: int = 200  # 12.5 ms at 16 kHz
    n_mels: int = 80
    channels: int = 32
    layers: int = 4  # stride-2 conv2d layers, channels doubling
    spectral_norm: bool = True

    @property
    def features(self) -> FeatureConfig:
        return FeatureConfig(sample_rate=self.sample_rate, n_fft=self.n_fft, hop_length=self.hop_length,
                             n_mels=self.n_mels)


def soft_log_mel(audio: torch.Tensor, cfg: FeatureConfig) -> torch.Tensor:
    """(B, N) -> (B, n_mels, frames) ln(mel power + floor): unlike a clamp at the floor, every bin
    passes gradients, so a near-silent generator still learns from the spectrogram losses."""
    return torch.log(mel_power(audio, cfg) + cfg.log_floor)


class MelDiscriminator(nn.Module):
    """EATS's spectrogram discriminator: log-mel of the window, 2D conv stack, mean, linear.
    audio (B, T) -> score (B,)."""

    def __init__(self, config: MelDiscriminatorConfig):
        super().__init__()
        self.config = config
        wrap = nn.utils.parametrizations.spectral_norm if config.spectral_norm else (lambda m: m)
        layers, cin = [], 1
        for i in range(config.layers):
            cout = config.channels * 2 ** i
            layers.append(wrap(nn.Conv2d(cin, cout, 3, stride=2, padding=1)))
            cin = cout
        self.convs = nn.ModuleList(layers)
        self.out = wrap(nn.Linear(cin, 1))

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        x = soft_log_mel(audio, self.config.features).unsqueeze(1)  # (B, 1, n_mels, frames)
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.2)
        return self.out(x.mean(dim=(2, 3))).squeeze(-1)


def timings(tokens: list[str], lengths_frames: np.ndarray, words: list[str] | None = None) -> list[Timing]:
    """IPA tokens and their lengths (frames) -> phoneme and word Timings (seconds from the start).

    A phoneme is one IPA letter with its stress mark before and length marks after; a word is
    the run of phonemes between spaces and punctuation, named by `words` when their counts match
    (espeak-ng may fuse words), else by its IPA."""
    lengths = np.asarray(lengths_frames, np.float64) / FRAME_RATE_HZ
    ends = np.cumsum(lengths)
    starts = ends - lengths
    phones: list[list] = []  # [text, start, end, word index]
    word, in_word, stress = -1, False, None
    for k, tok in enumerate(tokens):
        if not (tok.isalpha() or tok in STRESS or tok in MODIFIERS_AFTER):  # word space or punctuation
            in_word, stress = False, None
            continue
        if not in_word:
            word, in_word = word + 1, True
        if tok in STRESS:
            stress = stress or (tok, starts[k])
        elif tok in MODIFIERS_AFTER:
            if phones and phones[-1][3] == word:
                phones[-1][0] += tok
                phones[-1][2] = ends[k]
        else:
            text, start = (stress[0] + tok, stress[1]) if stress else (tok, starts[k])
            phones.append([text, start, ends[k], word])
            stress = None
    result = [Timing("phoneme", p[0], round(float(p[1]), 4), round(float(p[2]), 4)) for p in phones]
    n_words = max((p[3] for p in phones), default=-1) + 1
    names = words if words is not None and len(words) == n_words else None
    for w in range(n_words):
        members = [p for p in phones if p[3] == w]
        if members:
            text = names[w] if names else "".join(p[0] for p in members).replace("ˈ", "").replace("ˌ", "")
            result.append(Timing("word", text, round(float(members[0][1]), 4), round(float(members[-1][2]), 4)))
    return result


def phone_timings(phones: list[str], lengths_frames: np.ndarray) -> list[Timing]:
    """MBROLA phones and their lengths (frames) -> one phoneme Timing per phone, pauses (`_`)
    left out; MBROLA phones carry no word boundaries, so there are no word Timings."""
    ends = np.cumsum(np.asarray(lengths_frames, np.float64)) / FRAME_RATE_HZ
    starts = ends - np.asarray(lengths_frames, np.float64) / FRAME_RATE_HZ
    return [Timing("phoneme", p, round(float(a), 4), round(float(b), 4))
            for p, a, b in zip(phones, starts, ends) if p != "_"]


def spoken_words(text: str) -> list[str]:
    """Normalized text -> its words without punctuation (hyphens split words, as espeak-ng does)."""
    return re.findall(r"[A-Za-z0-9']+", text)


class EATSSynthesizer:
    """models.inference.Synthesizer: text -> IPA tokens (espeak-ng; MBROLA phones for `tokens: pho`
    bundles) -> aligner + decoder -> audio, one chunk. Engines: onnx (the dense bundles' default;
    2 threads without spinning) or torch; a sparse bundle (packed layers, no ONNX graph) runs its
    decoder on kernels/conv.py through GAN-TTS's `packed_runtime`. Sets `last_timings` (phonemes
    and words, seconds from the start of the output)."""

    streaming = False

    def __init__(self, bundle, engine: str | None = None, threads: int | None = None):
        from models.registry import model_from_bundle
        from models.text import FrontendConfig, SymbolTable

        front = bundle.manifest["frontend_config"]
        defaults = bundle.manifest.get("inference_defaults", {})
        self.voices: list[str] = list(front["voices"])
        self.frontend = FrontendConfig.from_dict(front["frontend"])
        self.symbols = SymbolTable.from_dict(front["symbols"])
        self.token_kind = bundle.manifest.get("feature_config", {}).get("tokens", "ipa")
        token_symbols(self.token_kind)  # refuses an unknown kind
        self.seed, self.noise_scale = int(defaults.get("seed", 0)), float(defaults.get("noise_scale", 1.0))
        self.engine = engine or defaults.get("engine", "onnx")
        self.model: EATS = model_from_bundle(bundle)
        if self.engine == "torch" and has_packed_layers(self.model.decoder):
            packed_runtime(self.model.decoder)
        self.config = self.model.config
        self.sample_rate = self.config.sample_rate
        self.last_timings: list[Timing] | None = None
        self.session = None
        if self.engine == "onnx":
            if bundle.onnx_path is None:
                raise ValueError(f"{bundle.path}: engine onnx needs model.onnx in the bundle "
                                 f"(a sparse bundle runs on engine torch)")
            self.session = onnx_session(bundle.onnx_path, threads or 2, spinning=False)
        elif self.engine != "torch":
            raise ValueError(f"engine={self.engine!r}; choose onnx or torch")

    def tokens(self, text: str) -> list[str]:
        """Text -> the bundle's tokens: IPA characters (espeak-ng), or the MBROLA phones of the
        frontend's prosody voice (needs that voice installed)."""
        from models.text import text_to_ipa, text_to_phones

        if self.token_kind == "pho":
            return [p.phoneme for p in text_to_phones(text, self.frontend)]
        return text_to_ipa(text, self.frontend)

    def generate(self, ids: list[int], speaker: int, speed: float = 1.0,
                 seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Token ids -> (samples,) float32 audio and (N,) lengths in frames."""
        return self.generate_batch([ids], [speaker], [speed], seed)[0]

    def generate_batch(self, ids: list[list[int]], speakers: list[int], speeds: list[float],
                       seed: int | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
        """Token ids each (zero-padded to the longest: padding gets no length and no say) -> its
        (samples,) audio and (N_i,) lengths, in one aligner + decoder call; every item gets the same
        seeded noise vector. The decoder runs to the longest item's end, so past an item's own end
        it sees the aligner's features of its last token where alone it sees the convolutions' zero
        padding: its audio equals the item's alone except in its last `lookahead_frames` frames."""
        g = torch.Generator().manual_seed(self.seed if seed is None else seed)
        noise = (self.noise_scale * torch.randn(1, self.config.noise_dim, generator=g)).expand(len(ids), -1)
        tokens = np.zeros((len(ids), max(len(i) for i in ids)), np.int64)
        for row, item in zip(tokens, ids):
            row[:len(item)] = item
        spk, spd = np.array(speakers, np.int64), np.array(speeds, np.float32)
        if self.session is not None:
            audio, lengths = run_onnx(self.session, tokens, noise.numpy(), spk, spd)
        else:  # packed: the aligner's small ops on one thread too, as the decoder's (packed_runtime)
            threads = one_torch_thread() if getattr(self.model.decoder, "_packed", False) else contextlib.nullcontext()
            with torch.no_grad(), threads:
                audio, lengths = (t.numpy() for t in self.model.infer(
                    torch.from_numpy(tokens), noise, torch.from_numpy(spk), torch.from_numpy(spd)))
        hop, out = self.config.hop_length, []
        for k, item in enumerate(ids):
            frames = max(1, int(np.ceil(lengths[k].sum(dtype=np.float32))))  # as EATS.infer's total
            out.append((audio[k, :frames * hop].astype(np.float32), lengths[k, :len(item)]))
        return out

    def check(self, voice: str | None, speed: float) -> str:
        """The voice to use (default: the first); ValueError for an unknown voice or a speed out of range."""
        voice = voice or self.voices[0]
        if voice not in self.voices:
            raise ValueError(f"unknown voice {voice!r}; this model has: {', '.join(self.voices)}")
        if not 0.25 <= speed <= 4.0:
            raise ValueError(f"speed {speed} is outside 0.25 ... 4")
        return voice

    def synthesize(self, text: str, voice: str | None = None, speed: float = 1.0) -> Iterator[np.ndarray]:
        from models.text import prepare

        voice = self.check(voice, speed)
        tokens = self.tokens(text)
        audio, lengths = self.generate(self.symbols.encode(tokens), self.voices.index(voice), speed)
        if self.token_kind == "pho":
            self.last_timings = phone_timings(tokens, lengths)
        else:
            self.last_timings = timings(tokens, lengths, spoken_words(prepare(text, self.frontend)))
        yield audio

    def synthesize_batch(self, requests: list[tuple[str, str | None, float]]) -> list[np.ndarray]:
        """The service's batching (service/workers.py), as GAN-TTS's: (text, voice, speed) each ->
        its audio, the samples `synthesize` gives up to the last `lookahead_frames` frames. Items
        are grouped by token count (the output length is known only after the aligner), each
        group's longest at most twice its shortest, one `generate_batch` per group."""
        voices = [self.check(voice, speed) for _, voice, speed in requests]
        ids = [self.symbols.encode(self.tokens(text)) for text, _, _ in requests]
        return self.generate_grouped(ids, [self.voices.index(v) for v in voices], [speed for _, _, speed in requests])

    def generate_grouped(self, ids: list[list[int]], speakers: list[int], speeds: list[float]) -> list[np.ndarray]:
        """`generate_batch` over groups of similar token counts; the audio, in the input order."""
        out: list[np.ndarray] = [np.zeros(0, np.float32)] * len(ids)
        for group in length_groups([len(i) for i in ids]):
            made = self.generate_batch([ids[i] for i in group], [speakers[i] for i in group], [speeds[i] for i in group])
            for i, (audio, _) in zip(group, made):
                out[i] = audio
        return out


def model_spec():
    """The registry entry (models/registry.py)."""
    from models.registry import ModelSpec

    return ModelSpec("eats", EATSConfig, EATS, "tts", EATSSynthesizer)
