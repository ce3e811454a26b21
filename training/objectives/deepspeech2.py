"""Deep Speech 2 training: CTC over characters, SortaGrad, augmentation, LM export.

The corpus is the LJSpeech layout written by `sparsewave data speech`
(wavs/ID.wav) with labels.jsonl rows holding at least `id`, `text` and
`split` (train / valid / test; the test split holds out whole voices and
sentences). Training reads `data.train_split`, validation `data.val_split`.
"""
from __future__ import annotations

import dataclasses
import gzip
import shutil
import tempfile
from pathlib import Path
from typing import Any

import jiwer
import numpy as np
import soundfile as sf
import torch
from torch.nn import functional as F

from models.bundle import save_bundle
from models.config import config_to_dict
from models.deepspeech2.decode import BeamConfig, greedy_labels, labels_to_text
from models.deepspeech2.features import LogMel, asr_feature_config
from models.features import FeatureConfig
from models.deepspeech2.model import DeepSpeech2, DeepSpeech2Config
from models.deepspeech2.runtime import LM_ASSET, export_onnx
from models.deepspeech2.text import encode, normalize_transcript
from models.registry import bundle_tensors
from training.checkpoint import load_checkpoint
from training.config import LoopConfig, OptimConfig
from training.data.readers import read_labels
from training.objective import Objective


@dataclasses.dataclass(frozen=True)
class DeepSpeech2DataConfig:
    root: str = "data/speech"
    # more corpora whose `train_split` rows join training (e.g. `--voices asr-extra`); validation stays on root
    extra_roots: tuple[str, ...] = ()
    train_split: str = "train"
    val_split: str = "valid"
    max_seconds: float = 15.0  # longer utterances are skipped
    val_items: int = 256  # 0: the whole validation split
    augment: bool = True
    # light: gain, white noise and tempo below; pipeline: training/data/augment.py's random_augment
    # (speed 0.9/1/1.1, reverb, white/pink noise at 5-30 dB SNR, gain)
    augment_recipe: str = "light"
    gain_db: tuple[float, float] = (-12.0, 6.0)
    noise_snr_db: tuple[float, float] = (15.0, 45.0)  # white noise at a random SNR
    noise_prob: float = 0.5
    tempo: tuple[float, float] = (0.9, 1.1)  # resampling-based speed change (pitch moves too)


@dataclasses.dataclass(frozen=True)
class DeepSpeech2DecodeConfig:
    decoder: str = "beam"  # beam | greedy (beam needs lm_path to use an LM)
    lm_path: str = ""  # ARPA from `sparsewave lm build`, shipped in the bundle as lm.arpa
    beam_size: int = 16
    lm_weight: float = 0.5
    word_bonus: float = 1.0
    engine: str = "native"  # native (C recurrent kernel, onnx fallback) | onnx | torch: the bundle's runtime
    onnx: bool = True  # write model.onnx into the bundle


@dataclasses.dataclass(frozen=True)
class DeepSpeech2RunConfig:
    model: DeepSpeech2Config = DeepSpeech2Config()
    features: FeatureConfig = asr_feature_config()
    data: DeepSpeech2DataConfig = DeepSpeech2DataConfig()
    decode: DeepSpeech2DecodeConfig = DeepSpeech2DecodeConfig()
    optim: OptimConfig = OptimConfig(lr=5e-4, grad_clip=400.0, schedule="cosine", warmup_steps=200)
    loop: LoopConfig = LoopConfig(max_steps=20000, batch_size=16, log_every=25, val_every=500, ckpt_every=500)
    init_checkpoint: str = ""  # a run checkpoint (.pt) whose model weights start this run (sparse fine-tuning)
    init_bundle: str = ""  # or an exported bundle whose weights start this run (same model config)


def init_from_bundle(model: DeepSpeech2, path: str) -> None:
    """Load a deepspeech2 bundle's weights into a model built from the same config (float16 -> float32)."""
    from models.bundle import load_bundle
    from models.registry import model_from_bundle

    bundle = load_bundle(path)
    if bundle.model_type != "deepspeech2":
        raise ValueError(f"init_bundle={path} is a {bundle.model_type} bundle, not deepspeech2")
    source = model_from_bundle(bundle)
    if source.config != model.config:
        raise ValueError(f"init_bundle={path}: its model config differs from this run's model config")
    model.load_state_dict(source.state_dict())


def row_text(row: dict[str, Any]) -> str:
    """The transcript of a label row, normalized to the recognizer's alphabet."""
    for key in ("normalized", "normalized_text", "text"):
        if row.get(key):
            return normalize_transcript(row[key])
    raise KeyError(f"label row {row.get('id')} has no text")


def load_wav(path: str, sample_rate: int) -> np.ndarray:
    audio, sr = sf.read(path, dtype="float32", always_2d=True)
    audio = audio.mean(1)
    if sr != sample_rate:
        import soxr

        audio = soxr.resample(audio, sr, sample_rate).astype(np.float32)
    return audio


class SpeechDataset:
    """Items: (log-mel (T, n_mels), labels (L,)); `lengths` (seconds) for SortaGrad."""

    def __init__(self, rows: list[dict[str, Any]], features: FeatureConfig, data: DeepSpeech2DataConfig,
                 augment: bool):
        self.features, self.data, self.augment = features, data, augment
        self.logmel = LogMel(features)
        self.rows = []
        for row in rows:
            seconds = row.get("duration_s") or row.get("duration") or sf.info(row["wav_path"]).duration
            if seconds <= data.max_seconds and encode(row_text(row)):
                self.rows.append({**row, "seconds": float(seconds)})
        self.lengths = [r["seconds"] for r in self.rows]

    def __len__(self) -> int:
        return len(self.rows)

    def audio(self, index: int) -> np.ndarray:
        return load_wav(self.rows[index]["wav_path"], self.features.sample_rate)

    def get(self, index: int, rng: np.random.Generator):
        audio = self.audio(index)
        if self.augment:
            audio = self._augment(audio, rng)
        with torch.no_grad():
            feats = self.logmel(torch.from_numpy(audio)[None])[0]
        return feats, torch.tensor(encode(row_text(self.rows[index])), dtype=torch.long)

    def __getitem__(self, index: int):
        return self.get(index, np.random.default_rng(index))

    def _augment(self, audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        d = self.data
        if d.augment_recipe == "pipeline":
            from training.data.augment import random_augment

            return random_augment(audio, self.features.sample_rate, rng).astype(np.float32)
        if d.augment_recipe != "light":
            raise ValueError(f"data.augment_recipe={d.augment_recipe!r}; choose light or pipeline")
        lo, hi = d.tempo
        if hi > lo:
            import soxr

            factor = rng.uniform(lo, hi)
            audio = soxr.resample(audio, self.features.sample_rate * factor, self.features.sample_rate)
        audio = audio * 10 ** (rng.uniform(*d.gain_db) / 20)
        if rng.random() < d.noise_prob:
            power = float(np.mean(audio ** 2)) + 1e-10
            snr = rng.uniform(*d.noise_snr_db)
            audio = audio + rng.standard_normal(len(audio)) * np.sqrt(power / 10 ** (snr / 10))
        return np.clip(audio, -1.0, 1.0).astype(np.float32)


def collate(items):
    """[(T_i, n_mels), (L_i,)] -> features (B, T, n_mels), lengths (B,), targets (sum L), target lengths (B,)."""
    feats = [f for f, _ in items]
    lengths = torch.tensor([f.shape[0] for f in feats])
    padded = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)
    targets = torch.cat([t for _, t in items])
    return padded, lengths, targets, torch.tensor([len(t) for _, t in items])


def ctc_loss(model: DeepSpeech2, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    feats, lengths, targets, target_lengths = batch
    logits, out_lengths = model(feats, lengths)
    log_probs = logits.float().log_softmax(-1)
    loss = F.ctc_loss(log_probs.transpose(0, 1), targets, out_lengths, target_lengths, blank=0,
                      reduction="mean", zero_infinity=True)
    return loss, log_probs, out_lengths


def error_rates(refs: list[str], hyps: list[str]) -> dict[str, float]:
    """Corpus-level WER and CER (jiwer)."""
    return {"wer": float(jiwer.wer(refs, hyps)), "cer": float(jiwer.cer(refs, hyps))}


class DeepSpeech2Objective(Objective):
    name = "deepspeech2"
    config_cls = DeepSpeech2RunConfig
    model_type = "deepspeech2"
    task = "asr"

    @property
    def sorta_grad(self) -> bool:
        """Shortest utterances first in the first epoch: a curriculum for a fresh model, not a fine-tune."""
        return not (self.config.init_checkpoint or self.config.init_bundle)

    def train_rows(self) -> list[dict[str, Any]]:
        d = self.config.data
        return [row for root in (d.root, *d.extra_roots) for row in read_labels(root, d.train_split)]

    def build_modules(self):
        if self.config.model.n_mels != self.config.features.n_mels:
            raise ValueError("model.n_mels must equal features.n_mels")
        model = DeepSpeech2(self.config.model)
        if self.config.init_checkpoint and self.config.init_bundle:
            raise ValueError("set init_checkpoint or init_bundle, not both")
        if self.config.init_checkpoint:
            model.load_state_dict(load_checkpoint(self.config.init_checkpoint)["modules"]["model"])
        elif self.config.init_bundle:
            init_from_bundle(model, self.config.init_bundle)
        return {"model": model}  # Objective.build() adds the Sparsifier when `sparsity` prunes

    def train_dataset(self):
        return SpeechDataset(self.train_rows(), self.config.features, self.config.data,
                             augment=self.config.data.augment)

    def val_dataset(self):
        rows = read_labels(self.config.data.root, self.config.data.val_split)
        if self.config.data.val_items:
            rows = rows[: self.config.data.val_items]
        return SpeechDataset(rows, self.config.features, self.config.data, augment=False)

    def collate(self, items):
        return collate(items)

    def train_step(self, modules, batch, step, steps):
        loss, _, _ = ctc_loss(modules["model"], batch)
        steps.step("main", loss)
        return {"loss": loss.item()}

    @torch.no_grad()
    def val_step(self, modules, batch):
        loss, log_probs, out_lengths = ctc_loss(modules["model"], batch)
        _, _, targets, target_lengths = batch
        refs, hyps, start = [], [], 0
        for i, n in enumerate(target_lengths.tolist()):
            refs.append(labels_to_text(targets[start:start + n].tolist()))
            start += n
            hyps.append(labels_to_text(greedy_labels(log_probs[i, : out_lengths[i]].cpu().numpy())))
        return {"loss": loss.item(), **error_rates(refs, hyps)}

    # --- export ---------------------------------------------------------------
    def feature_config(self):
        return self.config.features.to_dict()

    def inference_defaults(self):
        d = self.config.decode
        beam = BeamConfig()
        return {"decoder": d.decoder if d.lm_path or d.decoder == "greedy" else "greedy",
                "beam_size": d.beam_size, "lm_weight": d.lm_weight, "word_bonus": d.word_bonus,
                "prune_logp": beam.prune_logp, "max_chars": beam.max_chars, "engine": d.engine}

    def licence(self):
        voices = sorted({row_voice(r) for r in self.train_rows()})
        tools: dict[str, int] = {}
        for voice in voices:
            tool = voice.split(":")[0].split("-")[0]
            tools[tool] = tools.get(tool, 0) + 1
        mbrola = " (MBROLA voices forbid commercial use)" if "mbrola" in tools or "mb" in tools else ""
        return ("weights: same licence as sparsewave; trained on speech synthesized by "
                + ", ".join(f"{n} {t} voice{'s' * (n > 1)}" for t, n in sorted(tools.items()))
                + f" ({', '.join(voices[:40])}{', ...' if len(voices) > 40 else ''}); see each tool's licence{mbrola}")

    def export(self, modules, out, provenance, package_version):
        model = modules["model"].eval()
        d = self.config.decode
        tensors = bundle_tensors(model)
        model.load_bundle_tensors(tensors)  # the float16 rounding, so ONNX holds the very same weights
        with tempfile.TemporaryDirectory() as tmp:
            assets: dict[str, Any] = {}
            if d.onnx:
                assets["model.onnx"] = export_onnx(model, Path(tmp) / "model.onnx")
            if d.lm_path:
                if not Path(d.lm_path).is_file():
                    raise FileNotFoundError(f"decode.lm_path={d.lm_path} does not exist; run `sparsewave lm build`")
                assets[LM_ASSET] = Path(tmp) / LM_ASSET
                with open(d.lm_path, "rb") as src, gzip.open(assets[LM_ASSET], "wb", compresslevel=9) as dst:
                    shutil.copyfileobj(src, dst)
            try:
                licence = self.licence()
            except FileNotFoundError:
                licence = "unspecified (corpus labels not found at export time)"
            return save_bundle(out, model_type=self.model_type, task=self.task,
                               model_config=config_to_dict(self.config.model), tensors=tensors,
                               feature_config=self.feature_config(), inference_defaults=self.inference_defaults(),
                               sparsity=self.sparsity_report(modules), provenance=provenance, licence=licence,
                               package_version=package_version,
                               assets=assets)


# --- evaluation and decoder tuning on a split (eval asr, lm tune, bench) -----
def split_audio(root: str | Path, split: str, limit: int = 0, sample_rate: int = 16000
                ) -> tuple[list[np.ndarray], list[str], list[dict[str, Any]]]:
    rows = read_labels(root, split)
    if not rows:
        raise ValueError(f"{root}/labels.jsonl has no rows in split {split!r}")
    rows = rows[:limit] if limit else rows
    return [load_wav(r["wav_path"], sample_rate) for r in rows], [row_text(r) for r in rows], rows


def evaluate_transcriber(transcriber, audio: list[np.ndarray], refs: list[str], batch_size: int = 16,
                         voices: list[str] | None = None) -> dict[str, Any]:
    """WER/CER and real-time factor (audio seconds per wall second) of a transcriber; per voice if given."""
    import time

    hyps: list[str] = []
    t0 = time.perf_counter()
    for i in range(0, len(audio), batch_size):
        hyps += [t.text for t in transcriber.transcribe_batch(audio[i:i + batch_size])]
    wall = time.perf_counter() - t0
    seconds = sum(len(a) for a in audio) / transcriber.sample_rate
    out: dict[str, Any] = {**error_rates(refs, hyps), "utterances": len(audio), "audio_s": round(seconds, 1),
                           "realtime_factor": seconds / wall}
    if voices:
        out["per_voice"] = {}
        for voice in sorted(set(voices)):
            idx = [i for i, v in enumerate(voices) if v == voice]
            rates = error_rates([refs[i] for i in idx], [hyps[i] for i in idx])
            out["per_voice"][voice] = {k: round(v, 4) for k, v in rates.items()} | {"utterances": len(idx)}
    return out


def row_voice(row: dict[str, Any]) -> str:
    return str(row.get("speaker") or row.get("voice") or "unknown")


def tune_bundle(bundle, root: Path, split: str, limit: int, weights: list[float], bonuses: list[float],
                decoder: str = "beam", engine: str | None = None):
    """Grid-search lm_weight x word_bonus of `decoder` (beam: ours, flashlight: torchaudio's) by WER;
    rewrite the bundle's inference defaults.

    Returns ((best lm_weight, best word_bonus), {(w, b): (wer, cer)}); the
    greedy decode is scored too and wins if no LM setting beats it.
    """
    from models.bundle import MANIFEST, WEIGHTS
    from models.deepspeech2.decode import beam_search
    from models.deepspeech2.runtime import DeepSpeech2Transcriber

    transcriber = DeepSpeech2Transcriber.from_bundle(bundle, decoder=decoder)
    if transcriber.lm is None:
        raise ValueError(f"{bundle.path} has no {LM_ASSET}; export with decode.lm_path set")
    audio, refs, _ = split_audio(root, split, limit, transcriber.sample_rate)
    probs = []
    for i in range(0, len(audio), 16):
        probs += transcriber.log_probs(audio[i:i + 16])
    greedy = [labels_to_text(greedy_labels(p)) for p in probs]
    scores = error_rates(refs, greedy)
    table = {("greedy", "-"): (scores["wer"], scores["cer"])}
    best_key, best = ("greedy", "-"), (scores["wer"], scores["cer"])
    for w in weights:
        for b in bonuses:
            transcriber.beam = beam = dataclasses.replace(transcriber.beam, lm_weight=w, word_bonus=b)
            if decoder == "flashlight":
                transcriber._flashlight = None  # rebuilt with the new weights
                hyps = transcriber.flashlight_texts(probs)
            else:
                hyps = [labels_to_text(beam_search(p, transcriber.lm, beam)) for p in probs]
            s = error_rates(refs, hyps)
            table[(w, b)] = (s["wer"], s["cer"])
            if (s["wer"], s["cer"]) < best:
                best_key, best = (w, b), (s["wer"], s["cer"])
    manifest = bundle.manifest
    defaults = dict(manifest.get("inference_defaults", {}))
    if best_key[0] == "greedy":
        defaults["decoder"] = "greedy"
    else:
        defaults.update(decoder=decoder, lm_weight=best_key[0], word_bonus=best_key[1])
    if engine:
        defaults.update(engine=engine, threads=2)
    defaults["tuned_on"] = {"split": split, "utterances": len(audio), "decoder": decoder, "wer": best[0],
                            "cer": best[1]}
    with tempfile.TemporaryDirectory() as tmp:
        assets = {}
        for name in manifest["files"]:
            if name not in (MANIFEST, WEIGHTS):
                assets[name] = Path(tmp) / name
                assets[name].write_bytes(bundle.file(name).read_bytes())
        save_bundle(bundle.path, model_type=bundle.model_type, task=manifest["task"],
                    model_config=manifest["model_config"], tensors=bundle.tensors,
                    feature_config=manifest["feature_config"], frontend_config=manifest["frontend_config"],
                    inference_defaults=defaults, sparsity=manifest["sparsity"], provenance=manifest["provenance"],
                    licence=manifest["licence"], package_version=manifest["package_version"], assets=assets)
    return best_key, table
