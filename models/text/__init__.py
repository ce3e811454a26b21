"""Text frontend: normalization, espeak-ng phonemization, symbol tables, 200 Hz prosody features."""
from models.text.frontend import (FrontendConfig, prepare, text_to_features, text_to_ids, text_to_ipa,
                                  text_to_phones)
from models.text.normalize import normalize_text
from models.text.phonemize import FrontendError, NothingToSpeak, Phone, format_pho, ipa_tokens, mbrola_voice_path, parse_pho, pho
from models.text.prosody import (FRAME_RATE_HZ, LinguisticFeatures, feature_dim, features_from_phones, hop_for,
                                 to_model_input)
from models.text.symbols import SymbolTable, ipa_symbols, pho_symbols

__all__ = [
    "FRAME_RATE_HZ", "FrontendConfig", "FrontendError", "LinguisticFeatures", "NothingToSpeak", "Phone", "SymbolTable",
    "feature_dim", "features_from_phones", "format_pho", "hop_for", "ipa_symbols", "ipa_tokens",
    "mbrola_voice_path", "normalize_text", "parse_pho", "pho", "pho_symbols", "prepare", "text_to_features",
    "text_to_ids", "text_to_ipa", "text_to_phones", "to_model_input",
]
