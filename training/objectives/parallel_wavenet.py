"""Probability density distillation of a WaveNet teacher into the Parallel
WaveNet student (task "parallel-wavenet"; van den Oord et al. 2017, Sec. 3).

    sparsewave train parallel-wavenet --config configs/parallel_wavenet/X.yaml distill.teacher=BUNDLE

Per step, on a crop of real audio y with conditioning c:
- z ~ L(0, 1); the student gives x and, per sample, the logistic
  L(mean_t, s_t) that x_t was drawn from (given z_{<t}).
- The teacher reads x once: its mixture at t depends on x_{<t} only.
- Cross-entropy H(P_S, P_T): `distill.samples` fresh draws x'_t = mean_t +
  s_t e per timestep (reparameterized), scored by the teacher's continuous
  mixture density at t. Entropy H(P_S) = mean_t (ln s_t + 2), analytic.
  kl = H(P_S, P_T) - H(P_S), per sample, in nats.
- power: squared distance of the time-averaged STFT power of x and y.
- perceptual (optional): squared distance of a Deep Speech 2 bundle's
  conv-frontend activations on x and y (`distill.recognizer`); no recognizer,
  no term.
- contrastive: - gamma * KL(P_S(c) || P_T(c')), c' the conditioning of
  another crop of the batch (rolled by one; time-reversed when B = 1).

The teacher bundle path is `distill.teacher` (not in the model config:
models hold no paths). The student's conditioning (cond_kind,
cond_channels, hop, speakers) must equal the teacher's.
"""
from __future__ import annotations

import copy
import dataclasses
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kernels import pack_sparse_layers
from models.bundle import load_bundle, save_bundle
from models.config import config_to_dict
from models.logistic_mixture import logistic_entropy, logistic_noise, mol_log_density
from models.parallel_wavenet import ParallelWaveNet, ParallelWaveNetConfig, export_onnx
from models.registry import bundle_tensors, model_from_bundle
from training.checkpoint import load_checkpoint
from training.config import LoopConfig, OptimConfig
from training.objective import Objective
from training.sparsity import SparsityConfig
from training.objectives.wavenet import SpeechData, WaveNetDataConfig, crop_audio

MATCHING = ("sample_rate", "hop_length", "cond_kind", "cond_channels", "n_speakers")


@dataclasses.dataclass(frozen=True)
class DistillConfig:
    teacher: str = ""  # bundle directory of a trained "wavenet" (required)
    samples: int = 4  # student draws per timestep for the cross-entropy
    power_weight: float = 1.0
    power_n_fft: int = 512
    perceptual_weight: float = 1.0  # used only with a recognizer
    recognizer: str = ""  # Deep Speech 2 bundle; empty: no perceptual loss
    contrastive_weight: float = 0.3


@dataclasses.dataclass(frozen=True)
class ParallelWaveNetRunConfig:
    model: ParallelWaveNetConfig = ParallelWaveNetConfig()
    data: WaveNetDataConfig = WaveNetDataConfig()
    distill: DistillConfig = DistillConfig()
    optim: OptimConfig = OptimConfig(lr=2e-4)
    loop: LoopConfig = LoopConfig(max_steps=20000, batch_size=4)
    # sparse student (issue 13): the flows' dilated convs and their residual, skip and first output
    # 1x1s (the per-sample work) in (4, 1) blocks of output channels; export packs them for
    # kernels/conv.py. The conditioning projections run at the frame rate (1/80 of the work) and stay dense.
    sparsity: SparsityConfig = SparsityConfig(
        include=(r"flows\.\d+\.(dilated|res|skip)\.\d+\.weight", r"flows\.\d+\.out1\.weight"),
        block=(4, 1), min_size=64)
    init_checkpoint: str = ""  # a run checkpoint (.pt) whose student weights start this run (fine-tuning)


def average_power(audio: torch.Tensor, n_fft: int) -> torch.Tensor:
    """(B, T) -> (B, n_fft // 2 + 1): |STFT|^2 averaged over frames (hop n_fft / 4)."""
    window = torch.hann_window(n_fft, dtype=audio.dtype, device=audio.device)
    spec = torch.stft(audio, n_fft, n_fft // 4, window=window, center=True, return_complex=True)
    return (spec.real ** 2 + spec.imag ** 2).mean(-1)


def cross_entropy(teacher_params: torch.Tensor, mean: torch.Tensor, log_s: torch.Tensor, samples: int,
                  log_scale_min: float) -> torch.Tensor:
    """Monte-Carlo H(P_S, P_T) per sample: (B, T, 3K), (B, T), (B, T) -> scalar."""
    eps = logistic_noise((samples, *mean.shape), dtype=mean.dtype, device=mean.device)
    draws = mean.unsqueeze(0) + torch.exp(log_s).unsqueeze(0) * eps  # (S, B, T)
    return -mol_log_density(teacher_params.unsqueeze(0), draws, log_scale_min).mean()


def other_conditioning(cond: torch.Tensor, speaker: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Conditioning of another crop: batch rolled by one, or time-reversed for B = 1."""
    if cond.shape[0] > 1:
        return cond.roll(1, 0), speaker.roll(1, 0)
    return cond.flip(1), speaker


class Recognizer(nn.Module):
    """A Deep Speech 2 bundle's log-mel and conv frontend as a frozen feature map: (B, T) -> (B, T', D)."""

    def __init__(self, path: str):
        super().__init__()
        from models.deepspeech2.features import LogMel
        from models.features import FeatureConfig

        bundle = load_bundle(path)
        if bundle.model_type != "deepspeech2":
            raise ValueError(f"{path}: the perceptual loss needs a deepspeech2 bundle, not {bundle.model_type}")
        self.model = model_from_bundle(bundle)
        self.logmel = LogMel(FeatureConfig.from_dict(bundle.manifest["feature_config"]))
        self.requires_grad_(False)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        self.model.eval()
        feats = self.logmel(audio)
        lengths = torch.full((audio.shape[0],), feats.shape[1], dtype=torch.long, device=audio.device)
        return self.model.encode(feats, lengths)[0]


class ParallelWaveNetObjective(Objective):
    name = "parallel-wavenet"
    config_cls = ParallelWaveNetRunConfig
    model_type = "parallel-wavenet"
    task = "tts"

    def __init__(self, config: ParallelWaveNetRunConfig):
        super().__init__(config)
        if not config.distill.teacher:
            raise ValueError("parallel-wavenet needs a teacher: distill.teacher=BUNDLE (a trained wavenet bundle)")
        self.teacher_bundle = load_bundle(config.distill.teacher)
        if self.teacher_bundle.model_type != "wavenet":
            raise ValueError(f"{config.distill.teacher}: teacher must be a wavenet bundle, "
                             f"not {self.teacher_bundle.model_type}")
        tcfg = self.teacher_bundle.manifest["model_config"]
        bad = [f"{k}: student {getattr(config.model, k)!r}, teacher {tcfg[k]!r}" for k in MATCHING
               if tcfg.get(k) != getattr(config.model, k)]
        if bad:
            raise ValueError("student and teacher conditioning differ (set model.X to the teacher's): " + "; ".join(bad))
        speakers = self.teacher_bundle.manifest["frontend_config"].get("speakers")
        self.data = SpeechData(config, list(speakers) if speakers else None)

    def build_modules(self):
        teacher = model_from_bundle(self.teacher_bundle)
        teacher.requires_grad_(False)
        modules = {"model": ParallelWaveNet(self.config.model), "teacher": teacher}
        if self.config.init_checkpoint:
            modules["model"].load_state_dict(load_checkpoint(self.config.init_checkpoint)["modules"]["model"])
        d = self.config.distill
        if d.recognizer and d.perceptual_weight > 0:
            modules["recognizer"] = Recognizer(d.recognizer)
        return modules

    def optimizer_groups(self, modules):
        return {"main": list(modules["model"].parameters())}

    def train_dataset(self):
        return self.data.dataset("train")

    def val_dataset(self):
        return self.data.val_dataset()

    def losses(self, modules, batch) -> dict[str, torch.Tensor]:
        student, teacher, d = modules["model"], modules["teacher"], self.config.distill
        teacher.eval()
        pad, real = self.config.data.pad_frames, crop_audio(batch["samples"])
        cond, speaker = batch["cond"], batch["speaker"]
        z = logistic_noise(real.shape, dtype=real.dtype, device=real.device)
        x, mean, log_s = student(z, cond, speaker, cond_offset=pad)
        lsm = teacher.config.log_scale_min
        entropy = logistic_entropy(log_s).mean()
        ce = cross_entropy(teacher(x, cond, speaker, cond_offset=pad), mean, log_s, d.samples, lsm)
        out = {"kl": ce - entropy, "cross_entropy": ce, "entropy": entropy}
        loss = out["kl"]
        if d.power_weight:
            diff = average_power(x, d.power_n_fft) - average_power(real, d.power_n_fft)
            out["power"] = diff.pow(2).mean()
            loss = loss + d.power_weight * out["power"]
        if "recognizer" in modules:
            rec = modules["recognizer"]
            out["perceptual"] = (rec(x) - rec(real)).pow(2).mean()
            loss = loss + d.perceptual_weight * out["perceptual"]
        if d.contrastive_weight:
            c2, s2 = other_conditioning(cond, speaker)
            ce2 = cross_entropy(teacher(x, c2, s2, cond_offset=pad), mean, log_s, d.samples, lsm)
            out["kl_other"] = ce2 - entropy
            loss = loss - d.contrastive_weight * out["kl_other"]
        out["loss"] = loss
        return out

    def train_step(self, modules, batch, step, steps):
        losses = self.losses(modules, batch)
        steps.step("main", losses["loss"])
        return {k: v.item() for k, v in losses.items()}

    @torch.no_grad()
    def val_step(self, modules, batch):
        return {k: v.item() for k, v in self.losses(modules, batch).items()}

    # --- bundle: weights plus the ONNX graph (dense) or packed sparse convs ------------------
    def export(self, modules: dict[str, nn.Module], out: str, provenance: dict[str, Any], package_version: str):
        """Dense students ship model.onnx (engine onnx); pruned ones (a `sparsity` section) ship their
        pruned convs packed (kernels/sparse_layers.py), run by the packed runtime (engine torch)."""
        model = modules["model"].cpu().eval()
        teacher = self.teacher_bundle.manifest
        provenance = {**provenance, "teacher": {"bundle": str(self.config.distill.teacher),
                                                "weights_sha256": teacher["files"]["weights.safetensors"]["sha256"]}}
        sparsity, defaults = self.sparsity_report(modules), self.inference_defaults()
        if self.sparsifier is not None:
            model = copy.deepcopy(model)
            sparsity["packed"] = pack_sparse_layers(model, min_sparsity=0.5)
            defaults["engine"] = "torch"
        with tempfile.TemporaryDirectory() as tmp:
            assets = {} if self.sparsifier is not None else {"model.onnx": export_onnx(model, Path(tmp) / "model.onnx")}
            return save_bundle(
                out, model_type=self.model_type, task=self.task, model_config=config_to_dict(self.config.model),
                tensors=bundle_tensors(model), feature_config=self.data.feature_config(),
                frontend_config=self.data.frontend_config(), inference_defaults=defaults, sparsity=sparsity or None,
                provenance=provenance, licence=self.data.licence(), package_version=package_version, assets=assets)

    def inference_defaults(self):
        return {"engine": "onnx", "threads": 2, "seed": 0}


def evaluate_copy_synthesis(teacher_path: str, student_path: str, root: str, split: str = "test", limit: int = 4,
                            teacher_seconds: float = 0.5, seed: int = 0, wer: bool = False) -> dict[str, Any]:
    """Copy-synthesis from log-mel on held-out utterances (mel-conditioned bundles): log-mel L1
    distance to the reference for the student (whole utterance) and the teacher (its first
    `teacher_seconds`: it is slow), next to two floors, silence and white noise at the
    reference's power; plus the teacher's bits per sample on the reference audio, and STOI and
    wide-band PESQ where `pystoi` and `pesq` are installed (they are optional). With `wer`,
    pocketsphinx WER of the student's whole utterances next to the reference audio's (the
    teacher's short spans are not transcribed)."""
    import json

    import numpy as np

    from models.audio import read_audio
    from models.features import log_mel
    from training.objectives.wavernn import mel_config, utterance_features

    teacher = model_from_bundle(load_bundle(teacher_path))
    student = model_from_bundle(load_bundle(student_path))
    if teacher.config.cond_kind != "mel" or student.config.cond_kind != "mel":
        raise ValueError("copy-synthesis needs mel-conditioned teacher and student bundles")
    fc = mel_config(student.config)
    rows = [json.loads(x) for x in (Path(root) / "labels.jsonl").read_text().splitlines() if x.strip()]
    rows = [r for r in rows if r["split"] == split][:limit]
    if not rows:
        raise ValueError(f"{root}: no {split} utterances")
    g = torch.Generator().manual_seed(seed)
    scorers = speech_scorers(fc.sample_rate)

    def distance(a: np.ndarray, b: np.ndarray) -> float:
        n = min(len(a), len(b))
        ma, mb = (log_mel(torch.from_numpy(np.ascontiguousarray(v[:n], np.float32)), fc) for v in (a, b))
        return float((ma - mb).abs().mean())

    out: dict[str, list[float]] = {k: [] for k in ("student", "teacher", "student_same_span", "silence", "noise",
                                                    "teacher_bits_per_sample")}
    students, refs = [], []
    for row in rows:
        ref, _ = read_audio(Path(root) / "wavs" / f"{row['id']}.wav")
        cond = utterance_features(row, student.config, ref)[None].float()
        spk = torch.zeros(1, dtype=torch.long)
        n = cond.shape[1] * fc.hop_length
        ref = ref[:n]
        with torch.no_grad():
            x = student.generate(cond, spk, seed=seed)[0].numpy()
            m = int(teacher_seconds * fc.sample_rate)
            y = teacher.generate(cond, spk, torch.rand(1, m, 2, generator=g))[0].numpy()
            lp = teacher.log_prob(torch.from_numpy(np.round(ref * 32768) / 32768).float()[None], cond, spk)
        students.append(x)
        refs.append(ref)
        out["student"].append(distance(x, ref))
        out["student_same_span"].append(distance(x[:m], ref[:m]))
        out["teacher"].append(distance(y, ref[:m]))
        out["silence"].append(distance(np.zeros_like(ref), ref))
        noise = np.random.default_rng(seed).standard_normal(len(ref)) * ref.std()
        out["noise"].append(distance(noise, ref))
        out["teacher_bits_per_sample"].append(float(-lp.mean() / np.log(2)))
        for name, score in scorers.items():  # reference first, then the degraded signal
            for key, (a, b) in {"student": (ref, x), "student_same_span": (ref[:m], x[:m]),
                                "teacher": (ref[:m], y), "noise": (ref, noise)}.items():
                out.setdefault(f"{name}_{key}", []).append(score(a, b))
    result = {"split": split, "utterances": len(rows), "teacher_seconds": teacher_seconds,
              **{k if k == "teacher_bits_per_sample" or k.startswith(tuple(scorers)) else f"logmel_l1_{k}":
                 float(np.nanmean(v)) for k, v in out.items()}}
    if wer:
        from training.objectives.tts_eval import pocketsphinx_texts, word_error_rate

        texts = [r.get("normalized", r["text"]) for r in rows]
        result["wer_pocketsphinx_student"] = word_error_rate(texts, pocketsphinx_texts(students, fc.sample_rate))
        result["wer_pocketsphinx_reference"] = word_error_rate(texts, pocketsphinx_texts(refs, fc.sample_rate))
    return result


def speech_scorers(sample_rate: int) -> dict[str, Any]:
    """STOI and wide-band PESQ, each (reference, degraded) -> float, for the packages that are
    installed; PESQ is NaN where it finds no speech in a signal."""
    import numpy as np

    scorers = {}
    try:
        from pystoi import stoi

        scorers["stoi"] = lambda ref, deg: float(stoi(np.float64(ref), np.float64(deg), sample_rate))
    except ImportError:
        pass
    try:
        from pesq import PesqError, pesq

        def wide_band_pesq(ref, deg):
            try:
                return float(pesq(sample_rate, np.float64(ref), np.float64(deg), "wb"))
            except PesqError:
                return float("nan")
        scorers["pesq"] = wide_band_pesq
    except ImportError:
        pass
    return scorers
