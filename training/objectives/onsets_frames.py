"""Onsets and Frames training on MAESTRO-layout data, threshold tuning, and mir_eval evaluation.

Data: any MAESTRO-layout directory (real MAESTRO, or `sparsewave data piano --out DIR`), read through
training.data.readers.read_maestro. Labels come from the MIDI with sustain-pedal extension
(models.midi). Each clip's log-mel and label rolls are computed once; items are random crops.

Losses (Hawthorne et al. 2017/2018): onset, offset and frame BCE (frames weighted near the onset),
velocity squared error only at onset frames. Export tunes the onset and frame thresholds on the
validation split and writes them, with an ONNX graph of the acoustic model, into the bundle.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import mir_eval
import numpy as np
import torch
from torch.nn import functional as F

from kernels import pack_sparse_layers
from models.audio import read_audio, resample
from models.bundle import save_bundle
from models.config import config_to_dict
from models.features import FeatureConfig, log_mel, piano_config
from models.inference import Note
from models.midi import midi_to_notes
from models.onsets_frames import (RULE_KEYS, OnsetsAndFrames, OnsetsFramesConfig, OnsetsFramesTranscriber,
                                  decode_notes, export_onnx)
from models.registry import bundle_tensors
from training.checkpoint import load_checkpoint
from training.config import LoopConfig, OptimConfig
from training.data.readers import PianoRecord, read_maestro
from training.objective import Objective


@dataclasses.dataclass(frozen=True)
class OnsetsFramesDataConfig:
    root: str = "data/piano"
    extra_train_roots: tuple[str, ...] = ()  # more MAESTRO-layout corpora whose train split is added
    train_split: str = "train"
    val_split: str = "validation"
    crop_frames: int = 160  # 5.1 s at 31.25 frames/s
    gain_db: tuple[float, float] = (-9.0, 6.0)  # random level change per crop (0, 0 disables)
    eq_db: float = 0.0  # random smooth EQ per crop, up to about this many dB per band (timbre; 0 disables)
    reverb_prob: float = 0.0  # share of crops given a random room (mel_reverb)
    reverb_rt60_s: tuple[float, float] = (0.2, 1.2)
    reverb_drr_db: tuple[float, float] = (0.0, 12.0)  # direct-to-reverberant energy ratio
    noise_prob: float = 0.0  # share of crops given additive coloured noise (mel_noise)
    noise_snr_db: tuple[float, float] = (10.0, 40.0)
    frame_weight: float = 5.0  # c of the weighted frame loss
    frame_weight_frames: int = 2  # d: frames after the onset weighted by c, then c / (t - t2), at least 1


@dataclasses.dataclass(frozen=True)
class OnsetsFramesDecodeConfig:
    onset_threshold: float = 0.5
    frame_threshold: float = 0.5
    # rules beyond the paper's (models.onsets_frames.decode_notes); peak_picking false, min_note_frames
    # 1 and both thresholds 0 give the paper's rule. These values won on validation (docs/onsets_frames.md).
    peak_picking: bool = True
    min_note_frames: int = 3
    reonset_threshold: float = 0.4
    offset_threshold: float = 0.5
    tune: bool = True  # grid-search both thresholds on the validation split at export
    onset_grid: tuple[float, ...] = (0.05, 0.07, 0.1, 0.15, 0.2, 0.3, 0.5)
    frame_grid: tuple[float, ...] = (0.3, 0.4, 0.5, 0.6)
    tune_extra_roots: tuple[str, ...] = ()  # more MAESTRO-layout corpora whose validation split joins tuning
    chunk_frames: int = 1024  # inference window (32.8 s) ...
    context_frames: int = 64  # ... of which this many on each side are context only
    onnx: bool = True


@dataclasses.dataclass(frozen=True)
class OnsetsFramesRunConfig:
    model: OnsetsFramesConfig = OnsetsFramesConfig()
    features: FeatureConfig = piano_config()
    data: OnsetsFramesDataConfig = OnsetsFramesDataConfig()
    decode: OnsetsFramesDecodeConfig = OnsetsFramesDecodeConfig()
    optim: OptimConfig = OptimConfig(lr=6e-4, grad_clip=3.0, schedule="cosine", warmup_steps=100)
    loop: LoopConfig = LoopConfig(max_steps=3000, batch_size=8, log_every=25, val_every=250, ckpt_every=250)
    init_checkpoint: str = ""  # a run checkpoint (.pt) whose model weights start this run (fine-tuning)


# --- labels ---------------------------------------------------------------------------------------
def mel_reverb(power: np.ndarray, fps: float, rng: np.random.Generator, rt60_s=(0.2, 1.2),
               drr_db=(0.0, 12.0)) -> np.ndarray:
    """(T, n_mels) power -> the same with a random room: the expected power of a convolution with an
    exponentially decaying noise impulse response (-60 dB at rt60, shorter in the high bands), done per
    band on the power frames, with the tail's energy drr_db below the direct sound's."""
    n_mels = power.shape[1]
    rt60 = float(rng.uniform(*rt60_s)) * np.linspace(1.0, float(rng.uniform(0.3, 1.0)), n_mels)
    a = np.exp(-np.log(1e6) / (rt60 * fps))  # power decay per frame
    g = 10 ** (-float(rng.uniform(*drr_db)) / 10) * (1 - a) / a  # tail energy: g * a / (1 - a)
    tail, out = np.zeros(n_mels), power.astype(np.float64)
    for t in range(1, len(power)):
        tail = a * (tail + power[t - 1])
        out[t] += g * tail
    return out.astype(np.float32)


def mel_noise(power: np.ndarray, rng: np.random.Generator, snr_db=(10.0, 40.0)) -> np.ndarray:
    """(T, n_mels) power plus stationary noise of a random spectral tilt at a random SNR (mean powers),
    with per-frame fluctuation (gamma-distributed power, as a band sum of noise bins is)."""
    n_mels = power.shape[1]
    shape = 10 ** (float(rng.uniform(-3.0, 1.0)) * np.linspace(0.0, 1.0, n_mels))  # up to -30..+10 dB tilt
    level = float(power.mean()) * 10 ** (-float(rng.uniform(*snr_db)) / 10) / float(shape.mean())
    return (power + level * shape * rng.gamma(8.0, 1 / 8, power.shape)).astype(np.float32)


def note_rolls(notes: list[Note], n_frames: int, fps: float, min_pitch: int = 21, n_keys: int = 88,
               frame_weight: float = 5.0, weight_frames: int = 2) -> dict[str, np.ndarray]:
    """Notes -> onset, offset, frame, velocity (velocity / 127 at onsets) and frame-loss weight rolls,
    each (n_frames, n_keys) float32. Onset at frame round(onset_s * fps); frames [onset, offset); offset
    at the first frame after the note."""
    rolls = {k: np.zeros((n_frames, n_keys), np.float32) for k in ("onset", "offset", "frame", "velocity")}
    weight = np.ones((n_frames, n_keys), np.float32)
    for n in notes:
        key = n.pitch - min_pitch
        s = int(round(n.onset_s * fps))
        if not 0 <= key < n_keys or s >= n_frames:
            continue
        e = min(max(s + 1, int(round(n.offset_s * fps))), n_frames)
        rolls["onset"][s, key] = 1.0
        rolls["velocity"][s, key] = n.velocity / 127.0
        rolls["frame"][s:e, key] = 1.0
        if e < n_frames:
            rolls["offset"][e, key] = 1.0
        t2 = s + weight_frames
        t = np.arange(s, e)
        w = np.where(t < t2, frame_weight, np.maximum(1.0, frame_weight / np.maximum(t - t2 + 1, 1)))
        weight[s:e, key] = np.maximum(weight[s:e, key], w)
    rolls["weight"] = weight
    return rolls


class PianoDataset:
    """Items: dict of mel (crop_frames, n_mels) and rolls (crop_frames, n_keys), random crops per `get`."""

    def __init__(self, records: list[PianoRecord], features: FeatureConfig, data: OnsetsFramesDataConfig,
                 augment: bool, model: OnsetsFramesConfig = OnsetsFramesConfig()):
        if not records:
            raise ValueError("no clips in this split")
        self.features, self.data, self.augment = features, data, augment
        self.records = records
        self.mels, self.rolls = [], []
        for rec in records:
            audio = load_audio(rec.audio_path, features.sample_rate)
            mel = log_mel(audio, features).T.contiguous().numpy()  # (T, n_mels)
            self.mels.append(mel)
            self.rolls.append(note_rolls(midi_to_notes(rec.midi_path), len(mel), features.n_frames_per_second,
                                         model.min_pitch, model.n_keys, data.frame_weight, data.frame_weight_frames))
        self.lengths = [len(m) for m in self.mels]

    def __len__(self) -> int:
        return len(self.records)

    def get(self, index: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        mel, rolls, crop = self.mels[index], self.rolls[index], self.data.crop_frames
        start = int(rng.integers(0, len(mel) - crop + 1)) if len(mel) > crop else 0
        mel = mel[start:start + crop]
        item = {k: r[start:start + crop] for k, r in rolls.items()}
        if self.augment:
            mel = self._room_and_noise(mel, rng)
        if self.augment and self.data.gain_db[1] > self.data.gain_db[0]:
            shift = float(rng.uniform(*self.data.gain_db)) / 10 * np.log(10)  # power gain, in ln units
            mel = np.maximum(mel + shift + self._eq(rng, mel.shape[1]), np.log(self.features.log_floor))
        pad = crop - len(mel)
        if pad > 0:
            mel = np.pad(mel, ((0, pad), (0, 0)), constant_values=np.log(self.features.log_floor))
            item = {k: np.pad(r, ((0, pad), (0, 0)), constant_values=1.0 if k == "weight" else 0.0)
                    for k, r in item.items()}
        return {"mel": torch.from_numpy(np.ascontiguousarray(mel, dtype=np.float32)),
                **{k: torch.from_numpy(np.ascontiguousarray(r)) for k, r in item.items()}}

    def __getitem__(self, index: int):
        return self.get(index, np.random.default_rng(index))

    def _room_and_noise(self, mel: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Random reverb and noise (each with its probability) on a log-mel crop; no draws when both are off."""
        d = self.data
        reverb = d.reverb_prob > 0 and rng.random() < d.reverb_prob
        noise = d.noise_prob > 0 and rng.random() < d.noise_prob
        if not (reverb or noise):
            return mel
        power = np.exp(mel)
        if reverb:
            power = mel_reverb(power, self.features.n_frames_per_second, rng, d.reverb_rt60_s, d.reverb_drr_db)
        if noise:
            power = mel_noise(power, rng, d.noise_snr_db)
        return np.log(np.maximum(power, self.features.log_floor))

    def _eq(self, rng: np.random.Generator, n_mels: int) -> np.ndarray:
        """A smooth random curve over the mel bins, in ln power: a few low-order cosines (another
        instrument's or room's spectral envelope, which held-out sample sets differ in)."""
        if self.data.eq_db <= 0:
            return np.zeros(n_mels, np.float32)
        f = np.arange(n_mels) / n_mels
        db = sum(rng.uniform(-1, 1) * np.cos(np.pi * k * f + rng.uniform(0, np.pi)) for k in range(1, 4))
        return (db * self.data.eq_db / 3 / 10 * np.log(10)).astype(np.float32)


def load_audio(path, sample_rate: int) -> np.ndarray:
    audio, sr = read_audio(path)
    return resample(audio, sr, sample_rate)


def split_records(root: str | Path, split: str) -> list[PianoRecord]:
    records = [r for r in read_maestro(root) if r.split == split]
    if not records:
        raise ValueError(f"{root}: no clips in split {split!r}")
    return records


def losses(model: OnsetsAndFrames, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Each loss term and their sum ("loss")."""
    out = model(batch["mel"])
    bce = F.binary_cross_entropy_with_logits
    onset = bce(out["onset"].float(), batch["onset"])
    offset = bce(out["offset"].float(), batch["offset"])
    frame = (bce(out["frame"].float(), batch["frame"], reduction="none") * batch["weight"]).mean()
    # velocity error only where a note starts, averaged over onsets (Hawthorne et al. 2018)
    mask = batch["onset"]
    velocity = (mask * (out["velocity"].float() - batch["velocity"]) ** 2).sum() / mask.sum().clamp(min=1.0)
    return {"loss": onset + offset + frame + velocity, "onset": onset, "offset": offset, "frame": frame,
            "velocity": velocity, "_frame_logits": out["frame"]}


# --- metrics ------------------------------------------------------------------------------------
def _intervals(notes: list[Note]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not notes:
        return np.zeros((0, 2)), np.zeros(0), np.zeros(0)
    iv = np.array([[n.onset_s, max(n.offset_s, n.onset_s + 1e-3)] for n in notes], dtype=float)
    return iv, mir_eval.util.midi_to_hz(np.array([n.pitch for n in notes], float)), np.array(
        [n.velocity for n in notes], float)


def _frame_lists(notes: list[Note], times: np.ndarray) -> list[np.ndarray]:
    freqs = [[] for _ in times]
    for n in notes:
        for i in np.flatnonzero((times >= n.onset_s) & (times < n.offset_s)):
            freqs[i].append(mir_eval.util.midi_to_hz(n.pitch))
    return [np.array(sorted(f)) for f in freqs]


def note_metrics(ref: list[Note], est: list[Note], fps: float = 31.25) -> dict[str, float]:
    """mir_eval note P/R/F1 (onset within 50 ms), with offsets (within max(50 ms, 20%)), with offsets
    and velocity, and frame P/R/F1 (mir_eval.multipitch on a grid of 1 / fps)."""
    from mir_eval import multipitch, transcription, transcription_velocity

    ri, rp, rv = _intervals(ref)
    ei, ep, ev = _intervals(est)
    out = {}
    for name, kwargs in (("note", {"offset_ratio": None}), ("note_offset", {})):
        p, r, f, _ = transcription.precision_recall_f1_overlap(ri, rp, ei, ep, onset_tolerance=0.05, **kwargs)
        out.update({f"{name}_precision": p, f"{name}_recall": r, f"{name}_f1": f})
    p, r, f, _ = transcription_velocity.precision_recall_f1_overlap(ri, rp, rv, ei, ep, ev, onset_tolerance=0.05)
    out.update({"note_offset_velocity_precision": p, "note_offset_velocity_recall": r,
                "note_offset_velocity_f1": f})
    end = max([n.offset_s for n in ref + est], default=0.0)
    times = np.arange(int(np.ceil(end * fps)) + 1) / fps
    scores = multipitch.evaluate(times, _frame_lists(ref, times), times, _frame_lists(est, times))
    p, r = scores["Precision"], scores["Recall"]
    out.update({"frame_precision": p, "frame_recall": r, "frame_f1": 2 * p * r / (p + r) if p + r > 0 else 0.0})
    return {k: float(v) for k, v in out.items()}


def mean_metrics(per_clip: list[dict[str, float]]) -> dict[str, float]:
    """Per-clip metrics averaged over clips (as the MAESTRO paper reports them)."""
    return {k: float(np.mean([m[k] for m in per_clip])) for k in per_clip[0]}


def evaluate_transcriber(transcriber: OnsetsFramesTranscriber, records: list[PianoRecord]) -> dict[str, Any]:
    """Mean per-clip metrics on records, plus the real-time factor (audio seconds per wall second)."""
    per_clip, audio_s, wall = [], 0.0, 0.0
    for rec in records:
        audio = load_audio(rec.audio_path, transcriber.sample_rate)
        t0 = time.perf_counter()
        est = transcriber.transcribe(audio)
        wall += time.perf_counter() - t0
        audio_s += len(audio) / transcriber.sample_rate
        per_clip.append(note_metrics(midi_to_notes(rec.midi_path), est))
    return {**mean_metrics(per_clip), "clips": len(records), "audio_seconds": round(audio_s, 1),
            "realtime_factor": audio_s / max(wall, 1e-9)}


def tune_thresholds(transcriber: OnsetsFramesTranscriber, records: list[PianoRecord], onset_grid, frame_grid
                    ) -> tuple[float, float, dict[str, float]]:
    """Grid search of (onset, frame) thresholds maximizing mean(note F1, note-with-offset F1), with the
    transcriber's other decoding rules."""
    clips = []
    for rec in records:
        acts = transcriber.activations(load_audio(rec.audio_path, transcriber.sample_rate))
        clips.append((acts, midi_to_notes(rec.midi_path)))
    fps = transcriber.features.n_frames_per_second
    best = (-1.0, 0.5, 0.5, {})
    for on in onset_grid:
        for fr in frame_grid:
            per_clip = [note_metrics(ref, decode_notes(a["onset"], a["frame"], a["velocity"], on, fr, fps,
                                                       transcriber.model.config.min_pitch, offset=a["offset"],
                                                       **transcriber.rules)) for a, ref in clips]
            m = mean_metrics(per_clip)
            score = (m["note_f1"] + m["note_offset_f1"]) / 2
            if score > best[0]:
                best = (score, on, fr, m)
    return best[1], best[2], best[3]


def decode_rules(decode: OnsetsFramesDecodeConfig) -> dict[str, Any]:
    """The decoding rules of a decode config, as OnsetsFramesTranscriber and the bundle take them."""
    return {k: getattr(decode, k) for k in RULE_KEYS}


def retune_bundle(bundle_dir: str | Path, out: str | Path, roots: list[str], split: str = "validation",
                  decode: OnsetsFramesDecodeConfig = OnsetsFramesDecodeConfig()) -> dict[str, Any]:
    """A copy of an onsets-frames bundle at `out` (the same weights and ONNX graph) whose decoding is
    `decode`'s rules with both thresholds tuned on `split` of `roots`. Returns the new inference_defaults."""
    from models.bundle import MANIFEST, WEIGHTS, load_bundle
    from models.registry import model_from_bundle

    bundle = load_bundle(bundle_dir)
    if bundle.model_type != "onsets-frames":
        raise ValueError(f"{bundle_dir} holds a {bundle.model_type} bundle, not onsets-frames")
    records = [r for root in roots for r in split_records(root, split)]
    manifest = bundle.manifest
    features = FeatureConfig.from_dict(manifest["feature_config"])
    defaults = dict(manifest.get("inference_defaults", {}))
    transcriber = OnsetsFramesTranscriber(model_from_bundle(bundle), features, chunk_frames=defaults.get(
        "chunk_frames", decode.chunk_frames), context_frames=defaults.get("context_frames", decode.context_frames),
        **decode_rules(decode))
    on, fr, metrics = tune_thresholds(transcriber, records, decode.onset_grid, decode.frame_grid)
    defaults.update(onset_threshold=on, frame_threshold=fr, **decode_rules(decode))
    provenance = {**manifest["provenance"], "validation_at_tuned_thresholds": metrics,
                  "tuned_on": {"roots": list(roots), "split": split, "clips": len(records)}}
    assets = {name: bundle.file(name) for name in manifest["files"] if name not in (MANIFEST, WEIGHTS)}
    save_bundle(out, model_type=bundle.model_type, task=manifest["task"], model_config=manifest["model_config"],
                tensors=bundle.tensors, feature_config=manifest["feature_config"],
                frontend_config=manifest.get("frontend_config"), inference_defaults=defaults,
                sparsity=manifest.get("sparsity"), provenance=provenance, licence=manifest["licence"],
                package_version=manifest["package_version"], assets=assets)
    return {**defaults, "validation": metrics}


class OnsetsFramesObjective(Objective):
    name = "onsets-frames"
    config_cls = OnsetsFramesRunConfig
    model_type = "onsets-frames"
    task = "piano"

    def build_modules(self):
        if self.config.model.n_mels != self.config.features.n_mels:
            raise ValueError("model.n_mels must equal features.n_mels")
        model = OnsetsAndFrames(self.config.model)
        if self.config.init_checkpoint:
            model.load_state_dict(load_checkpoint(self.config.init_checkpoint)["modules"]["model"])
        return {"model": model}

    def _dataset(self, split: str, augment: bool, roots: tuple[str, ...] = ()) -> PianoDataset:
        records = [r for root in (self.config.data.root, *roots) for r in split_records(root, split)]
        return PianoDataset(records, self.config.features, self.config.data, augment, self.config.model)

    def train_dataset(self):
        return self._dataset(self.config.data.train_split, augment=True, roots=self.config.data.extra_train_roots)

    def val_dataset(self):
        try:
            return self._dataset(self.config.data.val_split, augment=False)
        except ValueError:
            return None

    def train_step(self, modules, batch, step, steps):
        terms = losses(modules["model"], batch)
        steps.step("main", terms["loss"])
        return {k: v.item() for k, v in terms.items() if not k.startswith("_")}

    @torch.no_grad()
    def val_step(self, modules, batch):
        terms = losses(modules["model"], batch)
        pred, ref = terms.pop("_frame_logits") > 0, batch["frame"] > 0.5
        tp = float((pred & ref).sum())
        f1 = 2 * tp / max(float(pred.sum() + ref.sum()), 1.0)
        return {**{k: v.item() for k, v in terms.items()}, "frame_f1_at_0.5": f1}

    # --- export ---------------------------------------------------------------------------------
    def feature_config(self):
        return self.config.features.to_dict()

    def inference_defaults(self):
        d = self.config.decode
        return {"onset_threshold": d.onset_threshold, "frame_threshold": d.frame_threshold,
                **decode_rules(d), "chunk_frames": d.chunk_frames, "context_frames": d.context_frames,
                "engine": "torch"}

    def licence(self):
        fonts = set()
        splits = (self.config.data.train_split, self.config.data.val_split)
        for root in (self.config.data.root, *self.config.data.extra_train_roots):
            clips = Path(root) / "clips.jsonl"
            if clips.is_file():
                rows = [json.loads(line) for line in clips.read_text().splitlines() if line]
                fonts |= {r.get("soundfont", "?") for r in rows if r.get("split") in splits}
        known = {"FluidR3_GM.sf2": "MIT", "TimGM6mb.sf2": "GPL-2", "MuseScore_General_Lite.sf3": "MIT",
                 "sf_GMbank.sf2": "public domain", "freepats (timidity)": "GPL-2+ with a font exception"}
        used = ", ".join(f"{f} ({known.get(f, 'see its licence')})" for f in sorted(fonts)) or "unknown"
        return ("weights: same licence as sparsewave; trained on piano audio rendered from "
                f"sample sets {used}, from generated MIDI and from music21-corpus encodings of works out of "
                "copyright, some of whose encodings restrict commercial use (music21/corpus/license.txt)")

    def export(self, modules, out, provenance, package_version):
        model = modules["model"].eval()
        d = self.config.decode
        defaults = self.inference_defaults()
        if d.tune:
            records = []
            for root in (self.config.data.root, *d.tune_extra_roots):
                try:
                    records += split_records(root, self.config.data.val_split)
                except (ValueError, FileNotFoundError):
                    pass
            if records:
                transcriber = OnsetsFramesTranscriber(model, self.config.features, chunk_frames=d.chunk_frames,
                                                      context_frames=d.context_frames, **decode_rules(d))
                on, fr, metrics = tune_thresholds(transcriber, records, d.onset_grid, d.frame_grid)
                defaults.update(onset_threshold=on, frame_threshold=fr)
                provenance = {**provenance, "validation_at_tuned_thresholds": metrics,
                              "tuned_on": {"roots": [self.config.data.root, *d.tune_extra_roots],
                                           "split": self.config.data.val_split, "clips": len(records)}}
        sparsity = self.sparsity_report(modules)
        if sparsity:  # packed dense layers run on the kernels (engine torch); the ONNX path stays dense
            model = copy.deepcopy(model)
            sparsity["packed"] = pack_sparse_layers(model, min_sparsity=0.5)
            defaults["engine"] = "torch"
        with tempfile.TemporaryDirectory() as tmp:
            onnx = d.onnx and not sparsity
            assets = {"model.onnx": export_onnx(model, Path(tmp) / "model.onnx")} if onnx else {}
            return save_bundle(out, model_type=self.model_type, task=self.task,
                               model_config=config_to_dict(self.config.model), tensors=bundle_tensors(model),
                               feature_config=self.feature_config(), inference_defaults=defaults,
                               sparsity=sparsity, provenance=provenance,
                               licence=self.licence(), package_version=package_version,
                               assets=assets)
