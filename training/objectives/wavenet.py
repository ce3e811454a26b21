"""WaveNet teacher: maximum likelihood of 16-bit audio under the discretized
mixture of logistics (task "wavenet").

Data: the speech corpus (`sparsewave data speech`), read by WaveRNN's crop
dataset (training/objectives/wavernn.py `SpeechCrops`): random crops of
`crop_frames` conditioning frames with `pad_frames` of context each side for
the conditioning net, and the crop's samples. cond_kind "linguistic" keeps
the MBROLA utterances (the only ones with exact durations and pitch); "mel"
uses every utterance (copy-synthesis), so freely licensed voices (flite,
festival, espeak-ng) work only with "mel".
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import torch

from kernels import pack_sparse_layers
from models.text import FrontendConfig, pho_symbols
from models.wavenet import WaveNet, WaveNetConfig
from training.checkpoint import load_checkpoint
from training.config import LoopConfig, OptimConfig
from training.objective import Objective
from training.sparsity import SparsityConfig
from training.objectives.wavernn import SpeechCrops, corpus_speakers, mel_config


@dataclasses.dataclass(frozen=True)
class WaveNetDataConfig:
    root: str = "data/pwn_speech"
    crop_frames: int = 20  # conditioning frames per crop (crop_frames * hop samples)
    pad_frames: int = 4  # extra frames each side seen by the conditioning net
    voices: tuple[str, ...] = ()  # training voices (speaker ids in this order); empty: all train voices
    max_items: int = 0  # 0: all


@dataclasses.dataclass(frozen=True)
class WaveNetRunConfig:
    model: WaveNetConfig = WaveNetConfig()
    data: WaveNetDataConfig = WaveNetDataConfig()
    optim: OptimConfig = OptimConfig(lr=1e-3)
    loop: LoopConfig = LoopConfig(max_steps=20000, batch_size=8)
    # sparse teacher (issues 12, 13): the stack's dilated convs and 1x1s (the per-sample work of each
    # generation step) in (16, 1) blocks of output channels; export packs them for the sparse kernels.
    # The conditioning projections run at the frame rate and stay dense.
    sparsity: SparsityConfig = SparsityConfig(
        include=(r"stack\.(dilated|res|skip)\.\d+\.weight", r"stack\.out[12]\.weight"), block=(16, 1), min_size=64)
    init_checkpoint: str = ""  # a run checkpoint (.pt) whose weights start this run (fine-tuning)


def crop_audio(samples: torch.Tensor) -> torch.Tensor:
    """SpeechCrops' (B, T + 1) unsigned 16-bit samples (the first is the one before
    the crop) -> (B, T) audio in [-1, 1) on the 16-bit grid."""
    return (samples[:, 1:].to(torch.float32) - 32768.0) / 32768.0


class SpeechData:
    """Dataset, speakers, feature and frontend configs shared by the teacher and the student."""

    def __init__(self, config: Any, speakers: list[str] | None = None):
        self.config = config
        self._sets: dict[str, SpeechCrops] = {}
        self._speakers = speakers

    def speakers(self) -> list[str]:
        if self._speakers is None:
            voices = list(self.config.data.voices) or corpus_speakers(self.config.data.root)
            self._speakers = voices[: self.config.model.n_speakers]
        return self._speakers

    def dataset(self, split: str) -> SpeechCrops:
        if split not in self._sets:
            self._sets[split] = SpeechCrops(self.config, split, {v: i for i, v in enumerate(self.speakers())})
        return self._sets[split]

    def val_dataset(self) -> SpeechCrops | None:
        try:
            return self.dataset("valid")
        except ValueError:  # no usable validation utterances
            return None

    def feature_config(self) -> dict[str, Any]:
        m = self.config.model
        if m.cond_kind == "mel":
            return {"kind": "mel", **mel_config(m).to_dict()}
        return {"kind": "linguistic", "n_symbols": len(pho_symbols()), "frame_rate_hz": 200,
                "speaker_columns": 1}

    def frontend_config(self) -> dict[str, Any]:
        speakers = self.speakers()
        prosody = {v: v for v in speakers if v.startswith("mb-")}
        return {"frontend": FrontendConfig().to_dict(), "speakers": speakers, "prosody_voices": prosody}

    def licence(self) -> str:
        """The voices trained on and the licences their corpus rows carry (e.g. "flite (BSD-like)")."""
        voices = self.speakers()
        labels = Path(self.config.data.root) / "labels.jsonl"
        rows = [json.loads(x) for x in labels.read_text().splitlines() if x.strip()] if labels.is_file() else []
        given = sorted({r["licence"] for r in rows if r.get("voice") in voices and r.get("licence")})
        note = "; MBROLA voice data: non-commercial use only" if any(v.startswith("mb-") for v in voices) else ""
        return (f"code: project licence; trained on synthetic speech from {', '.join(voices)}"
                f"{' (' + '; '.join(given) + ')' if given else ''}{note}")


class WaveNetObjective(Objective):
    name = "wavenet"
    config_cls = WaveNetRunConfig
    model_type = "wavenet"
    task = "tts"

    def __init__(self, config: WaveNetRunConfig):
        super().__init__(config)
        self.data = SpeechData(config)
        self.packed_layers: list[str] = []  # names of the convs export packed

    def build_modules(self):
        model = WaveNet(self.config.model)
        if self.config.init_checkpoint:
            model.load_state_dict(load_checkpoint(self.config.init_checkpoint)["modules"]["model"])
        return {"model": model}

    def train_dataset(self):
        return self.data.dataset("train")

    def val_dataset(self):
        return self.data.val_dataset()

    def losses(self, model, batch) -> dict[str, torch.Tensor]:
        audio = crop_audio(batch["samples"])
        log_p = model.log_prob(audio, batch["cond"], batch["speaker"], cond_offset=self.config.data.pad_frames)
        nll = -log_p.float().mean()
        return {"loss": nll, "bits_per_sample": nll.detach() / math.log(2)}

    def train_step(self, modules, batch, step, steps):
        losses = self.losses(modules["model"], batch)
        steps.step("main", losses["loss"])
        return {k: v.item() for k, v in losses.items()}

    @torch.no_grad()
    def val_step(self, modules, batch):
        return {k: v.item() for k, v in self.losses(modules["model"], batch).items()}

    def export(self, modules, out, provenance, package_version):
        """A pruned teacher (a `sparsity` section) ships its pruned convs packed (kernels/sparse_layers.py):
        `WaveNetStack.step` runs them on the sparse kernels."""
        if self.sparsifier is not None:
            model = copy.deepcopy(modules["model"]).cpu().eval()
            self.packed_layers = pack_sparse_layers(model, min_sparsity=0.5)
            modules = {**modules, "model": model}
        return super().export(modules, out, provenance, package_version)

    def sparsity_report(self, modules):
        report = super().sparsity_report(modules)
        return {**report, "packed": self.packed_layers} if report else report

    def feature_config(self):
        return self.data.feature_config()

    def frontend_config(self):
        return self.data.frontend_config()

    def inference_defaults(self):
        return {"generation": "queue (Fast WaveNet)", "threads": 2}

    def licence(self) -> str:
        return self.data.licence()
