import math
import shutil

import numpy as np
import pytest

from models.text import (FrontendError, Phone, SymbolTable, feature_dim, features_from_phones, format_pho,
                         ipa_symbols, mbrola_voice_path, normalize_text, parse_pho, pho_symbols, text_to_features,
                         text_to_ids, text_to_ipa, to_model_input)

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")


@pytest.mark.parametrize("raw, spoken", [
    ("Mr. Smith paid $3.50.", "Mister Smith paid three dollars fifty cents."),
    ("It rose 45% in the 1990s.", "It rose forty-five percent in the nineteen nineties."),
    ("At 3:05 p.m. and 10:00", "At three oh five p m and ten o'clock"),
    ("He came 21st of 1,000 runners in 1984!", "He came twenty-first of one thousand runners in nineteen eighty-four!"),
    ("On March 3, 2020 it cost $1.5 million.", "On March third, twenty twenty it cost one point five million dollars."),
    ("Meet me on 12/25/2021 at 7pm", "Meet me on December twenty-fifth, twenty twenty-one at seven p m"),
    ("Dr. No (No. 7) & co. \u201cquoted\u201d", "Doctor No, number seven, and company \"quoted\""),
    ("pi is 3.14, it's -5 degrees", "pi is three point one four, it's minus five degrees"),
])
def test_normalize_examples(raw, spoken):
    assert normalize_text(raw) == spoken


def test_pho_parse_and_format_round_trip():
    text = "h\t70\n@\t20\t 0 179 20 182 100 191\n\n; comment\nn\t144\t100 190\n_\t150\n"
    phones = parse_pho(text)
    assert [p.phoneme for p in phones] == ["h", "@", "n", "_"]
    assert phones[1].pitch == ((0, 179), (20, 182), (100, 191)) and phones[2].pitch == ((100, 190),)
    assert parse_pho(format_pho(phones)) == phones


def test_symbol_tables_serialize_and_encode():
    for table in (pho_symbols(), ipa_symbols()):
        assert SymbolTable.from_dict(table.to_dict()) == table
        assert table.symbols[:4] == ("<pad>", "<blank>", "<unk>", " ")
        assert table.encode(["\u2603"]) == [table.unk_id]
        assert "," in table and "." in table
    with pytest.raises(ValueError):
        SymbolTable(("a", "b"))


def test_features_from_phones_frames_and_layout():
    phones = [Phone("_", 50), Phone("h", 70), Phone("@", 20, ((0, 100), (100, 200))), Phone("l", 63),
              Phone("@U", 100, ((0, 200), (100, 100))), Phone("_", 22)]
    feats = features_from_phones(phones, speaker=2, sample_rate=24000)
    total_ms = sum(p.duration_ms for p in phones)  # 325 ms
    assert feats.n_frames == math.ceil(total_ms / 5) == 65 and feats.hop_length == 120
    assert feats.n_samples == 65 * 120
    table = pho_symbols()
    assert feats.phoneme[0] == table.encode(["_"])[0] and feats.phoneme[10] == table.encode(["h"])[0]
    assert feats.voiced[0] == 0 and feats.voiced[10] == 0 and feats.voiced[30] == 1
    assert 0 <= feats.position.min() and feats.position.max() <= 1
    assert np.isclose(feats.log_f0[0], math.log(100)) and np.isclose(feats.log_f0[-1], math.log(100))
    assert feats.log_f0.max() <= math.log(200) + 1e-6 and feats.log_f0.max() > math.log(190)
    x = to_model_input(feats, len(table), 3)
    assert x.shape == (65, feature_dim(len(table), 3)) == (65, len(table) + 7)
    assert x[:, : len(table)].sum(1).eq(1).all() and x[:, len(table) + 4 + 2].eq(1).all()
    with pytest.raises(ValueError):
        features_from_phones(phones, sample_rate=22050)


@needs_espeak
def test_text_to_features_matches_its_durations():
    pytest.importorskip("torch")
    try:
        mbrola_voice_path("mb-us1")
    except FrontendError:
        pytest.skip("mb-us1 not installed")
    from models.text import text_to_phones
    phones = text_to_phones("Hello there, it costs $5.")
    feats = text_to_features("Hello there, it costs $5.", speaker=0, sample_rate=16000)
    total_ms = sum(p.duration_ms for p in phones)
    assert feats.n_frames == math.ceil(total_ms / 5)
    assert abs(feats.n_samples - total_ms * 16) < 80
    assert feats.voiced.any() and (feats.log_f0 > math.log(50)).all()
    ids = text_to_ids("Hello there, it costs $5.")
    assert ipa_symbols().unk_id not in ids and ipa_symbols().encode([","])[0] in ids
    assert "," in text_to_ipa("Hello there, you.")


def test_missing_mbrola_voice_is_a_clear_error():
    with pytest.raises(FrontendError, match="not installed"):
        mbrola_voice_path("mb-zz9")
