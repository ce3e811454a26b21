import csv
import json

import mir_eval
import numpy as np
import pretty_midi
import pytest
import torch

from models.features import piano_config
from models.inference import Note
from models.midi import midi_to_notes
from models.onsets_frames import RULE_KEYS, OnsetsFramesConfig
from training.config import load_config
from training.objectives.onsets_frames import (OnsetsFramesDecodeConfig, OnsetsFramesObjective, OnsetsFramesRunConfig,
                                               PianoDataset, decode_rules, losses, mel_noise, mel_reverb, note_metrics,
                                               note_rolls, retune_bundle, split_records)

SR = 16000
CLIPS = {  # split -> notes (pitch, start, end, velocity); the test clip has a pedal from 1.0 to 2.2 s
    "train": [(60, 0.2, 0.9, 90), (64, 0.5, 1.4, 60), (72, 1.6, 2.6, 110), (48, 1.0, 2.0, 40)],
    "validation": [(62, 0.3, 1.0, 80), (67, 1.2, 2.2, 70)],
    "test": [(57, 0.25, 0.6, 100), (69, 0.8, 1.5, 50), (76, 1.9, 2.5, 75)],
}


def _synth(notes, seconds=3.0):
    t = np.arange(int(seconds * SR)) / SR
    audio = np.zeros_like(t)
    for n in notes:
        f = 440.0 * 2 ** ((n.pitch - 69) / 12)
        env = np.where((t >= n.onset_s) & (t < n.offset_s), np.exp(-3 * np.clip(t - n.onset_s, 0, None)), 0.0)
        audio += n.velocity / 127 * env * sum(np.sin(2 * np.pi * k * f * t) / k for k in (1, 2, 3))
    return (0.2 * audio).astype(np.float32)


@pytest.fixture(scope="module")
def maestro_dir(tmp_path_factory):
    """A tiny corpus in MAESTRO v2 csv layout: additive-synth audio and its MIDI."""
    import soundfile as sf

    root = tmp_path_factory.mktemp("maestro")
    (root / "2025").mkdir()
    rows = []
    for i, (split, notes) in enumerate(CLIPS.items()):
        pm = pretty_midi.PrettyMIDI()
        inst = pretty_midi.Instrument(0)
        inst.notes = [pretty_midi.Note(v, p, s, e) for p, s, e, v in notes]
        if split == "test":
            inst.control_changes += [pretty_midi.ControlChange(64, 127, 1.0), pretty_midi.ControlChange(64, 0, 2.2)]
        pm.instruments.append(inst)
        pm.write(str(root / f"2025/c{i}.midi"))
        sf.write(str(root / f"2025/c{i}.wav"), _synth(midi_to_notes(pm)), SR)
        rows.append({"canonical_composer": "Test", "canonical_title": f"clip {i}", "split": split, "year": 2025,
                     "midi_filename": f"2025/c{i}.midi", "audio_filename": f"2025/c{i}.wav", "duration": 3.0})
    with open(root / "maestro-v2.0.0.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root


def tiny_run_config(root, **overrides):
    items = [f"data.root={root}", "model.conv_channels=[2,2,4]", "model.dense=16", "model.lstm=8",
             "model.conv_dropout=0.0", "model.dense_dropout=0.0", "data.crop_frames=48", "decode.onset_grid=[0.4,0.6]",
             "decode.frame_grid=[0.5]", "loop.batch_size=1", "loop.progress=false"]
    return load_config(OnsetsFramesRunConfig, None, items + [f"{k}={v}" for k, v in overrides.items()])


def test_note_rolls_mark_onsets_frames_offsets_velocity_and_weights():
    rolls = note_rolls([Note(21, 0.1, 0.5, 127), Note(108, 0.0, 0.02, 64)], n_frames=20, fps=10.0,
                       frame_weight=5.0, weight_frames=2)
    assert np.flatnonzero(rolls["onset"][:, 0]).tolist() == [1]
    assert np.flatnonzero(rolls["frame"][:, 0]).tolist() == [1, 2, 3, 4]
    assert np.flatnonzero(rolls["offset"][:, 0]).tolist() == [5]
    assert rolls["velocity"][1, 0] == 1.0 and rolls["velocity"][0, 87] == pytest.approx(64 / 127)
    assert np.flatnonzero(rolls["frame"][:, 87]).tolist() == [0]  # at least one frame
    assert rolls["weight"][:, 0].tolist()[:7] == [1.0, 5.0, 5.0, 5.0, 2.5, 1.0, 1.0]


def test_maestro_fixture_is_parsed_into_aligned_crops(maestro_dir):
    cfg = tiny_run_config(maestro_dir)
    records = split_records(maestro_dir, "test")
    assert [r.title for r in records] == ["clip 2"]
    ds = PianoDataset(records, cfg.features, cfg.data, augment=False, model=cfg.model)
    full = ds.rolls[0]
    fps = piano_config().n_frames_per_second
    assert ds.mels[0].shape == (1 + 3 * SR // 512, 229)
    onsets = sorted((int(k) + 21, int(t)) for t, k in zip(*np.nonzero(full["onset"])))
    assert onsets == [(57, round(0.25 * fps)), (69, round(0.8 * fps)), (76, round(1.9 * fps))]
    # 69 is released at 1.5 s with the pedal down until 2.2 s: its frames run to the pedal lift
    assert np.flatnonzero(full["frame"][:, 69 - 21]).max() == round(2.2 * fps) - 1
    item = ds.get(0, np.random.default_rng(1))
    assert item["mel"].shape == (48, 229) and item["frame"].shape == (48, 88)
    again = ds.get(0, np.random.default_rng(1))
    assert all(torch.equal(item[k], again[k]) for k in item)


def test_metrics_equal_mir_eval_on_a_known_pair():
    ref = [Note(60, 1.0, 2.0, 80), Note(64, 1.0, 1.5, 60), Note(67, 2.0, 3.0, 100), Note(72, 3.0, 3.2, 30)]
    est = [Note(60, 1.03, 2.05, 80), Note(64, 0.96, 1.9, 62), Note(67, 2.2, 3.0, 100), Note(71, 3.0, 3.2, 30)]
    m = note_metrics(ref, est)
    # onsets within 50 ms: 60 and 64 -> P = R = 2/4; with offsets only 60 (64 ends 0.4 s late)
    assert m["note_f1"] == pytest.approx(0.5) and m["note_offset_f1"] == pytest.approx(0.25)
    hz = mir_eval.util.midi_to_hz
    ri = np.array([[n.onset_s, n.offset_s] for n in ref])
    ei = np.array([[n.onset_s, n.offset_s] for n in est])
    rp, ep = hz(np.array([n.pitch for n in ref], float)), hz(np.array([n.pitch for n in est], float))
    direct = mir_eval.transcription.precision_recall_f1_overlap(ri, rp, ei, ep, offset_ratio=None)
    assert (m["note_precision"], m["note_recall"], m["note_f1"]) == pytest.approx(direct[:3])
    direct = mir_eval.transcription.precision_recall_f1_overlap(ri, rp, ei, ep)
    assert m["note_offset_f1"] == pytest.approx(direct[2])
    times = np.arange(0, 3.3, 1 / 31.25)
    lists = [[np.array([hz(n.pitch) for n in notes if n.onset_s <= t < n.offset_s]) for t in times]
             for notes in (ref, est)]
    frame = mir_eval.multipitch.evaluate(times, lists[0], times, lists[1])
    assert (m["frame_precision"], m["frame_recall"]) == pytest.approx((frame["Precision"], frame["Recall"]))
    assert note_metrics(ref, ref)["note_offset_velocity_f1"] == pytest.approx(1.0)


def test_one_optimizer_step_lowers_the_loss_on_a_fixed_batch(maestro_dir):
    torch.manual_seed(0)
    cfg = tiny_run_config(maestro_dir)
    objective = OnsetsFramesObjective(cfg)
    model = objective.build_modules()["model"].train()
    ds = objective.train_dataset()
    batch = objective.collate([ds.get(0, np.random.default_rng(i)) for i in range(2)])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    before = losses(model, batch)["loss"]
    opt.zero_grad()
    before.backward()
    opt.step()
    after = losses(model, batch)["loss"]
    assert after.item() < before.item()


@pytest.mark.slow
def test_train_export_eval_and_bundle_round_trip(maestro_dir, tmp_path, capsys):
    from models.inference import load_runtime
    from models.onsets_frames import OnsetsFramesTranscriber
    from training.cli import main

    run_dir, bundle = tmp_path / "run", tmp_path / "bundle"
    args = ["train", "onsets-frames", "--run-dir", str(run_dir), f"data.root={maestro_dir}",
            "model.conv_channels=[2,2,4]", "model.dense=16", "model.lstm=8", "data.crop_frames=48",
            "decode.onset_grid=[0.3,0.6]", "decode.frame_grid=[0.5]", "loop.batch_size=1", "loop.max_steps=2",
            "loop.val_every=2", "loop.ckpt_every=2", "loop.progress=false"]
    assert main(args) == 0
    assert main(["export", str(run_dir), "-o", str(bundle)]) == 0
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["inference_defaults"]["onset_threshold"] in (0.3, 0.6)
    assert "model.onnx" in manifest["files"] and "TimGM6mb" not in manifest["licence"]
    loaded, runtime = load_runtime(bundle)
    audio = _synth(midi_to_notes(maestro_dir / "2025/c2.midi"))
    # the bundle transcribes as the exported model does in memory, and its ONNX graph agrees
    objective = OnsetsFramesObjective(load_config(OnsetsFramesRunConfig, run_dir / "config.yaml"))
    model = objective.build_modules()["model"]
    state = torch.load(sorted((run_dir / "checkpoints").glob("*.pt"))[-1], weights_only=True)
    model.load_state_dict(state["modules"]["model"])
    d = manifest["inference_defaults"]
    assert {k: d[k] for k in RULE_KEYS} == decode_rules(objective.config.decode)
    memory = OnsetsFramesTranscriber(model.eval(), onset_threshold=d["onset_threshold"],
                                     frame_threshold=d["frame_threshold"], **decode_rules(objective.config.decode))
    assert runtime.transcribe(audio) == memory.transcribe(audio)
    # retuning copies the weights and ONNX graph and writes the paper's rule when asked for it
    paper = OnsetsFramesDecodeConfig(peak_picking=False, min_note_frames=1, reonset_threshold=0.0,
                                     offset_threshold=0.0, onset_grid=(0.4,), frame_grid=(0.5,))
    retuned = retune_bundle(bundle, tmp_path / "retuned", [str(maestro_dir)], decode=paper)
    assert (retuned["onset_threshold"], retuned["min_note_frames"], retuned["peak_picking"]) == (0.4, 1, False)
    again = json.loads((tmp_path / "retuned/manifest.json").read_text())
    assert again["files"] == manifest["files"]
    assert again["provenance"]["tuned_on"]["clips"] == 1
    onnx = OnsetsFramesTranscriber.from_bundle(loaded, engine="onnx")
    a, b = runtime.activations(audio), onnx.activations(audio)
    assert all(np.allclose(a[k], b[k], atol=1e-5) for k in a)
    capsys.readouterr()
    assert main(["eval", "onsets-frames", "--model", str(bundle), "--data", str(maestro_dir)]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"note_f1", "note_offset_f1", "note_offset_velocity_f1", "frame_f1", "realtime_factor"} <= set(result)
    assert result["clips"] == 1
    out_mid = tmp_path / "out.mid"
    import soundfile as sf

    sf.write(str(tmp_path / "in.wav"), audio, SR)
    assert main(["transcribe", str(tmp_path / "in.wav"), "--model", str(bundle), "-o", str(out_mid)]) == 0
    assert len(midi_to_notes(out_mid)) == len(runtime.transcribe(audio))
    assert main(["transcribe", "--piano", str(tmp_path / "in.wav"), "--model", str(bundle), "-o", str(out_mid)]) == 0
    assert len(midi_to_notes(out_mid)) == len(runtime.transcribe(audio))


def test_paper_and_cpu_configs_load():
    for name in ("cpu", "cpu_wide", "paper", "smoke"):
        cfg = load_config(OnsetsFramesRunConfig, f"configs/onsets_frames/{name}.yaml")
        assert isinstance(cfg.model, OnsetsFramesConfig) and cfg.model.n_mels == cfg.features.n_mels == 229


def test_augmentation_shifts_level_and_spectral_envelope_only(maestro_dir):
    cfg = tiny_run_config(maestro_dir, **{"data.eq_db": 9.0, "data.gain_db": "[-6,6]"})
    records = split_records(maestro_dir, "train")
    plain = PianoDataset(records, cfg.features, cfg.data, augment=False, model=cfg.model)
    aug = PianoDataset(records, cfg.features, cfg.data, augment=True, model=cfg.model)
    a, b = plain.get(0, np.random.default_rng(5)), aug.get(0, np.random.default_rng(5))
    assert all(torch.equal(a[k], b[k]) for k in a if k != "mel")  # same crop, same labels
    floor = np.log(cfg.features.log_floor)
    loud = (a["mel"] > floor + 3) & (b["mel"] > floor + 3)
    diff = (b["mel"] - a["mel"])[loud].numpy()
    per_bin = (b["mel"] - a["mel"]).numpy()
    # one offset per mel bin, the same in every frame, within gain + EQ range (in ln power)
    cols = [per_bin[loud[:, j].numpy(), j] for j in range(per_bin.shape[1]) if loud[:, j].any()]
    assert all(np.ptp(c) < 1e-4 for c in cols)
    assert np.abs(diff).max() <= (6 + 9) / 10 * np.log(10) + 1e-4 and np.abs(diff).max() > 0.05


def test_room_and_noise_augmentation_is_seeded_and_physical():
    power = np.zeros((40, 229), np.float32)
    power[5] = 1.0  # one click
    wet = mel_reverb(power, 31.25, np.random.default_rng(0), rt60_s=(0.5, 0.5), drr_db=(6.0, 6.0))
    assert np.array_equal(wet, mel_reverb(power, 31.25, np.random.default_rng(0), (0.5, 0.5), (6.0, 6.0)))
    assert np.all(wet[:5] == 0) and np.all(wet[5] == 1.0)  # nothing before the click, direct sound kept
    tail = wet[6:, 0]
    assert np.all(np.diff(tail) < 0) and tail.sum() == pytest.approx(10 ** -0.6, rel=0.02)  # decays, -6 dB DRR
    loud = np.full((200, 229), 2.0, np.float32)
    noisy = mel_noise(loud, np.random.default_rng(1), snr_db=(20.0, 20.0))
    assert np.array_equal(noisy, mel_noise(loud, np.random.default_rng(1), (20.0, 20.0)))
    assert (noisy - loud).mean() == pytest.approx(2.0 * 0.01, rel=0.05) and np.all(noisy > loud)


def test_room_and_noise_in_the_training_crops(maestro_dir):
    cfg = tiny_run_config(maestro_dir, **{"data.reverb_prob": 1.0, "data.noise_prob": 1.0,
                                          "data.extra_train_roots": f"[{maestro_dir}]"})
    obj = OnsetsFramesObjective(cfg)
    ds = obj.train_dataset()
    assert len(ds) == 2  # the train clip of data.root and of the extra root
    a, b = ds.get(0, np.random.default_rng(3)), ds.get(0, np.random.default_rng(3))
    assert all(torch.equal(a[k], b[k]) for k in a)
    plain = PianoDataset(ds.records, cfg.features, cfg.data, augment=False, model=cfg.model).get(
        0, np.random.default_rng(3))
    assert torch.equal(a["onset"], plain["onset"]) and not torch.equal(a["mel"], plain["mel"])
    assert len(obj.val_dataset()) == 1  # validation comes from data.root only
