import numpy as np
import pytest
import torch

from models.onsets_frames import (OnsetsAndFrames, OnsetsFramesConfig, OnsetsFramesTranscriber, chunk_windows,
                                  decode_notes, export_onnx, notes_to_json)


def tiny_config(**overrides) -> OnsetsFramesConfig:
    base = dict(n_mels=16, n_keys=88, conv_channels=(2, 2, 4), dense=8, lstm=4, shared_acoustic=False)
    return OnsetsFramesConfig(**{**base, **overrides})


def tiny_model(seed: int = 0, **overrides) -> OnsetsAndFrames:
    torch.manual_seed(seed)
    return OnsetsAndFrames(tiny_config(**overrides)).eval()


@pytest.mark.parametrize("shared,skip", [(False, False), (True, True)])
def test_output_shapes_and_ranges(shared, skip):
    model = tiny_model(shared_acoustic=shared, head_skip=skip, input_shift=6.0, input_scale=0.3)
    out = model(torch.randn(2, 11, 16))
    assert {k: tuple(v.shape) for k, v in out.items()} == {k: (2, 11, 88) for k in ("onset", "offset", "frame",
                                                                                        "velocity")}
    probs = model.infer(torch.randn(1, 7, 16))
    assert all(p.shape == (1, 7, 88) and float(p.min()) >= 0 and float(p.max()) <= 1 for p in probs)
    assert len(model.acoustic) == (1 if shared else 4)


@pytest.mark.parametrize("skip", [False, True])
def test_frame_loss_sends_no_gradient_into_the_onset_and_offset_stacks(skip):
    model = tiny_model(head_skip=skip).train()
    model(torch.randn(2, 9, 16))["frame"].sum().backward()
    onset_offset = [model.onset_head, model.offset_head, *[model.skip[k] for k in ("onset", "offset") if skip]]
    for module in onset_offset:
        assert all(p.grad is None for p in module.parameters())
    for name in ("onset", "offset"):
        assert all(p.grad is None for p in model.acoustic[name].parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.combined_head.parameters())


def _acts(n_frames=30):
    z = np.zeros((n_frames, 88), np.float32)
    return z.copy(), z.copy(), np.full((n_frames, 88), 0.5, np.float32)


def test_a_note_starts_only_where_the_onset_detector_fires():
    onset, frame, velocity = _acts()
    frame[3:12, 40] = 0.9  # frames without an onset: no note
    onset[5, 10], frame[5:9, 10] = 0.8, 0.7  # onset + frames: note of frames 5..8
    onset[15:17, 20], frame[15:25, 20] = 0.9, 0.9  # a two-frame onset is one note
    velocity[15, 20] = 1.0
    notes = decode_notes(onset, frame, velocity, 0.5, 0.5, frames_per_second=10.0, min_pitch=21)
    assert [(n.pitch, n.onset_s, n.offset_s, n.velocity) for n in notes] == [
        (31, 0.5, 0.9, 64), (41, 1.5, 2.5, 127)]


def test_a_new_onset_ends_the_note_and_onset_frames_count_as_on():
    onset, frame, velocity = _acts()
    onset[2, 0], onset[6, 0] = 0.9, 0.9
    frame[2:10, 0] = 0.9  # held through a re-strike at frame 6
    onset[20, 87] = 0.9  # an onset with no frame activity still gives a one-frame note
    notes = decode_notes(onset, frame, velocity, frames_per_second=10.0)
    assert [(n.pitch, n.onset_s, n.offset_s) for n in notes] == [(21, 0.2, 0.6), (21, 0.6, 1.0), (108, 2.0, 2.1)]


def test_thresholds_decide_what_counts():
    onset, frame, velocity = _acts()
    onset[4, 5], frame[4:10, 5] = 0.45, 0.35
    assert decode_notes(onset, frame, velocity, 0.5, 0.3) == []
    (note,) = decode_notes(onset, frame, velocity, 0.4, 0.3, frames_per_second=10.0)
    assert (note.onset_s, note.offset_s) == (0.4, 1.0)
    (note,) = decode_notes(onset, frame, velocity, 0.4, 0.4, frames_per_second=10.0)
    assert note.offset_s == 0.5
    assert notes_to_json([note]) == [{"pitch": 26, "onset_s": 0.4, "offset_s": 0.5, "velocity": 64}]


def test_peak_picking_times_the_note_at_the_onset_peak():
    onset, frame, velocity = _acts()
    onset[3:7, 9] = [0.2, 0.6, 0.9, 0.5]  # one run above 0.1, peaking at frame 5
    frame[3:12, 9] = 0.9
    (first,) = decode_notes(onset, frame, velocity, 0.1, 0.5, frames_per_second=10.0)
    (peak,) = decode_notes(onset, frame, velocity, 0.1, 0.5, frames_per_second=10.0, peak_picking=True)
    assert (first.onset_s, peak.onset_s, peak.offset_s) == (0.3, 0.5, 1.2)
    onset[8:10, 9] = [0.3, 0.2]  # a second local maximum, a re-onset inside the held note
    assert len(decode_notes(onset, frame, velocity, 0.1, 0.5, peak_picking=True)) == 2


def test_a_weak_onset_inside_a_held_note_does_not_split_it():
    onset, frame, velocity = _acts()
    frame[2:20, 0] = 0.9
    onset[2, 0], onset[8, 0], onset[14, 0] = 0.9, 0.3, 0.8  # a ripple at 8, a re-strike at 14
    onset[25, 0], frame[25:28, 0] = 0.3, 0.9  # a weak onset after silence still starts a note
    kw = dict(frames_per_second=10.0, reonset_threshold=0.5)
    notes = decode_notes(onset, frame, velocity, 0.2, 0.5, **kw)
    assert [(n.onset_s, n.offset_s) for n in notes] == [(0.2, 1.4), (1.4, 2.0), (2.5, 2.8)]
    assert len(decode_notes(onset, frame, velocity, 0.2, 0.5, frames_per_second=10.0)) == 4


def test_offset_head_and_minimum_length_rules():
    onset, frame, velocity = _acts()
    onset[2, 3], frame[2:12, 3] = 0.9, 0.9
    offset = np.zeros_like(onset)
    offset[7, 3] = 0.8  # the offset detector ends the note although the frame detector stays on
    (note,) = decode_notes(onset, frame, velocity, 0.5, 0.5, frames_per_second=10.0, offset=offset,
                           offset_threshold=0.5)
    assert note.offset_s == 0.7
    onset[20, 50], frame[20:22, 50] = 0.9, 0.9  # a two-frame blip
    assert len(decode_notes(onset, frame, velocity, min_note_frames=2)) == 2
    assert len(decode_notes(onset, frame, velocity, min_note_frames=3)) == 1


def test_chunk_windows_tile_the_file_with_context():
    for n, chunk, ctx in ((1000, 100, 10), (101, 100, 10), (250, 64, 8), (50, 100, 10)):
        windows = chunk_windows(n, chunk, ctx)
        covered = np.concatenate([np.arange(a, b) for _, _, a, b in windows])
        assert np.array_equal(covered, np.arange(n))
        for ws, we, a, b in windows:
            assert we - ws == min(chunk, n) and ws <= a < b <= we
            assert a - ws >= ctx or ws == 0
            assert we - b >= ctx or we == n


def test_chunked_inference_equals_whole_file_inference():
    model = tiny_model(seed=3)
    mel = np.random.default_rng(0).standard_normal((700, 16)).astype(np.float32) * 3
    whole = OnsetsFramesTranscriber(model, chunk_frames=10_000, onset_threshold=0.5, frame_threshold=0.5)
    chunked = OnsetsFramesTranscriber(model, chunk_frames=160, context_frames=40, batch_windows=3,
                                      onset_threshold=0.5, frame_threshold=0.5)
    a, b = whole.activations_from_mel(mel), chunked.activations_from_mel(mel)
    for key in a:  # the BiLSTM's memory of frames beyond the context is all that differs
        np.testing.assert_allclose(a[key], b[key], atol=1e-4)
    assert whole.decode(a) == chunked.decode(b)


def test_onnx_matches_eager(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    model = tiny_model(seed=1)
    path = export_onnx(model, tmp_path / "m.onnx", n_frames=12)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    mel = torch.randn(2, 37, 16)
    got = session.run(None, {"mel": mel.numpy()})
    assert not model.training
    for eager, onnx_out in zip(model.infer(mel), got):
        np.testing.assert_allclose(eager.numpy(), onnx_out, atol=1e-5)


def test_transcriber_rejects_unknown_decoding_settings():
    with pytest.raises(ValueError, match="unknown decoding settings"):
        OnsetsFramesTranscriber(tiny_model(), min_note_len=3)


def test_transcribe_rejects_bad_audio():
    model = tiny_model()
    with pytest.raises(ValueError):
        OnsetsFramesTranscriber(model).transcribe(np.zeros((2, 100), np.float32))
