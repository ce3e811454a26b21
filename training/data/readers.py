"""Readers for corpora users bring: LJSpeech layout, MAESTRO layout, and folders of wav + txt pairs.

Each returns a list of plain records with absolute paths; audio is not read.
Problems a user can fix (missing files, malformed rows) raise CorpusError.
"""
from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")


class CorpusError(ValueError):
    """A corpus directory that does not match its layout; the message names the file and line."""


@dataclasses.dataclass(frozen=True)
class SpeechRecord:
    id: str
    audio_path: Path
    text: str
    normalized_text: str
    speaker: str = ""
    split: str = ""


@dataclasses.dataclass(frozen=True)
class PianoRecord:
    audio_path: Path
    midi_path: Path
    split: str  # train, validation or test
    composer: str
    title: str
    year: int
    duration: float


def read_ljspeech(root, check_files: bool = True) -> list[SpeechRecord]:
    """root/metadata.csv (`id|text|normalized`, normalized optional) + root/wavs/ID.wav.

    If root/labels.jsonl exists (our speech corpus), speaker and split come from it.
    """
    root = Path(root)
    meta = root / "metadata.csv"
    if not meta.is_file():
        raise CorpusError(f"{meta}: missing; an LJSpeech corpus has metadata.csv and wavs/")
    extra = {}
    if (root / "labels.jsonl").is_file():
        for line in (root / "labels.jsonl").read_text().splitlines():
            item = json.loads(line)
            extra[item["id"]] = (item.get("speaker", ""), item.get("split", ""))
    records = []
    for n, line in enumerate(meta.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("|")
        if len(fields) < 2:
            raise CorpusError(f"{meta}:{n}: expected id|text|normalized text, got {line[:80]!r}")
        uid, text = fields[0], fields[1]
        normalized = fields[2] if len(fields) > 2 and fields[2] else text
        audio = root / "wavs" / f"{uid}.wav"
        if check_files and not audio.is_file():
            raise CorpusError(f"{meta}:{n}: {audio} is missing")
        speaker, split = extra.get(uid, ("", ""))
        records.append(SpeechRecord(uid, audio, text, normalized, speaker, split))
    return records


def _maestro_rows(path: Path) -> list[dict]:
    if path.suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, list):  # v2: a list of row objects
        return data
    if isinstance(data, dict) and data:  # v3: {column: {row index: value}}
        rows = sorted({k for col in data.values() for k in col}, key=int)
        return [{c: data[c].get(r) for c in data} for r in rows]
    raise CorpusError(f"{path}: neither MAESTRO v2 (a list of rows) nor v3 (columns of rows)")


def read_maestro(path, check_files: bool = True) -> list[PianoRecord]:
    """A MAESTRO metadata file (v2 csv/json, v3 json), or a directory holding one (json preferred)."""
    path = Path(path)
    if path.is_dir():
        found = sorted(path.glob("maestro-v*.json")) or sorted(path.glob("maestro-v*.csv"))
        if not found:
            raise CorpusError(f"{path}: no maestro-v*.json or maestro-v*.csv")
        path = found[-1]
    if not path.is_file():
        raise CorpusError(f"{path}: missing")
    root = path.parent
    records = []
    for n, row in enumerate(_maestro_rows(path)):
        try:
            rec = PianoRecord(root / row["audio_filename"], root / row["midi_filename"], row["split"],
                              row["canonical_composer"], row["canonical_title"], int(row["year"]),
                              float(row["duration"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise CorpusError(f"{path}: row {n}: bad or missing column ({exc})") from exc
        if check_files and not (rec.audio_path.is_file() and rec.midi_path.is_file()):
            raise CorpusError(f"{path}: row {n}: {rec.audio_path.name} or {rec.midi_path.name} is missing")
        records.append(rec)
    return records


def read_folder(root, check_text: bool = True) -> list[SpeechRecord]:
    """Audio files with a .txt transcript of the same stem, searched recursively; sorted by path."""
    root = Path(root)
    if not root.is_dir():
        raise CorpusError(f"{root}: not a directory")
    records = []
    for audio in sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES):
        txt = audio.with_suffix(".txt")
        if not txt.is_file():
            if check_text:
                raise CorpusError(f"{audio}: no transcript {txt.name}")
            continue
        text = " ".join(txt.read_text(encoding="utf-8").split())
        uid = str(audio.relative_to(root).with_suffix(""))
        records.append(SpeechRecord(uid, audio, text, text, audio.parent.name if audio.parent != root else ""))
    return records


def read_labels(root: str | Path, split: str | None = None, hint: str = "") -> list[dict]:
    """Rows of ROOT/labels.jsonl, the project's speech corpus (`sparsewave data speech`),
    optionally of one split, each with its wav path as `wav_path`."""
    root = Path(root)
    path = root / "labels.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; build a corpus with `sparsewave data speech --out {root}"
                                f"{' ' + hint if hint else ''}`")
    rows = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        if split is not None and row.get("split") != split:
            continue
        row["wav_path"] = str(root / (row.get("path") or row.get("wav") or f"wavs/{row['id']}.wav"))
        rows.append(row)
    return rows
