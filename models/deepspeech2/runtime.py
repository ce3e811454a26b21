"""Transcribers built from a Deep Speech 2 bundle: batched and streaming.

`DeepSpeech2Transcriber.transcribe_batch` takes whatever arrived together
(Batch Dispatch: the service hands it a batch), splits it into `threads`
groups of about equal audio and runs each group on a worker thread:
features and the frontend per utterance, the recurrent layers of the whole
group batched (engine "native": kernels/csrc/gru.c, one (B x H) @ (H x 3H)
product per step for all running utterances, models/deepspeech2/recurrent.py),
then decoding (greedy, our beam search or flashlight with the bundle's n-gram
LM) and word times per utterance. Engines "onnx" and "torch" run one
utterance at a time instead (the convolutions and onnxruntime's GRU gained
nothing from batching on this CPU: docs/deepspeech2.md). An utterance gets
the same transcript alone or in any batch.
`DeepSpeech2Stream` feeds a growing stream through the unidirectional model
and returns partial text; `finish()` gives what the whole file gives.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from models.deepspeech2.decode import BeamConfig, beam_search, greedy_labels, labels_to_text, word_timings
from models.deepspeech2.features import LogMel, asr_feature_config
from models.features import FeatureConfig
from models.deepspeech2.model import DeepSpeech2
from models.deepspeech2.text import CHARS, SPACE, encode
from models.inference import Transcript
from models.ngram import NGramLM

LM_ASSET = "lm.arpa.gz"  # gzipped ARPA (KenLM reads it too)
ENGINES = ("native", "onnx", "torch")
log = logging.getLogger(__name__)


class DeepSpeech2Transcriber:
    """A `models.inference.Transcriber`: list of float32 mono arrays -> transcripts."""

    def __init__(self, model: DeepSpeech2, features: FeatureConfig | None = None, lm: NGramLM | None = None,
                 beam: BeamConfig = BeamConfig(), decoder: str = "beam", onnx_path: str | Path | None = None,
                 engine: str = "torch", threads: int | None = None, lm_path: str | Path | None = None):
        if decoder not in ("beam", "greedy", "flashlight"):
            raise ValueError(f"decoder={decoder!r}; choose greedy, beam (ours) or flashlight (torchaudio)")
        if decoder == "flashlight" and lm_path is None:
            raise ValueError("decoder=flashlight needs the ARPA file (lm_path)")
        self.model = model.eval()
        self.features = features = features or asr_feature_config()
        self.logmel = LogMel(features)
        self.sample_rate = features.sample_rate
        self.lm, self.beam, self.decoder = lm, beam, decoder
        self.lm_path = lm_path
        self._flashlight = None
        self.frame_s = features.hop_length * model.time_stride / features.sample_rate
        self.threads = max(1, int(threads or 2))  # worker threads; each runs one utterance at a time
        self._pool: ThreadPoolExecutor | None = None
        self._flashlight_lock = threading.Lock()  # the decoder holds the GIL anyway: no parallelism lost
        self.session = None
        self.stack = None
        if engine not in ENGINES:
            raise ValueError(f"engine={engine!r}; choose one of {', '.join(ENGINES)}")
        if engine == "native":
            from models.deepspeech2 import recurrent

            lib = recurrent.gru_library() if recurrent.supports(model) else None
            if lib is not None:
                self.stack = recurrent.GRUStack(model, lib)
            else:  # no C compiler, or a plain-RNN model: the ONNX graph (or torch) one utterance at a time
                engine = "onnx" if onnx_path is not None else "torch"
                log.warning("deepspeech2: native engine unavailable, using %s", engine)
        self.engine = engine
        if engine == "onnx":
            if onnx_path is None:
                raise ValueError("engine=onnx needs the bundle's model.onnx")
            from models.onnx_runtime import onnx_session

            # One intra-op thread per run, the workers run in parallel: on a busy 2-core machine one
            # utterance ran 3-4x faster on one thread than on two (the GRU syncs its threads every step).
            self.session = onnx_session(onnx_path, 1, spinning=False)

    @classmethod
    def from_bundle(cls, bundle, **overrides) -> "DeepSpeech2Transcriber":
        from models.registry import model_from_bundle

        model = model_from_bundle(bundle)
        defaults = {**bundle.manifest.get("inference_defaults", {}), **overrides}
        lm_files = [name for name in (LM_ASSET, "lm.arpa") if name in bundle.manifest["files"]]
        lm = NGramLM.from_arpa(bundle.file(lm_files[0])) if lm_files else None
        beam_keys = {f.name for f in dataclasses.fields(BeamConfig)}
        beam = BeamConfig(**{k: v for k, v in defaults.items() if k in beam_keys})
        return cls(model, FeatureConfig.from_dict(bundle.manifest["feature_config"]), lm=lm,
                   beam=beam, decoder=defaults.get("decoder", "beam" if lm else "greedy"),
                   onnx_path=bundle.onnx_path, engine=defaults.get("engine", "torch"), threads=defaults.get("threads"),
                   lm_path=bundle.file(lm_files[0]) if lm_files else None)

    # --- acoustic model ---------------------------------------------------------
    def _pool_map(self, fn, items: list) -> list:
        if self._pool is None:
            # One torch thread per worker: two workers keep 2 cores busy without OpenMP threads spin-waiting.
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="deepspeech2",
                                            initializer=torch.set_num_threads, initargs=(1,))
        return list(self._pool.map(fn, items))

    def _groups(self, audio: list[np.ndarray]) -> list[list[int]]:
        """Indices split into `threads` groups of about equal audio (longest first to the lightest group)."""
        groups: list[list[int]] = [[] for _ in range(min(self.threads, len(audio)))]
        load = [0] * len(groups)
        for i in sorted(range(len(audio)), key=lambda i: -len(audio[i])):
            g = load.index(min(load))
            groups[g].append(i)
            load[g] += len(audio[i])
        return groups

    def _map_groups(self, fn, audio: list[np.ndarray], *per_item: list) -> list:
        """fn(list of utterances, *their entries of each per_item list) -> list of results, per group on
        the worker threads, back in input order."""
        groups = self._groups(audio)
        results = self._pool_map(lambda g: fn([audio[i] for i in g], *([p[i] for i in g] for p in per_item)), groups)
        out: list = [None] * len(audio)
        for group, res in zip(groups, results):
            for i, r in zip(group, res):
                out[i] = r
        return out

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None

    def __del__(self):
        self.close()

    def utterance_log_probs(self, audio: np.ndarray) -> np.ndarray:
        """One utterance through the model (in the calling thread) -> (T', n_classes) log-probabilities."""
        return self.group_log_probs([audio])[0]

    @torch.no_grad()
    def _whole_model_log_probs(self, audio: np.ndarray) -> np.ndarray:
        """One utterance through onnxruntime or the torch model."""
        feats = self.logmel(torch.from_numpy(np.asarray(audio, dtype=np.float32))[None])
        lengths = torch.tensor([feats.shape[1]])
        if self.session is not None:
            out, out_lengths = self.session.run(None, {"features": feats.numpy(), "lengths": lengths.numpy()})
        else:
            out, out_lengths = self.model.infer(feats, lengths)
            out, out_lengths = out.numpy(), out_lengths.numpy()
        return out[0, : int(out_lengths[0])]

    @torch.no_grad()
    def group_log_probs(self, audio: list[np.ndarray], cpu_s: dict[str, float] | None = None) -> list[np.ndarray]:
        """Utterances through the model in the calling thread: the recurrent layers batched on the
        native engine, else one utterance at a time -> per utterance (T', n_classes) log-probabilities.
        `cpu_s` (native engine): adds this thread's CPU seconds per part (bench.deepspeech2)."""
        if self.stack is None:
            return [self._whole_model_log_probs(a) for a in audio]
        clock = _PartClock(cpu_s)
        model, feats, frames = self.model, [], []
        for a in audio:
            feats.append(self.logmel(torch.from_numpy(np.asarray(a, dtype=np.float32))[None]))
        clock.lap("features")
        for f in feats:  # the convolutions cost the same per frame batched or not: no padding this way
            frames.append(model.encode(f, torch.tensor([f.shape[1]]))[0][0].numpy())
        clock.lap("frontend")
        top = self.stack(frames)
        clock.lap("recurrent")
        out = []
        for h in top:
            h = torch.from_numpy(h)[None]
            if model.row_conv is not None:
                h = model.row_conv(h)
            out.append(model.head(h)[0].log_softmax(-1).numpy())
        clock.lap("head")
        return out

    def log_probs(self, audio: list[np.ndarray]) -> list[np.ndarray]:
        """Per utterance (T'_i, n_classes) log-probabilities, computed on the worker threads."""
        return self._map_groups(self.group_log_probs, audio)

    # --- decoding -----------------------------------------------------------------
    def decode(self, log_probs: np.ndarray, duration_s: float, words: bool = True) -> Transcript:
        """Text, and with `words` the word timings and confidences (a forced alignment: skip it when
        only the text is wanted)."""
        if self.decoder == "beam":
            labels = beam_search(log_probs, self.lm, self.beam)
        elif self.decoder == "flashlight":
            labels = encode(self.flashlight_texts([log_probs])[0])
        else:
            labels = greedy_labels(log_probs)
        timed = word_timings(log_probs, labels, self.frame_s, duration_s) if words else []
        return Transcript(text=labels_to_text(labels), words=timed, duration_s=duration_s)

    def flashlight_texts(self, probs: list[np.ndarray]) -> list[str]:
        """torchaudio's lexicon beam search (flashlight-text, KenLM) over the bundle's LM vocabulary."""
        texts = []
        for p in probs:
            # One closing frame that is surely a word boundary: with beam_size_token (max_chars) the
            # boundary token may rank below the top tokens in every frame after the last word, and
            # the lexicon search would drop that unfinished word. The frame costs no probability.
            end = np.full((1, p.shape[1]), -1e4, np.float32)
            end[0, SPACE] = 0.0
            emissions = torch.from_numpy(np.concatenate([np.asarray(p, np.float32), end]))[None]
            with self._flashlight_lock:  # one search at a time: the decoder object keeps state
                if self._flashlight is None:
                    self._flashlight = _flashlight_decoder(self.lm, self.lm_path, self.beam)
                hyps = self._flashlight(emissions)
            texts.append(" ".join(hyps[0][0].words) if hyps and hyps[0] else "")
        return texts

    def transcribe_group(self, audio: list[np.ndarray], words: list[bool] | None = None) -> list[Transcript]:
        """Utterances transcribed together in the calling thread (word timings for those with words[i])."""
        words = [True] * len(audio) if words is None else words
        return [self.decode(p, len(a) / self.sample_rate, w)
                for p, a, w in zip(self.group_log_probs(audio), audio, words)]

    def transcribe(self, audio: np.ndarray) -> Transcript:
        """One utterance, in the calling thread."""
        return self.transcribe_group([audio])[0]

    def transcribe_batch(self, audio: list[np.ndarray], words: bool | list[bool] = True) -> list[Transcript]:
        want = [words] * len(audio) if isinstance(words, bool) else list(words)
        if len(want) != len(audio):
            raise ValueError(f"words: {len(want)} flags for {len(audio)} utterances")
        return self._map_groups(self.transcribe_group, audio, want)

    @property
    def can_stream(self) -> bool:
        """Whether `stream()` works: a unidirectional model (bidirectional layers need the whole utterance)."""
        return not self.model.config.bidirectional

    def stream(self) -> "DeepSpeech2Stream":
        return DeepSpeech2Stream(self)


class DeepSpeech2Stream:
    """Incremental transcription with a unidirectional model.

    `feed(chunk)` takes float32 mono audio at the transcriber's sample rate and
    returns the greedy text so far; `finish()` flushes the lookahead and
    decodes the whole utterance as `transcribe_batch` would.
    """

    def __init__(self, transcriber: DeepSpeech2Transcriber):
        model = transcriber.model
        if model.config.bidirectional:
            raise ValueError("streaming needs a unidirectional model (bidirectional=false, lookahead>0)")
        self.t = transcriber
        self.model = model
        # Samples not yet framed, starting with log_mel's n_fft // 2 zeros of centring.
        self.audio = torch.zeros(1, transcriber.features.n_fft // 2)
        self.n_samples = 0
        self.frames_done = 0
        front = model.frontend
        # Normalized frames waiting for the frontend, starting with its left padding.
        self.frames = torch.zeros(1, front.pad_left, model.config.n_mels)
        self.frontend_out = 0  # frontend outputs produced so far
        self.states: list[torch.Tensor | None] = [None] * len(model.rnns)
        self.top = torch.zeros(1, 0, model.config.rnn_hidden)  # awaiting the row convolution
        self.out: list[np.ndarray] = []

    @torch.no_grad()
    def _frames(self, final: bool) -> None:
        cfg = self.t.features
        hop, n_fft = cfg.hop_length, cfg.n_fft
        if final:  # the frames the whole file has, the last ones over zeros
            n = cfg.n_frames(self.n_samples) - self.frames_done
            need = (n - 1) * hop + n_fft
            if n > 0 and self.audio.shape[1] < need:
                self.audio = F.pad(self.audio, (0, need - self.audio.shape[1]))
        else:
            n = (self.audio.shape[1] - n_fft) // hop + 1 if self.audio.shape[1] >= n_fft else 0
        if n <= 0:
            return
        feats = self.t.logmel.frames_valid(self.audio[:, : (n - 1) * hop + n_fft])
        self.audio = self.audio[:, n * hop:]
        self.frames_done += n
        mask = torch.ones(1, n, dtype=torch.bool)
        self.frames = torch.cat([self.frames, self.model.input_norm(feats, mask)], 1)

    @torch.no_grad()
    def _advance(self, final: bool) -> None:
        front = self.model.frontend
        if final:
            self.frames = F.pad(self.frames, (0, 0, 0, front.pad_right))
            n_out = -(-self.frames_done // front.stride) - self.frontend_out
        else:
            n_out = (self.frames.shape[1] - front.field) // front.stride + 1 if self.frames.shape[1] >= front.field else 0
        if n_out > 0:
            needed = (n_out - 1) * front.stride + front.field
            h = front.forward_valid(self.frames[:, :needed])
            self.frames = self.frames[:, n_out * front.stride:]
            self.frontend_out += n_out
            mask = torch.ones(1, n_out, dtype=torch.bool)
            lengths = torch.tensor([n_out])
            for i in range(len(self.model.rnns)):
                h, self.states[i] = self.model.rnn_layer(i, h, lengths, mask, self.states[i])
            self.top = torch.cat([self.top, h], 1)
        tau = self.model.config.lookahead
        if final and tau:
            self.top = F.pad(self.top, (0, 0, 0, tau))
        ready = self.top.shape[1] - tau
        if ready > 0:
            h = self.model.row_conv.forward_valid(self.top) if self.model.row_conv is not None else self.top
            self.top = self.top[:, ready:]
            self.out.append(self.model.head(h).log_softmax(-1)[0].numpy())

    def feed(self, chunk: np.ndarray) -> str:
        chunk = torch.from_numpy(np.asarray(chunk, dtype=np.float32)).reshape(1, -1)
        self.audio = torch.cat([self.audio, chunk], 1)
        self.n_samples += chunk.shape[1]
        self._frames(final=False)
        self._advance(final=False)
        return self.partial()

    def partial(self) -> str:
        if not self.out:
            return ""
        return labels_to_text(greedy_labels(np.concatenate(self.out)))

    def log_probs(self) -> np.ndarray:
        return np.concatenate(self.out) if self.out else np.zeros((0, self.model.config.n_classes), np.float32)

    def finish(self) -> Transcript:
        self._frames(final=True)
        self._advance(final=True)
        return self.t.decode(self.log_probs(), self.n_samples / self.t.sample_rate)


class _PartClock:
    """Adds the calling thread's CPU seconds since the last lap to parts[name] (nothing when parts is None)."""

    def __init__(self, parts: dict[str, float] | None):
        self.parts = parts
        self.t = time.thread_time() if parts is not None else 0.0

    def lap(self, name: str) -> None:
        if self.parts is not None:
            now = time.thread_time()
            self.parts[name] = self.parts.get(name, 0.0) + now - self.t
            self.t = now


def _flashlight_decoder(lm: NGramLM, lm_path, beam: BeamConfig):
    import tempfile

    from torchaudio.models.decoder import ctc_decoder

    words = sorted(w for w in lm.vocab if w not in ("<s>", "</s>", "<unk>") and set(w) <= set(CHARS))
    lexicon = Path(tempfile.mkdtemp(prefix="ds2-lexicon-")) / "lexicon.txt"
    lexicon.write_text("".join(f"{w}\t{' '.join(w)} |\n" for w in words))
    tokens = ["-", "|", *CHARS[1:]]  # blank, word boundary (our space), apostrophe, a-z: our label order
    # KenLM scores in log10; lm_weight is defined on natural logs (our beam search).
    # beam_size_token: the top max_chars tokens per frame, as in our beam search (all 29 take about 2.2x
    # the time for the same valid and test WER: docs/deepspeech2.md, "Token beam and the closing frame")
    return ctc_decoder(lexicon=str(lexicon), tokens=tokens, lm=str(lm_path), beam_size=beam.beam_size,
                       beam_size_token=beam.max_chars or None,
                       lm_weight=beam.lm_weight * math.log(10), word_score=beam.word_bonus, blank_token="-",
                       sil_token="|", unk_word="<unk>")


def export_onnx(model: DeepSpeech2, path: str | Path, n_mels: int | None = None) -> Path:
    """The acoustic model as ONNX: features (B, T, n_mels), lengths (B,) -> log-probs, lengths."""
    model = model.eval()
    n_mels = n_mels or model.config.n_mels

    class _Infer(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, features, lengths):
            logits, out_lengths = self.inner(features, lengths)
            return logits.log_softmax(-1), out_lengths

    feats = torch.randn(2, 50, n_mels)
    lengths = torch.tensor([50, 37])
    # export() restores the wrapper's mode afterwards, so the wrapper must be in eval mode too.
    torch.onnx.export(_Infer(model).eval(), (feats, lengths), str(path), dynamo=False, opset_version=17,
                      input_names=["features", "lengths"], output_names=["log_probs", "out_lengths"],
                      dynamic_axes={"features": {0: "batch", 1: "time"}, "lengths": {0: "batch"},
                                    "log_probs": {0: "batch", 1: "frames"}, "out_lengths": {0: "batch"}})
    return Path(path)
