"""Onsets and Frames (Hawthorne et al. 2017; the MAESTRO-era model of 2018) for piano transcription.

Input: 229-bin log-mel at 16 kHz, n_fft 2048, hop 512 (`models.features.piano_config`), 31.25
frames per second, as (B, T, n_mels). Four stacks, each starting with its own acoustic conv stack
(3x3 convs, batch norm, frequency max-pooling, dense):
  onset:    conv stack -> BiLSTM -> dense 88            (logits)
  offset:   conv stack -> BiLSTM -> dense 88            (logits)
  frame:    conv stack -> dense 88 -> sigmoid, concatenated with the gradient-stopped onset and
            offset probabilities -> BiLSTM -> dense 88  (logits)
  velocity: conv stack -> dense 88                      (regression of velocity / 127)
Decoding (Sec. 2.2): a note starts only where the onset detector fires and lasts while the frame
detector (or the onset detector) stays on; optional rules (peak picking, offset head, re-onsets,
minimum length) are tuned on validation and travel in the bundle. Long recordings run in overlapping windows whose central
frames are kept, so the joined activations decode in one pass and notes never break at a join.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
from torch import nn

from models.features import FeatureConfig, log_mel, piano_config
from models.inference import Note


@dataclasses.dataclass(frozen=True)
class OnsetsFramesConfig:
    n_mels: int = 229
    n_keys: int = 88
    min_pitch: int = 21  # MIDI number of key 0 (A0)
    conv_channels: tuple[int, int, int] = (16, 16, 32)  # paper 2017: 32/32/64; MAESTRO: 48/48/96
    dense: int = 256  # paper: 512 / 768
    lstm: int = 64  # per direction; paper: 128 / 256
    conv_dropout: float = 0.25
    dense_dropout: float = 0.5
    # One conv stack feeding all four heads: a CPU-budget deviation from the paper (a third of the
    # compute); False gives each stack its own conv stack as in the paper.
    shared_acoustic: bool = False
    # A dense path from the acoustic features straight to the onset, offset and frame logits, added to
    # the BiLSTM heads' output: on a small CPU budget the BiLSTM heads alone sit at the label prior for
    # a thousand steps; with the skip they learn at once. Not in the paper (False = the paper's heads).
    head_skip: bool = False
    input_shift: float = 0.0  # the network sees (log-mel + input_shift) * input_scale
    input_scale: float = 1.0

    def __post_init__(self):
        if len(self.conv_channels) != 3 or min(self.conv_channels) < 1:
            raise ValueError("conv_channels needs three positive channel counts")
        if self.n_mels < 4:
            raise ValueError("n_mels must be at least 4 (two 2x frequency poolings)")


class ConvStack(nn.Module):
    """(B, T, n_mels) -> (B, T, dense): conv-BN-ReLU x2, pool, conv-BN-ReLU, pool, dense (time kept)."""

    def __init__(self, n_mels: int, channels: tuple[int, int, int], dense: int, conv_dropout: float,
                 dense_dropout: float):
        super().__init__()
        c1, c2, c3 = channels

        def block(c_in, c_out):
            return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]

        self.conv = nn.Sequential(*block(1, c1), *block(c1, c2), nn.MaxPool2d((1, 2)), nn.Dropout(conv_dropout),
                                  *block(c2, c3), nn.MaxPool2d((1, 2)), nn.Dropout(conv_dropout))
        self.fc = nn.Sequential(nn.Linear(c3 * (n_mels // 4), dense), nn.Dropout(dense_dropout))

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.conv(mel.unsqueeze(1))  # (B, C, T, n_mels // 4)
        x = x.transpose(1, 2).flatten(2)  # (B, T, C * n_mels // 4)
        return self.fc(x)


class BiLSTM(nn.Module):
    """(B, T, n_in) -> (B, T, 2 * hidden)."""

    def __init__(self, n_in: int, hidden: int):
        super().__init__()
        self.rnn = nn.LSTM(n_in, hidden, batch_first=True, bidirectional=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rnn(x)[0]


class OnsetsAndFrames(nn.Module):
    def __init__(self, config: OnsetsFramesConfig = OnsetsFramesConfig()):
        super().__init__()
        self.config = c = config

        def conv():
            return ConvStack(c.n_mels, c.conv_channels, c.dense, c.conv_dropout, c.dense_dropout)

        names = ("onset", "offset", "frame", "velocity")
        self.acoustic = nn.ModuleDict({"shared": conv()} if c.shared_acoustic else {k: conv() for k in names})
        self.onset_head = nn.Sequential(BiLSTM(c.dense, c.lstm), nn.Linear(2 * c.lstm, c.n_keys))
        self.offset_head = nn.Sequential(BiLSTM(c.dense, c.lstm), nn.Linear(2 * c.lstm, c.n_keys))
        self.frame_head = nn.Sequential(nn.Linear(c.dense, c.n_keys), nn.Sigmoid())
        self.combined_head = nn.Sequential(BiLSTM(3 * c.n_keys, c.lstm), nn.Linear(2 * c.lstm, c.n_keys))
        self.velocity_head = nn.Linear(c.dense, c.n_keys)
        self.skip = nn.ModuleDict({k: nn.Linear(c.dense, c.n_keys) for k in ("onset", "offset", "frame")}
                                  if c.head_skip else {})
        # output biases start at the labels' rough log-odds (onsets and offsets ~1%, frames ~5% of
        # cells), so the first steps learn features rather than the prior
        for head, bias in ((self.onset_head, -4.6), (self.offset_head, -4.6), (self.combined_head, -3.0)):
            nn.init.constant_(head[-1].bias, bias)
        for name, lin in self.skip.items():
            nn.init.zeros_(lin.bias)

    def forward(self, mel: torch.Tensor) -> dict[str, torch.Tensor]:
        """Training path. mel: (B, T, n_mels) -> onset/offset/frame logits and velocity, each (B, T, n_keys)."""
        mel = (mel + self.config.input_shift) * self.config.input_scale
        if self.config.shared_acoustic:
            shared = self.acoustic["shared"](mel)
            feats = dict.fromkeys(("onset", "offset", "frame", "velocity"), shared)
        else:
            feats = {k: stack(mel) for k, stack in self.acoustic.items()}
        onset = self.onset_head(feats["onset"])
        offset = self.offset_head(feats["offset"])
        if self.config.head_skip:
            onset = onset + self.skip["onset"](feats["onset"])
            offset = offset + self.skip["offset"](feats["offset"])
        # the frame stack sees the onset and offset predictions but sends no gradient into them
        gated = torch.cat([self.frame_head(feats["frame"]), torch.sigmoid(onset).detach(),
                           torch.sigmoid(offset).detach()], -1)
        frame = self.combined_head(gated)
        if self.config.head_skip:
            frame = frame + self.skip["frame"](feats["frame"])
        return {"onset": onset, "offset": offset, "frame": frame, "velocity": self.velocity_head(feats["velocity"])}

    @torch.no_grad()
    def infer(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Inference path (and the ONNX graph). mel: (B, T, n_mels) -> onset, offset, frame probabilities
        and velocity in [0, 1], each (B, T, n_keys)."""
        out = self.forward(mel)
        return (torch.sigmoid(out["onset"]), torch.sigmoid(out["offset"]), torch.sigmoid(out["frame"]),
                out["velocity"].clamp(0.0, 1.0))


class _InferGraph(nn.Module):
    def __init__(self, model: OnsetsAndFrames):
        super().__init__()
        self.model = model

    def forward(self, mel):
        return self.model.infer(mel)


OUTPUTS = ("onset", "offset", "frame", "velocity")


def export_onnx(model: OnsetsAndFrames, path: str | Path, n_frames: int = 64) -> Path:
    """The acoustic model's `infer` as ONNX: input "mel" (B, T, n_mels), outputs onset/offset/frame/velocity."""
    model = model.eval()
    example = torch.zeros(1, n_frames, model.config.n_mels)
    # the exporter restores the wrapper's mode afterwards, so the wrapper must be in eval mode too
    torch.onnx.export(_InferGraph(model).eval(), (example,), str(path), input_names=["mel"],
                      output_names=list(OUTPUTS), opset_version=17, dynamo=False,
                      dynamic_axes={"mel": {0: "batch", 1: "frames"}, **{k: {0: "batch", 1: "frames"} for k in OUTPUTS}})
    return Path(path)


# --- decoding ---------------------------------------------------------------------------------
# Decoding settings beyond the two thresholds, as named in a bundle's inference_defaults. Their defaults
# give the paper's rule; docs/onsets_frames.md ("Decoding") has what each is worth on validation.
RULE_KEYS = ("peak_picking", "min_note_frames", "reonset_threshold", "offset_threshold")


def decode_notes(onset: np.ndarray, frame: np.ndarray, velocity: np.ndarray | None = None,
                 onset_threshold: float = 0.5, frame_threshold: float = 0.5, frames_per_second: float = 31.25,
                 min_pitch: int = 21, *, offset: np.ndarray | None = None, peak_picking: bool = False,
                 min_note_frames: int = 1, reonset_threshold: float = 0.0,
                 offset_threshold: float = 0.0) -> list[Note]:
    """Activations (T, n_keys) -> notes, sorted by onset then pitch.

    The paper's rule (the defaults): a note starts at a frame where the onset probability reaches
    `onset_threshold` and did not on the frame before; it lasts while the frame (or onset) probability
    stays at or above its threshold, and ends early where a new onset of the same key starts.
    Velocity: the velocity output at the onset frame, times 127. Times are frame / frames_per_second.

    Further rules, each off by default:
    - peak_picking: onsets at the local maxima of the onset probability (at or above the threshold)
      instead of the first frame of each run above it; a low threshold then still times notes at the peak.
    - offset_threshold > 0: a frame whose offset probability reaches it ends the note (unless the
      onset detector is on there).
    - reonset_threshold: an onset while the key still sounds from its previous note (every frame since
      that note's start on, the frame before on by the frame detector) starts a new note only if its
      onset probability reaches this; weaker ones are taken for the held note's own onset ripple.
    - min_note_frames: notes shorter than this many frames are dropped (a real note keeps the frame
      detector on for a while; a one- or two-frame blip is mostly an overtone's onset).
    """
    n_frames, n_keys = onset.shape
    on = onset >= onset_threshold
    held = frame >= frame_threshold
    active = on | held
    if offset is not None and offset_threshold > 0:
        active &= on | (offset < offset_threshold)
    if peak_picking:
        before = np.concatenate([np.full((1, n_keys), -1.0), onset[:-1]])
        after = np.concatenate([onset[1:], np.full((1, n_keys), -1.0)])
        rise = on & (onset > before) & (onset >= after)
    else:
        rise = on.copy()
        rise[1:] &= ~on[:-1]
    inactive_at = [np.append(np.flatnonzero(~active[:, key]), n_frames) for key in range(n_keys)]
    notes = []
    for key in range(n_keys):
        starts = np.flatnonzero(rise[:, key])
        if starts.size == 0:
            continue
        off = inactive_at[key]
        if reonset_threshold > 0 and starts.size > 1:
            kept = [starts[0]]
            for s in starts[1:]:
                sounding = off[np.searchsorted(off, kept[-1])] >= s and held[s - 1, key]
                if not sounding or onset[s, key] >= reonset_threshold:
                    kept.append(s)
            starts = np.array(kept)
        ends = off[np.searchsorted(off, starts + 1)]  # first inactive frame after each start
        ends = np.minimum(ends, np.append(starts[1:], n_frames))
        for s, e in zip(starts, ends):
            if e - s < min_note_frames:
                continue
            v = 1.0 if velocity is None else float(velocity[s, key])
            notes.append(Note(min_pitch + key, s / frames_per_second, e / frames_per_second,
                              int(np.clip(round(v * 127), 1, 127))))
    return sorted(notes, key=lambda n: (n.onset_s, n.pitch))


def chunk_windows(n_frames: int, chunk_frames: int, context_frames: int) -> list[tuple[int, int, int, int]]:
    """Windows (start, stop) of chunk_frames each and the core (start, stop) each contributes.

    Cores tile [0, n_frames); every core frame has `context_frames` of context on both sides unless
    the file ends there. One window when the file fits.
    """
    if n_frames <= chunk_frames:
        return [(0, n_frames, 0, n_frames)]
    core = chunk_frames - 2 * context_frames
    if core < 1:
        raise ValueError("chunk_frames must exceed 2 * context_frames")
    out = []
    for a in range(0, n_frames, core):
        b = min(a + core, n_frames)
        ws = min(max(a - context_frames, 0), n_frames - chunk_frames)
        out.append((ws, ws + chunk_frames, a, b))
    return out


class OnsetsFramesTranscriber:
    """A `models.inference.PianoTranscriber`: 16 kHz float32 mono audio -> notes (torch or onnxruntime)."""

    def __init__(self, model: OnsetsAndFrames, features: FeatureConfig | None = None, onset_threshold: float = 0.5,
                 frame_threshold: float = 0.5, chunk_frames: int = 1024, context_frames: int = 64,
                 batch_windows: int = 4, engine: str = "torch", onnx_path: str | Path | None = None,
                 threads: int | None = None, **rules):
        unknown = set(rules) - set(RULE_KEYS)
        if unknown:
            raise ValueError(f"unknown decoding settings {sorted(unknown)}; known: {', '.join(RULE_KEYS)}")
        self.rules = rules
        self.model = model.eval()
        self.features = features or piano_config()
        self.sample_rate = self.features.sample_rate
        self.onset_threshold, self.frame_threshold = onset_threshold, frame_threshold
        self.chunk_frames, self.context_frames, self.batch_windows = chunk_frames, context_frames, batch_windows
        self.session = None
        if engine == "onnx":
            if onnx_path is None:
                raise ValueError("engine=onnx needs the bundle's model.onnx")
            from models.onnx_runtime import onnx_session

            self.session = onnx_session(onnx_path, threads)
        elif engine != "torch":
            raise ValueError(f"engine={engine!r}; choose torch or onnx")

    @classmethod
    def from_bundle(cls, bundle, **overrides) -> "OnsetsFramesTranscriber":
        from models.registry import model_from_bundle

        defaults = {k: v for k, v in bundle.manifest.get("inference_defaults", {}).items()
                    if k in ("onset_threshold", "frame_threshold", "chunk_frames", "context_frames", "engine",
                             *RULE_KEYS)}
        kwargs = {**defaults, **overrides}
        if kwargs.get("engine") == "onnx":
            kwargs.setdefault("onnx_path", bundle.onnx_path)
        features = FeatureConfig.from_dict(bundle.manifest["feature_config"]) if bundle.manifest.get(
            "feature_config") else None
        return cls(model_from_bundle(bundle), features, **kwargs)

    def _run(self, mel: np.ndarray) -> list[np.ndarray]:
        """(B, W, n_mels) -> [onset, offset, frame, velocity], each (B, W, n_keys)."""
        if self.session is not None:
            return self.session.run(list(OUTPUTS), {"mel": mel.astype(np.float32)})
        return [o.numpy() for o in self.model.infer(torch.from_numpy(mel))]

    def mel(self, audio: np.ndarray) -> np.ndarray:
        """(N,) audio -> (T, n_mels) float32 log-mel."""
        return log_mel(np.asarray(audio, dtype=np.float32), self.features).T.contiguous().numpy()

    def activations_from_mel(self, mel: np.ndarray) -> dict[str, np.ndarray]:
        """(T, n_mels) -> {onset, offset, frame, velocity: (T, n_keys)}, window by window."""
        windows = chunk_windows(len(mel), self.chunk_frames, self.context_frames)
        out = {k: np.zeros((len(mel), self.model.config.n_keys), np.float32) for k in OUTPUTS}
        for i in range(0, len(windows), self.batch_windows):
            group = windows[i:i + self.batch_windows]
            results = self._run(np.stack([mel[ws:we] for ws, we, _, _ in group]))
            for j, (ws, _, a, b) in enumerate(group):
                for name, res in zip(OUTPUTS, results):
                    out[name][a:b] = res[j, a - ws:b - ws]
        return out

    def activations(self, audio: np.ndarray) -> dict[str, np.ndarray]:
        return self.activations_from_mel(self.mel(audio))

    def decode(self, acts: dict[str, np.ndarray]) -> list[Note]:
        return decode_notes(acts["onset"], acts["frame"], acts["velocity"], self.onset_threshold,
                            self.frame_threshold, self.features.n_frames_per_second, self.model.config.min_pitch,
                            offset=acts["offset"], **self.rules)

    def transcribe(self, audio: np.ndarray) -> list[Note]:
        """(N,) float32 mono audio at `sample_rate` -> notes."""
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim != 1 or audio.size == 0:
            raise ValueError("transcribe needs non-empty mono audio, shape (N,)")
        return self.decode(self.activations(audio))


def notes_to_json(notes: list[Note]) -> list[dict]:
    """The JSON note list: pitch, onset_s, offset_s, velocity per note."""
    return [{"pitch": n.pitch, "onset_s": round(n.onset_s, 4), "offset_s": round(n.offset_s, 4),
             "velocity": n.velocity} for n in notes]


def model_spec():
    from models.registry import ModelSpec

    return ModelSpec("onsets-frames", OnsetsFramesConfig, OnsetsAndFrames, "piano", runtime)


def runtime(bundle) -> OnsetsFramesTranscriber:
    return OnsetsFramesTranscriber.from_bundle(bundle)
