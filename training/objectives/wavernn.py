"""WaveRNN teacher forcing: cross-entropy on the coarse and the fine byte.

Data: the speech corpus (`sparsewave data speech`, LJSpeech layout plus
labels.jsonl). Linguistic conditioning needs exact phone durations and
pitch, which only the MBROLA utterances carry, so with cond_kind
"linguistic" the dataset keeps those; with "mel" every utterance is usable
(copy-synthesis). Speakers are the training voices in sorted order.

A training item is a random crop of `crop_frames` conditioning frames with
`pad_frames` of context each side for the conditioning net, and the crop's
samples plus the one before it. Sparse WaveRNN: the `sparsity` section
(training/sparsity, method gmp; built by Objective.build) prunes weight_hh
and O1..O4 in blocks.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from models.audio import read_audio
from models.features import FeatureConfig, float_to_int16, log_mel
from models.text import FrontendConfig, Phone, features_from_phones, pho_symbols, to_model_input
from models.wavernn import WaveRNN, WaveRNNConfig, samples_to_audio, split_samples
from training.config import LoopConfig, OptimConfig
from training.data.readers import read_labels
from training.objective import Objective
from training.sparsity import SparsityConfig


@dataclasses.dataclass(frozen=True)
class WaveRNNDataConfig:
    root: str = "data/wavernn_speech"
    crop_frames: int = 10  # conditioning frames per crop (crop_frames * hop samples)
    pad_frames: int = 4  # extra frames each side seen by the conditioning net
    voices: tuple[str, ...] = ()  # training voices; empty: every train voice with usable labels
    max_items: int = 0  # 0: all


@dataclasses.dataclass(frozen=True)
class WaveRNNRunConfig:
    model: WaveRNNConfig = WaveRNNConfig()
    data: WaveRNNDataConfig = WaveRNNDataConfig()
    optim: OptimConfig = OptimConfig(lr=1e-3)
    loop: LoopConfig = LoopConfig(max_steps=20000, batch_size=16)
    sparsity: SparsityConfig = SparsityConfig(
        include=(r"weight_hh", r"o[1-4]\.weight"), block=(16, 1), target=0.96, min_size=1024,
        start_step=1000, end_step=200000, every=500)


def linguistic_channels() -> int:
    """Feature width of models.text.to_model_input with one (constant) speaker column."""
    return len(pho_symbols()) + 4 + 1


def mel_config(model: WaveRNNConfig) -> FeatureConfig:
    """Log-mel whose frames line up with the conditioning hop."""
    return FeatureConfig(sample_rate=model.sample_rate, hop_length=model.hop_length,
                         n_fft=4 * model.hop_length, n_mels=model.cond_channels)


def utterance_features(label: dict, model: WaveRNNConfig, audio: np.ndarray | None = None) -> torch.Tensor:
    """(K, cond_channels) conditioning of one labelled utterance."""
    if model.cond_kind == "mel":
        return log_mel(torch.from_numpy(audio), mel_config(model)).squeeze(0).T.contiguous()[:-1]
    phones = [Phone(p, float(d), tuple(tuple(x) for x in pitch))
              for p, d, pitch in zip(label["pho_phonemes"], label["durations_ms"], label["pitch"])]
    feats = features_from_phones(phones, 0, model.sample_rate)
    return to_model_input(feats, len(pho_symbols()), 1)


class SpeechCrops:
    """Random crops of labelled utterances (see the module docstring)."""

    def __init__(self, config: WaveRNNRunConfig, split: str, speakers: dict[str, int]):
        root, m = Path(config.data.root), config.model
        self.config, self.hop = config, m.hop_length
        self.items = []
        for label in read_labels(root, split):
            if m.cond_kind == "linguistic" and not label.get("durations_ms"):
                continue
            if split == "train" and config.data.voices and label["voice"] not in config.data.voices:
                continue
            audio, sr = read_audio(label["wav_path"])
            if sr != m.sample_rate:
                raise ValueError(f"{label['id']}: {sr} Hz audio, the model runs at {m.sample_rate} Hz")
            cond = utterance_features(label, m, audio)
            n = min(len(cond), len(audio) // self.hop)
            if n < config.data.crop_frames:
                continue
            samples = (float_to_int16(torch.from_numpy(audio[: n * self.hop])).long() + 32768)
            self.items.append((samples, cond[:n].float(), speakers.get(label["voice"], 0)))
            if config.data.max_items and len(self.items) >= config.data.max_items:
                break
        if not self.items:
            raise ValueError(f"{root}: no usable {split} utterances for cond_kind={m.cond_kind}")
        self.lengths = [len(c) for _, c, _ in self.items]

    def __len__(self) -> int:
        return len(self.items)

    def get(self, index: int, rng: np.random.Generator):
        samples, cond, speaker = self.items[index]
        crop, pad = self.config.data.crop_frames, self.config.data.pad_frames
        k0 = int(rng.integers(0, len(cond) - crop + 1))
        lo, hi = k0 * self.hop, (k0 + crop) * self.hop
        prev = samples[lo - 1: lo] if lo > 0 else torch.tensor([32768])
        window = F.pad(cond.T, (pad, pad)).T[k0: k0 + crop + 2 * pad]  # zeros past the edges
        return {"samples": torch.cat([prev, samples[lo:hi]]), "cond": window, "speaker": torch.tensor(speaker)}


def corpus_speakers(root: str, split: str = "train") -> list[str]:
    return sorted({label["voice"] for label in read_labels(root, split)})


class WaveRNNObjective(Objective):
    name = "wavernn"
    config_cls = WaveRNNRunConfig
    model_type = "wavernn"
    task = "tts"

    def __init__(self, config: WaveRNNRunConfig):
        super().__init__(config)
        self._sets: dict[str, SpeechCrops] = {}

    def speakers(self) -> dict[str, int]:
        voices = list(self.config.data.voices) or corpus_speakers(self.config.data.root)
        return {v: i for i, v in enumerate(voices[: self.config.model.n_speakers])}

    def build_modules(self):
        return {"model": WaveRNN(self.config.model)}

    def _dataset(self, split: str) -> SpeechCrops:
        if split not in self._sets:
            self._sets[split] = SpeechCrops(self.config, split, self.speakers())
        return self._sets[split]

    def train_dataset(self):
        return self._dataset("train")

    def val_dataset(self):
        try:
            return self._dataset("valid")
        except ValueError:
            return None

    def losses(self, model, batch) -> dict[str, torch.Tensor]:
        samples = batch["samples"]
        logits_c, logits_f = model(samples, batch["cond"], batch["speaker"], cond_offset=self.config.data.pad_frames)
        c, f = split_samples(samples[:, 1:])
        loss_c = F.cross_entropy(logits_c.float().transpose(1, 2), c)
        loss_f = F.cross_entropy(logits_f.float().transpose(1, 2), f)
        return {"loss": loss_c + loss_f, "loss_coarse": loss_c, "loss_fine": loss_f}

    def train_step(self, modules, batch, step, steps):
        losses = self.losses(modules["model"], batch)
        steps.step("main", losses["loss"])
        return {k: v.item() for k, v in losses.items()}

    @torch.no_grad()
    def val_step(self, modules, batch):
        return {k: v.item() for k, v in self.losses(modules["model"], batch).items()}

    # --- bundle ----------------------------------------------------------------
    def feature_config(self):
        m = self.config.model
        if m.cond_kind == "mel":
            return {"kind": "mel", **mel_config(m).to_dict()}
        return {"kind": "linguistic", "n_symbols": len(pho_symbols()), "frame_rate_hz": 200}

    def frontend_config(self):
        return {**FrontendConfig().to_dict(), "speakers": list(self.speakers())}

    def inference_defaults(self):
        return {"block": list(self.config.model.sparse_block), "threads": 1}

    def licence(self) -> str:
        voices = list(self.speakers())
        mbrola = [v for v in voices if v.startswith("mb-")]
        note = "; MBROLA voice data: non-commercial use only" if mbrola else ""
        return f"code: project licence; trained on synthetic speech from {', '.join(voices)}{note}"


def evaluate_intelligibility(bundle: str, data_root: str, n_items: int = 20, split: str = "test") -> dict:
    """WER by pocketsphinx (an independent recognizer with its own English
    model) of the bundle's speech for held-out sentences, next to its WER on
    the corpus's reference audio of the same sentences (held-out voices)."""
    from models.inference import load_runtime
    from training.objectives.tts_eval import pocketsphinx_texts, word_error_rate

    _, synth = load_runtime(bundle)
    labels = read_labels(data_root, split)[:n_items]
    if not labels:
        raise ValueError(f"{data_root}: no {split} utterances")
    real, synthesized = [], []
    for i, lab in enumerate(labels):
        real.append(read_audio(lab["wav_path"])[0])
        voice = synth.voices[i % len(synth.voices)]
        synthesized.append(np.concatenate(list(synth.synthesize(lab["normalized"], voice=voice))))
    refs = [lab["normalized"] for lab in labels]

    def wer(audio):
        return word_error_rate(refs, pocketsphinx_texts(audio, synth.sample_rate))
    return {"split": split, "items": len(labels), "voices": sorted({lab["voice"] for lab in labels}),
            "wer_pocketsphinx_synthesized": wer(synthesized), "wer_pocketsphinx_reference": wer(real),
            "synthesized_seconds": sum(len(a) for a in synthesized) / synth.sample_rate}


def resynthesis_scores(ref: np.ndarray, audio: np.ndarray, sample_rate: int) -> dict[str, float]:
    """Distances of `audio` to the time-aligned reference: log-mel L1 (80 mels,
    hop 10 ms), and STOI and wide-band PESQ where pystoi / pesq are installed."""
    from training.objectives.parallel_wavenet import speech_scorers

    fc = FeatureConfig(sample_rate=sample_rate, hop_length=sample_rate // 100, n_fft=sample_rate // 25)
    n = min(len(ref), len(audio))
    ref, audio = np.asarray(ref[:n], np.float32), np.asarray(audio[:n], np.float32)
    out = {"logmel_l1": float((log_mel(ref, fc) - log_mel(audio, fc)).abs().mean())}
    for name, score in speech_scorers(sample_rate).items():
        out[name] = score(ref, audio)
    return out


def evaluate_resynthesis(bundle: str, data_root: str, split: str = "test", limit: int = 4, seed: int = 0) -> dict:
    """Resynthesis of held-out utterances from their own frame features, so the
    output is time-aligned with the reference audio: the reference's log-mel for
    mel-conditioned bundles (copy-synthesis), the utterance's exact MBROLA labels
    (durations, pitch) for linguistic ones (the test voices are not training
    voices: speaker 0 speaks). Each score sits next to white noise at the
    reference's power; pocketsphinx WER of the resynthesized and the reference
    audio of the same utterances."""
    from models.bundle import load_bundle
    from models.registry import model_from_bundle
    from models.subscale import FusedSubscale
    from models.wavernn_fused import FusedWaveRNN
    from training.objectives.tts_eval import pocketsphinx_texts, word_error_rate

    model = model_from_bundle(load_bundle(bundle))
    cfg = model.config
    if not isinstance(model, WaveRNN):
        raise ValueError(f"{bundle} is not a WaveRNN bundle")
    sampler = (FusedSubscale if cfg.subscale else FusedWaveRNN)(model, sparse=True)
    labels = [lab for lab in read_labels(data_root, split) if cfg.cond_kind == "mel" or lab.get("durations_ms")]
    if not labels:
        raise ValueError(f"{data_root}: no {split} utterances usable with cond_kind={cfg.cond_kind}")
    rng = np.random.default_rng(seed)
    refs, resynthesized, scores = [], [], {}
    for lab in labels[:limit]:
        ref, sr = read_audio(lab["wav_path"])
        if sr != cfg.sample_rate:
            raise ValueError(f"{lab['id']}: {sr} Hz audio, the model runs at {cfg.sample_rate} Hz")
        cond = utterance_features(lab, cfg, ref)
        n = min(len(cond) * cfg.hop_length, len(ref)) // max(1, cfg.subscale) * max(1, cfg.subscale)
        u = rng.random((1, n, 2))
        resynth = samples_to_audio(sampler.generate(cond.float()[None], torch.zeros(1, dtype=torch.long), u)[0])
        noise = (rng.standard_normal(n) * ref[:n].std()).astype(np.float32)
        for key, audio in (("resynthesized", resynth), ("noise", noise)):
            for name, value in resynthesis_scores(ref[:n], audio, cfg.sample_rate).items():
                scores.setdefault(f"{name}_{key}", []).append(value)
        refs.append(ref[:n])
        resynthesized.append(resynth)
    texts = [lab.get("normalized") or lab["text"] for lab in labels[:limit]]
    return {"split": split, "items": len(refs), "voices": sorted({lab["voice"] for lab in labels[:limit]}),
            "conditioning": "log-mel of the reference" if cfg.cond_kind == "mel" else "exact MBROLA labels",
            "seconds": sum(len(a) for a in refs) / cfg.sample_rate,
            **{k: float(np.nanmean(v)) for k, v in scores.items()},
            "wer_pocketsphinx_resynthesized": word_error_rate(texts, pocketsphinx_texts(resynthesized, cfg.sample_rate)),
            "wer_pocketsphinx_reference": word_error_rate(texts, pocketsphinx_texts(refs, cfg.sample_rate))}
