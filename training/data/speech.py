"""The multi-speaker speech corpus, in LJSpeech layout plus labels.

out/
  metadata.csv    id|transcript|normalized transcript   (LJSpeech)
  wavs/ID.wav     16 kHz mono 16-bit, loudness-normalized, silence-trimmed
  labels.jsonl    one JSON object per utterance: id, speaker, speaker_id, voice, tool, split,
                  text, normalized, phonemes (IPA), sample_rate, n_samples, licence and, for
                  MBROLA voices, pho_phonemes, durations_ms, pitch ([[percent, hz], ...] per phone)
  splits.json     split -> ids;  speakers.json  voice -> speaker id;  summary.json

MBROLA labels stay exact through trimming: only the leading and trailing
silence phones (`_`) are shortened, and the audio is cut at the same
millisecond, so the durations sum to the audio length.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from models.audio import normalize_loudness, resample, trim_silence, write_audio
from models.text import FrontendError, Phone, ipa_tokens, normalize_text
from training.data.common import SPLITS, Summary, parallel_map, split_sizes
from training.data.sentences import all_sentences
from training.data.voices import PRESETS, SynthesisError, Voice, available, synthesize

SAMPLE_RATE = 16000
KEEP_LEAD_MS, KEEP_TAIL_MS = 50, 100  # silence kept around MBROLA utterances
MIN_SECONDS, MAX_SECONDS = 0.4, 20.0
ALIGN_TOLERANCE_MS = 20  # MBROLA renders the .pho durations to within a few samples


@dataclasses.dataclass(frozen=True)
class Job:
    uid: str
    text: str
    voice: Voice
    split: str
    out: Path


def _edge_silence(phones: list[Phone]) -> int:
    n = 0
    while n < len(phones) - 1 and phones[n].phoneme == "_":
        n += 1
    return n


def trim_phones(phones: tuple[Phone, ...]) -> tuple[list[Phone], float, float]:
    """Shorten edge silences to KEEP_LEAD_MS / KEEP_TAIL_MS -> (phones, ms cut at the start, at the end)."""
    phones = list(phones)
    n = _edge_silence(phones)
    lead = sum(p.duration_ms for p in phones[:n])
    phones = ([Phone("_", min(lead, KEEP_LEAD_MS))] if lead > 0 else []) + phones[n:]
    phones.reverse()
    n = _edge_silence(phones)
    tail = sum(p.duration_ms for p in phones[:n])
    phones = ([Phone("_", min(tail, KEEP_TAIL_MS))] if tail > 0 else []) + phones[n:]
    phones.reverse()
    return phones, lead - min(lead, KEEP_LEAD_MS), tail - min(tail, KEEP_TAIL_MS)


def make_utterance(job: Job) -> dict:
    """Synthesize, resample, trim, normalize and write one utterance -> label dict or {'dropped': reason}."""
    normalized = normalize_text(job.text)
    with tempfile.TemporaryDirectory(dir=job.out / ".tmp") as tmp:
        try:
            audio, sr, phones = synthesize(job.voice, normalized, Path(tmp))
        except SynthesisError as exc:
            return {"dropped": "mbrola missing diphones" if "recovery" in str(exc) else f"{job.voice.tool} failed"}
        except (FrontendError, ValueError):
            return {"dropped": "unreadable"}
    audio = resample(audio, sr, SAMPLE_RATE)
    label: dict = {}
    if phones is not None:
        rendered_ms = sum(p.duration_ms for p in phones)
        if abs(len(audio) * 1000 / SAMPLE_RATE - rendered_ms) > ALIGN_TOLERANCE_MS:
            return {"dropped": "durations do not match audio"}
        kept, cut_start, cut_end = trim_phones(phones)
        total_ms = sum(p.duration_ms for p in kept)
        start = int(round(cut_start * SAMPLE_RATE / 1000))
        n = int(round(total_ms * SAMPLE_RATE / 1000))
        audio = np.pad(audio[start:start + n], (0, max(0, n - len(audio[start:start + n]))))
        label.update(pho_phonemes=[p.phoneme for p in kept], durations_ms=[p.duration_ms for p in kept],
                     pitch=[[list(t) for t in p.pitch] for p in kept])
    else:
        start, end = trim_silence(audio, SAMPLE_RATE, pad_ms=50)
        audio = audio[start:end]
    seconds = len(audio) / SAMPLE_RATE
    if len(audio) == 0 or float(np.sqrt(np.mean(audio ** 2))) < 1e-4:
        return {"dropped": "silent"}
    if not MIN_SECONDS <= seconds <= MAX_SECONDS:
        return {"dropped": "too short" if seconds < MIN_SECONDS else "too long"}
    audio = normalize_loudness(audio)
    write_audio(job.out / "wavs" / f"{job.uid}.wav", audio, SAMPLE_RATE)
    return {"id": job.uid, "speaker": job.voice.name, "voice": job.voice.arg, "tool": job.voice.tool,
            "split": job.split, "text": job.text, "normalized": normalized,
            "phonemes": "".join(ipa_tokens(normalized)), "sample_rate": SAMPLE_RATE, "n_samples": len(audio),
            "licence": job.voice.licence, **label}


def plan(out: Path, limit: int, seed: int, voices: list[Voice], sentences: dict[str, list[str]]) -> list[Job]:
    """Jobs for `limit` utterances: each split's voices speak that split's sentences, round robin."""
    rng = np.random.default_rng(seed)
    by_split = {s: [v for v in voices if v.split == s] for s in SPLITS}
    sizes = split_sizes(limit, [s for s in SPLITS if by_split[s] and sentences.get(s)])
    jobs, n = [], 0
    for split, size in sizes.items():
        pool = [sentences[split][i] for i in rng.permutation(len(sentences[split]))]
        speakers = [by_split[split][i] for i in rng.permutation(len(by_split[split]))]
        for k in range(size):
            jobs.append(Job(f"SW{n:06d}", pool[k % len(pool)], speakers[k % len(speakers)], split, out))
            n += 1
    return jobs


def build_speech(out: Path, limit: int = 1000, seed: int = 0, jobs: int = 2,
                 voice_names: list[str] | None = None, sentences: dict[str, list[str]] | None = None,
                 preset: str = "default") -> dict:
    """Build the corpus under `out` from a voice preset (all of it, or the named voices of it).

    Speaker ids are positions in the preset. Returns the summary dict (also written to summary.json).
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown voice preset {preset!r}; known: {sorted(PRESETS)}")
    by_name = {v.name: v for v in PRESETS[preset]}
    unknown = sorted(set(voice_names or []) - set(by_name))
    if unknown:
        raise ValueError(f"unknown voices {unknown}; known: {sorted(by_name)}")
    chosen = [by_name[n] for n in voice_names] if voice_names else list(PRESETS[preset])
    missing = [v.name for v in chosen if not available(v)]
    chosen = [v for v in chosen if v.name not in missing]
    if not chosen:
        raise ValueError(f"none of the voices is installed (missing: {missing})")
    out = Path(out)
    (out / "wavs").mkdir(parents=True, exist_ok=True)
    (out / ".tmp").mkdir(exist_ok=True)
    summary = Summary()
    todo = plan(out, limit, seed, chosen, sentences or all_sentences())
    results = parallel_map(make_utterance, todo, jobs, desc="speech")
    shutil.rmtree(out / ".tmp", ignore_errors=True)
    speakers = {v.name: i for i, v in enumerate(PRESETS[preset])}
    labels = []
    for res in results:
        if "dropped" in res:
            summary.drop(res["dropped"])
            continue
        res["speaker_id"] = speakers[res["speaker"]]
        labels.append(res)
        summary.keep(res["split"], res["n_samples"] / res["sample_rate"])
    with open(out / "metadata.csv", "w") as f:
        for r in labels:
            f.write(f"{r['id']}|{r['text']}|{r['normalized']}\n")
    with open(out / "labels.jsonl", "w") as f:
        for r in labels:
            f.write(json.dumps(r) + "\n")
    splits = {s: [r["id"] for r in labels if r["split"] == s] for s in SPLITS}
    (out / "splits.json").write_text(json.dumps(splits, indent=1))
    (out / "speakers.json").write_text(json.dumps(speakers, indent=1))
    result = {**summary.as_dict(), "preset": preset, "seed": seed, "missing_voices": missing,
              "lines": summary.lines()}
    (out / "summary.json").write_text(json.dumps(result, indent=1))
    return result
