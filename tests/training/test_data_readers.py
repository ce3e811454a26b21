import json

import numpy as np
import pytest
import soundfile as sf

from training.data import augment
from training.data.readers import CorpusError, read_folder, read_labels, read_ljspeech, read_maestro


def _wav(path, seconds=0.1):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.zeros(int(16000 * seconds), np.float32), 16000)


def test_read_ljspeech(tmp_path):
    for uid in ("LJ001-0001", "LJ001-0002"):
        _wav(tmp_path / "wavs" / f"{uid}.wav")
    (tmp_path / "metadata.csv").write_text("LJ001-0001|Printing, in 1450.|Printing, in fourteen fifty.\n"
                                           "LJ001-0002|Only text|\n")
    records = read_ljspeech(tmp_path)
    assert [r.id for r in records] == ["LJ001-0001", "LJ001-0002"]
    assert records[0].normalized_text == "Printing, in fourteen fifty." and records[1].normalized_text == "Only text"
    assert records[0].audio_path == tmp_path / "wavs" / "LJ001-0001.wav" and records[0].split == ""
    (tmp_path / "labels.jsonl").write_text(json.dumps({"id": "LJ001-0002", "speaker": "mb-us1", "split": "test"}))
    assert read_ljspeech(tmp_path)[1].speaker == "mb-us1" and read_ljspeech(tmp_path)[1].split == "test"
    (tmp_path / "metadata.csv").write_text("LJ009-0009|missing audio|x\n")
    with pytest.raises(CorpusError, match="missing"):
        read_ljspeech(tmp_path)
    with pytest.raises(CorpusError, match="metadata.csv"):
        read_ljspeech(tmp_path / "nowhere")


def _maestro_rows():
    return [{"canonical_composer": "Frédéric Chopin", "canonical_title": "Ballade No. 1", "split": "train",
             "year": 2018, "midi_filename": "2018/a.midi", "audio_filename": "2018/a.wav", "duration": 1.5},
            {"canonical_composer": "Bach", "canonical_title": "Prelude", "split": "test", "year": 2004,
             "midi_filename": "2004/b.midi", "audio_filename": "2004/b.wav", "duration": 2.25}]


@pytest.mark.parametrize("version", ["v2-json", "v2-csv", "v3-json"])
def test_read_maestro_versions(tmp_path, version):
    rows = _maestro_rows()
    for r in rows:
        _wav(tmp_path / r["audio_filename"])
        (tmp_path / r["midi_filename"]).write_bytes(b"MThd")
    if version == "v2-json":
        path = tmp_path / "maestro-v2.0.0.json"
        path.write_text(json.dumps(rows))
    elif version == "v2-csv":
        path = tmp_path / "maestro-v2.0.0.csv"
        cols = list(rows[0])
        path.write_text(",".join(cols) + "\n" + "\n".join(
            ",".join(f'"{r[c]}"' for c in cols) for r in rows) + "\n", encoding="utf-8")
    else:
        path = tmp_path / "maestro-v3.0.0.json"
        path.write_text(json.dumps({c: {str(i): r[c] for i, r in enumerate(rows)} for c in rows[0]}))
    records = read_maestro(tmp_path)
    assert [r.title for r in records] == ["Ballade No. 1", "Prelude"]
    assert records[0].composer == "Frédéric Chopin" and records[1].year == 2004 and records[1].duration == 2.25
    assert records[0].audio_path == tmp_path / "2018" / "a.wav" and records[1].split == "test"
    (tmp_path / "2004" / "b.wav").unlink()
    with pytest.raises(CorpusError, match="missing"):
        read_maestro(path)
    assert len(read_maestro(path, check_files=False)) == 2


def test_read_folder(tmp_path):
    _wav(tmp_path / "spk1" / "a.wav")
    (tmp_path / "spk1" / "a.txt").write_text("hello   there\n")
    _wav(tmp_path / "b.wav")
    (tmp_path / "b.txt").write_text("bee")
    records = read_folder(tmp_path)
    assert [(r.id, r.text, r.speaker) for r in records] == [("b", "bee", ""), ("spk1/a", "hello there", "spk1")]
    _wav(tmp_path / "c.wav")
    with pytest.raises(CorpusError, match="no transcript"):
        read_folder(tmp_path)
    assert len(read_folder(tmp_path, check_text=False)) == 2


def _tone(n=16000):
    return (0.5 * np.sin(2 * np.pi * 220 * np.arange(n) / 16000)).astype(np.float32)


@pytest.mark.parametrize("kind", ["white", "pink", "babble"])
def test_add_noise_hits_snr_and_is_deterministic(kind):
    x = _tone()
    others = [_tone(5000) * 0.3, np.random.default_rng(9).standard_normal(7000).astype(np.float32)]
    y = augment.add_noise(x, 10.0, np.random.default_rng(1), kind, others)
    snr = 10 * np.log10(np.mean(x ** 2) / np.mean((y - x) ** 2))
    assert abs(snr - 10.0) < 0.01 and y.dtype == np.float32
    assert np.array_equal(y, augment.add_noise(x, 10.0, np.random.default_rng(1), kind, others))


def test_speed_reverb_gain():
    x = _tone()
    assert abs(len(augment.speed_perturb(x, 1.1)) - 16000 / 1.1) <= 2
    assert abs(len(augment.speed_perturb(x, 0.9)) - 16000 / 0.9) <= 2
    ir = augment.impulse_response(16000, 0.5, np.random.default_rng(0))
    assert ir[0] == 1.0 and np.abs(ir[-800:]).max() < 0.01 and len(ir) == 8000
    wet = augment.reverb(x, 16000, np.random.default_rng(0), rt60_s=0.5)
    assert wet.shape == x.shape and np.isclose(np.abs(wet).max(), np.abs(x).max())
    assert np.array_equal(wet, augment.reverb(x, 16000, np.random.default_rng(0), rt60_s=0.5))
    assert np.allclose(augment.gain(x, -6.0206), x / 2, atol=1e-6)
    a = augment.random_augment(x, 16000, np.random.default_rng(3), [x])
    assert np.array_equal(a, augment.random_augment(x, 16000, np.random.default_rng(3), [x]))
    assert np.abs(a).max() <= 1.0


def test_read_labels_splits_paths_and_missing_corpus(tmp_path):
    rows = [{"id": "a", "split": "train"}, {"id": "b", "split": "test", "path": "other/b.wav"}]
    (tmp_path / "labels.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    assert [r["id"] for r in read_labels(tmp_path)] == ["a", "b"]
    (test,) = read_labels(tmp_path, "test")
    assert test["wav_path"] == str(tmp_path / "other" / "b.wav")
    assert read_labels(tmp_path, "train")[0]["wav_path"] == str(tmp_path / "wavs" / "a.wav")
    with pytest.raises(FileNotFoundError, match="sparsewave data speech --out .* --voices x"):
        read_labels(tmp_path / "missing", hint="--voices x")
