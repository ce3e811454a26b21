"""Evaluation of synthesized speech, shared by the TTS families: transcripts by pocketsphinx
(an independent recognizer with its own US English model), WER on text normalized the same
way on both sides, and `sparsewave eval fdsd` (Frechet/Kernel DeepSpeech Distance, with a
Deep Speech 2 bundle as the recognizer) for any TTS bundle."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch


def pocketsphinx_texts(audio: list[np.ndarray], sample_rate: int = 16000) -> list[str]:
    """Transcripts by pocketsphinx's default US English model."""
    from pocketsphinx import Decoder

    decoder = Decoder(samprate=sample_rate, loglevel="FATAL")
    out = []
    for a in audio:
        decoder.start_utt()
        decoder.process_raw((np.clip(a, -1, 1) * 32767).astype(np.int16).tobytes(), full_utt=True)
        decoder.end_utt()
        out.append(decoder.hyp().hypstr if decoder.hyp() is not None else "")
    return out


def clean_text(text: str) -> str:
    """Lower case, letters, digits and apostrophes, single spaces."""
    return " ".join("".join(c for c in text.lower() if c.isalnum() or c in " '").split())


def word_error_rate(refs: list[str], hyps: list[str]) -> float:
    """Corpus WER (jiwer) of cleaned hypotheses against cleaned references; an empty
    hypothesis counts as all deletions."""
    import jiwer

    return float(jiwer.wer([clean_text(r) for r in refs], [clean_text(h) or "-" for h in hyps]))


# --- `sparsewave eval fdsd`: Frechet/Kernel DeepSpeech Distance of any TTS bundle ----------
def recognizer_features(transcriber) -> Callable[[np.ndarray], np.ndarray]:
    """FDSD features from a Deep Speech 2 runtime: its top recurrent layer's output,
    averaged over the utterance's frames (the paper averages DS2 activations over time)."""
    model, logmel = transcriber.model, transcriber.logmel

    @torch.no_grad()
    def features(audio: np.ndarray) -> np.ndarray:
        feats = logmel(torch.from_numpy(np.asarray(audio, np.float32))[None])
        lengths = torch.tensor([feats.shape[1]])
        h, out_lengths = model.encode(feats, lengths)
        mask = torch.ones(1, h.shape[1], dtype=torch.bool)
        for i in range(len(model.rnns)):
            h, _ = model.rnn_layer(i, h, out_lengths, mask)
        return h[0].mean(0).numpy()

    return features


def corpus_pairs(synth, rows: list[dict]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Each held-out corpus row's own audio (the voice that spoke it, resampled to the model's
    rate) and the bundle's speech for its text, in the bundle's voices round robin."""
    from models.audio import read_audio, resample

    real, generated = [], []
    for i, row in enumerate(rows):
        audio, sr = read_audio(row["wav_path"])
        real.append((resample(audio, sr, synth.sample_rate) if sr != synth.sample_rate else audio).astype(np.float32))
        voice = synth.voices[i % len(synth.voices)]
        generated.append(np.concatenate(list(synth.synthesize(row["normalized"], voice=voice))).astype(np.float32))
    return real, generated


def evaluate_fdsd(model: str, data: str, recognizer: str, limit: int = 0, seed: int = 0,
                  reference: str = "auto") -> dict[str, Any]:
    """FDSD/KDSD/cFDSD/cKDSD of a TTS bundle on the corpus's held-out sentences (valid and test
    splits), the real-audio floor, and WER of generated vs real audio (DS2 and pocketsphinx).

    reference "corpus": the real audio is each held-out row's own recording and the bundle
    speaks its text (any TTS bundle; the same real set for every model on one corpus, so their
    figures sit side by side). "mbrola-labels" (GAN-TTS only): each text is rendered by MBROLA
    in one of the bundle's voices and the generator runs on those exact labels, so real and
    generated audio share their timing. "auto": mbrola-labels for GAN-TTS, corpus otherwise."""
    from models.bundle import load_bundle
    from models.inference import load_runtime
    from models.speech_distance import features, kernel_distance_splits, real_floor, speech_distances
    from training.data.readers import read_labels

    bundle = load_bundle(model)
    if reference == "auto":
        reference = "mbrola-labels" if bundle.manifest["model_type"] == "gan-tts" else "corpus"
    if reference not in ("corpus", "mbrola-labels"):
        raise ValueError(f"reference {reference!r}: choose corpus, mbrola-labels or auto")
    rows = [r for r in read_labels(data) if r.get("split") in ("valid", "test") and r.get("normalized")]
    if reference == "mbrola-labels":
        from models.gan_tts import GanTTSSynthesizer
        from training.objectives.gan_tts import reference_pairs

        texts = sorted({r["normalized"] for r in rows})
        texts = [texts[i] for i in np.random.default_rng(seed).permutation(len(texts))][: limit or None]
        if len(texts) < 8:
            raise ValueError(f"{data}: only {len(texts)} held-out sentences; need at least 8")
        synth = GanTTSSynthesizer(bundle)
        real, generated = reference_pairs(synth, texts)
    else:
        rows = [rows[i] for i in np.random.default_rng(seed).permutation(len(rows))][: limit or None]
        if len(rows) < 8:
            raise ValueError(f"{data}: only {len(rows)} held-out utterances; need at least 8")
        _, synth = load_runtime(model)
        texts = [r["normalized"] for r in rows]
        real, generated = corpus_pairs(synth, rows)
    rec_bundle, transcriber = load_runtime(recognizer)
    feature_fn = recognizer_features(transcriber)
    f_real, f_gen = features(real, feature_fn), features(generated, feature_fn)
    half = len(texts) // 2
    a, b = slice(0, half), slice(half, 2 * half)
    figures = speech_distances(f_gen[a], f_real[a], f_real[b])
    floor = real_floor(np.concatenate([f_real[a], f_real[b]]), seed)
    floor_plain = speech_distances(f_real[a], f_real[a], f_real[b])  # real A vs real B, as the model is measured
    kdsd_mean, kdsd_std = kernel_distance_splits(f_gen, f_real, n_splits=10, subset=half, seed=seed)
    refs = texts[a]
    ds2 = lambda audio: [t.text for t in transcriber.transcribe_batch(audio)]  # noqa: E731
    manifest = rec_bundle.manifest
    return {
        "model": str(model), "model_type": bundle.manifest["model_type"], "reference": reference,
        "sentences": len(texts), "set_size": half, "voices": synth.voices,
        "recognizer": {"bundle": str(recognizer), "model_type": manifest["model_type"],
                       "weights_sha256": manifest["files"]["weights.safetensors"]["sha256"][:16],
                       "provenance": {k: manifest.get("provenance", {}).get(k) for k in ("run_dir", "checkpoint", "step")},
                       "features": "top recurrent layer, time-averaged"},
        **figures, "kdsd_splits_mean": kdsd_mean, "kdsd_splits_std": kdsd_std,
        "floor_real_vs_real": {"fdsd": floor_plain["fdsd"], "kdsd": floor_plain["kdsd"],
                               "fdsd_random_halves": floor["fdsd"], "kdsd_random_halves": floor["kdsd"]},
        "wer_ds2": {"generated": word_error_rate(refs, ds2(generated[a])), "real": word_error_rate(refs, ds2(real[a]))},
        "wer_pocketsphinx": {"generated": word_error_rate(refs, pocketsphinx_texts(generated[a], synth.sample_rate)),
                             "real": word_error_rate(refs, pocketsphinx_texts(real[a], synth.sample_rate))},
    }
