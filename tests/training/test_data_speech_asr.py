"""The `asr` voice preset of the speech corpus (Deep Speech 2's training data)."""
import dataclasses
import json

import numpy as np
import pytest

from training.data.speech import build_speech
from training.data.voices import ASR_VOICES, BY_NAME, PRESETS, VOICES, available, synthesize

SENTENCES = {"train": ["The cat sat on the mat today.", "A bird in the hand is worth two in the bush."],
             "valid": ["Nobody knows the trouble I have seen."], "test": ["Time flies like an arrow, friend."]}


def _accent(voice):
    return voice.arg.split("+")[0] if voice.tool == "espeak" else None


def test_asr_preset_holds_out_whole_voices_and_accents():
    names = [v.name for v in ASR_VOICES]
    assert len(names) == len(set(names))
    by_split = {s: [v for v in ASR_VOICES if v.split == s] for s in ("train", "valid", "test")}
    assert len(by_split["train"]) >= 100 and by_split["valid"] and by_split["test"]
    train_accents = {_accent(v) for v in by_split["train"]} - {None}
    for split in ("valid", "test"):
        assert not {_accent(v) for v in by_split[split]} & train_accents  # a held-out accent, not just a variant
        assert {v.tool for v in by_split[split]} > {"espeak"}  # and other synthesizers too
    assert "mbrola" not in {v.tool for v in ASR_VOICES}  # no non-commercial voice
    assert PRESETS["default"] is VOICES and len(VOICES) == 28  # the TTS families' corpus is unchanged


@pytest.mark.skipif(not available(ASR_VOICES[0]), reason="espeak-ng needed")
def test_espeak_rate_changes_the_audio_length(tmp_path):
    voice = ASR_VOICES[0]
    slow, sr, _ = synthesize(dataclasses.replace(voice, rate=120), SENTENCES["train"][0], tmp_path / "slow")
    fast, _, _ = synthesize(dataclasses.replace(voice, rate=240), SENTENCES["train"][0], tmp_path / "fast")
    assert len(slow) > 1.5 * len(fast)


NAMES = ["espeak-en-us+m1", "flite-kal16", "espeak-en-gb-scotland+m1", "flite-slt", "pico-en-GB"]


@pytest.mark.skipif(not all(available(v) for v in ASR_VOICES if v.name in NAMES), reason="tools missing")
def test_build_with_asr_preset(tmp_path):
    summary = build_speech(tmp_path / "c", limit=6, seed=1, jobs=1, voice_names=NAMES, sentences=SENTENCES,
                           preset="asr")
    labels = [json.loads(line) for line in (tmp_path / "c" / "labels.jsonl").read_text().splitlines()]
    speakers = json.loads((tmp_path / "c" / "speakers.json").read_text())
    assert summary["preset"] == "asr" and list(speakers) == [v.name for v in ASR_VOICES]
    assert len(labels) == sum(summary["kept"].values()) >= 5
    asr = {v.name: v for v in ASR_VOICES}
    for r in labels:
        assert asr[r["speaker"]].split == r["split"] and r["text"] in SENTENCES[r["split"]]
        assert r["speaker_id"] == speakers[r["speaker"]]
    assert {r["split"] for r in labels} == {"train", "valid", "test"}
    with pytest.raises(ValueError, match="unknown voices"):
        build_speech(tmp_path / "d", limit=3, voice_names=["mb-us1"], sentences=SENTENCES, preset="asr")
    with pytest.raises(ValueError, match="unknown voice preset"):
        build_speech(tmp_path / "e", limit=3, sentences=SENTENCES, preset="nobody")


@pytest.mark.skipif(not all(available(v) for v in ASR_VOICES), reason="tools missing")
def test_cli_voices_accepts_a_preset_name(tmp_path, capsys):
    from training.cli import main

    assert main(["data", "speech", "--out", str(tmp_path / "c"), "--voices", "asr", "--limit", "3",
                 "--jobs", "1"]) == 0
    summary = json.loads((tmp_path / "c" / "summary.json").read_text())
    assert summary["preset"] == "asr" and sum(summary["kept"].values()) + sum(summary["dropped"].values()) == 3
    labels = [json.loads(line) for line in (tmp_path / "c" / "labels.jsonl").read_text().splitlines()]
    assert all(r["speaker"] in {v.name for v in ASR_VOICES} for r in labels)
    assert "mb-us1" in BY_NAME  # single voice names still select from the default preset
    assert main(["data", "speech", "--out", str(tmp_path / "x"), "--voices", "asr", "mb-us1"]) == 2
    assert "unknown voices" in capsys.readouterr().err


def test_asr_extra_preset_adds_train_speakers_of_other_synthesizers():
    from training.data.voices import ASR_EXTRA_VOICES

    names = [v.name for v in ASR_EXTRA_VOICES]
    assert len(names) == len(set(names)) and PRESETS["asr-extra"] is ASR_EXTRA_VOICES
    assert {v.split for v in ASR_EXTRA_VOICES} == {"train"} and "espeak" not in {v.tool for v in ASR_EXTRA_VOICES}
    held_out = {(v.tool, v.arg) for v in ASR_VOICES if v.split != "train"}
    assert not {(v.tool, v.arg) for v in ASR_EXTRA_VOICES} & held_out  # no valid/test voice speaks in train


def test_pico_markup_wraps_the_text():
    from training.data.voices import pico_markup

    assert pico_markup("hi there", (("pitch", "70"), ("speed", "120"))) == \
        "<speed level='120'><pitch level='70'>hi there</pitch></speed>"
    assert pico_markup("hi", ()) == "hi"
    with pytest.raises(ValueError, match="pico option"):
        pico_markup("hi", (("volume", "3"),))


@pytest.mark.parametrize("name", ["flite-kal16", "pico-en-US"])
def test_voice_options_change_pitch_and_tempo(tmp_path, name):
    from training.data.voices import ASR_EXTRA_VOICES

    voice = {v.name: v for v in ASR_EXTRA_VOICES}[name]
    if not available(voice):
        pytest.skip(f"{voice.tool} missing")
    pitch, tempo = ((("int_f0_target_mean", "200"),), (("duration_stretch", "1.6"),)) if voice.tool == "flite" \
        else ((("pitch", "180"),), (("speed", "60"),))
    say = lambda options, where: synthesize(dataclasses.replace(voice, options=options),  # noqa: E731
                                            SENTENCES["train"][0], tmp_path / where)[:2]
    (plain, sr), (high, _), (slow, _) = say((), "plain"), say(pitch, "high"), say(tempo, "slow")
    assert len(slow) > 1.3 * len(plain)  # the tempo option reaches the tool
    assert _median_f0(high, sr) > 1.25 * _median_f0(plain, sr)  # and so does the pitch option


def _median_f0(audio, sr):
    """Median pitch (Hz) of the voiced 40 ms frames, by autocorrelation over 60-400 Hz."""
    n, lo, hi = int(0.04 * sr), int(sr / 400), int(sr / 60)
    f0 = []
    for start in range(0, len(audio) - n, n // 2):
        x = audio[start:start + n] - audio[start:start + n].mean()
        ac = np.correlate(x, x, "full")[n - 1:]
        if ac[0] <= 0:
            continue
        lag = lo + int(np.argmax(ac[lo:hi]))
        if ac[lag] > 0.5 * ac[0]:  # voiced
            f0.append(sr / lag)
    return float(np.median(f0))
