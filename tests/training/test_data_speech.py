import json

import numpy as np
import pytest
import soundfile as sf

from models.text import Phone, features_from_phones
from training.data.sentences import clean_sentence, sentence_split, split_sentences
from training.data.speech import build_speech, trim_phones
from training.data.voices import BY_NAME, available, synthesize

SENTENCES = {"train": ["The cat sat on the mat today.", "It costs $3.50 at 10:30 a.m. sharp.",
                       "A bird in the hand is worth two in the bush."],
             "valid": ["Nobody knows the trouble I have seen."], "test": ["Time flies like an arrow, friend."]}


def _have(*names):
    return all(available(BY_NAME[n]) for n in names)


@pytest.mark.skipif(not _have("mb-us1"), reason="espeak-ng + mbrola us1 needed")
def test_mbrola_durations_match_rendered_audio(tmp_path):
    voice = BY_NAME["mb-us1"]
    for i, text in enumerate(SENTENCES["train"]):
        audio, sr, phones = synthesize(voice, text, tmp_path / str(i))
        total_ms = sum(p.duration_ms for p in phones)
        assert abs(len(audio) / sr * 1000 - total_ms) < 20  # before any trimming
        feats = features_from_phones(phones, sample_rate=sr)
        assert abs(feats.n_samples - len(audio)) < 0.02 * sr


@pytest.mark.skipif(not _have("mb-us1", "flite-slt", "espeak-en-us"), reason="tools missing")
def test_build_speech_corpus(tmp_path):
    out = tmp_path / "corpus"
    summary = build_speech(out, limit=5, seed=3, jobs=2, voice_names=["mb-us1", "flite-slt", "espeak-en-us"],
                           sentences=SENTENCES)
    labels = [json.loads(line) for line in (out / "labels.jsonl").read_text().splitlines()]
    assert sum(summary["kept"].values()) + sum(summary["dropped"].values()) == 5
    assert len(labels) == sum(summary["kept"].values()) >= 4
    rows = [line.split("|") for line in (out / "metadata.csv").read_text().splitlines()]
    assert [r[0] for r in rows] == [r["id"] for r in labels] and all(len(r) == 3 for r in rows)
    splits = json.loads((out / "splits.json").read_text())
    for r in labels:
        audio, sr = sf.read(out / "wavs" / f"{r['id']}.wav")
        assert sr == 16000 and audio.ndim == 1 and len(audio) == r["n_samples"]
        assert 0.05 < np.abs(audio).max() <= 0.96
        assert r["id"] in splits[r["split"]]
        assert r["text"] in SENTENCES[r["split"]]  # held-out sentences stay in their split
        assert BY_NAME[r["speaker"]].split == r["split"]  # and so do held-out voices
        assert r["phonemes"] and r["normalized"]
        if r["tool"] == "mbrola":
            assert len(r["durations_ms"]) == len(r["pho_phonemes"]) == len(r["pitch"])
            assert abs(sum(r["durations_ms"]) * 16 - r["n_samples"]) <= 16 * 20
    assert {r["tool"] for r in labels} >= {"mbrola"}
    for r in labels:
        if r["text"] == SENTENCES["train"][1]:
            assert r["normalized"] == "It costs three dollars fifty cents at ten thirty a m sharp."
    again = build_speech(tmp_path / "again", limit=5, seed=3, jobs=1,
                         voice_names=["mb-us1", "flite-slt", "espeak-en-us"], sentences=SENTENCES)
    assert (tmp_path / "again" / "metadata.csv").read_text() == (out / "metadata.csv").read_text()
    assert again["kept"] == summary["kept"]


def test_trim_phones_keeps_labels_summing():
    phones = (Phone("_", 300), Phone("h", 70), Phone("@", 20, ((0, 100),)), Phone("_", 301), Phone("_", 1))
    kept, cut_start, cut_end = trim_phones(phones)
    assert [p.phoneme for p in kept] == ["_", "h", "@", "_"]
    assert kept[0].duration_ms == 50 and kept[-1].duration_ms == 100
    assert cut_start == 250 and cut_end == 202
    assert sum(p.duration_ms for p in kept) + cut_start + cut_end == sum(p.duration_ms for p in phones)


def test_sentence_cleaning_and_stable_splits():
    assert clean_sentence("A vivid and   creative mind characterizes you.") == "A vivid and creative mind characterizes you."
    assert clean_sentence("Too short.") is None
    assert clean_sentence("caf\u00e9 is not ascii at all.") is None
    assert clean_sentence("no capital letter at the start.") is None
    assert split_sentences("One two three four. Five six seven eight!") == ["One two three four.",
                                                                          "Five six seven eight!"]
    assert sentence_split("The cat sat on the mat.") == sentence_split("The cat sat on the mat.")
    counts = {s: 0 for s in ("train", "valid", "test")}
    for i in range(2000):
        counts[sentence_split(f"Sentence number {i} is here.")] += 1
    assert 1600 < counts["train"] < 1900 and counts["valid"] > 40 and counts["test"] > 40


def test_cli_reports_user_errors(tmp_path, capsys):
    from training.cli import main
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    assert main(["data", "speech", "--out", str(tmp_path / "full")]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["data", "speech", "--out", str(tmp_path / "new"), "--voices", "nobody"]) == 2
    assert "unknown voices" in capsys.readouterr().err
    assert main(["data", "piano", "--out", str(tmp_path / "p"), "--limit", "0"]) == 2
