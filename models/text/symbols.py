"""Symbol tables: phoneme inventory + punctuation + pad/blank/unknown, serializable into bundles.

Two standard tables:
- `pho_symbols()`: the phoneme names of espeak-ng's MBROLA output (us1-3 and
  en1 SAMPA-like names, `_` is silence); the 200 Hz linguistic features index it.
- `ipa_symbols()`: single IPA characters as printed by `espeak-ng --ipa`, plus
  stress and length marks; token sequences (EATS, phoneme CTC) index it.
Index 0 is always <pad>, 1 <blank> (CTC), 2 <unk>, 3 the word space.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterable

PAD, BLANK, UNK, SPACE = "<pad>", "<blank>", "<unk>", " "
SPECIALS = (PAD, BLANK, UNK, SPACE)
PUNCTUATION = tuple(",.;:!?-'\"")
PHO_PHONEMES = tuple(
    "_ @ I r n s t z @U l d i E V m { k w r= v f D u AI p EI b O A t_h j h g N k_h 4 T S U dZ aU p_h tS OI "
    "Z A~ o l/ l= O2 I@ e Q i: 5 u: aI eI O: A: 3: e@ U@ n- V@ I@ @@ 3 aI@ aU@ ?".split()
)
IPA_CHARACTERS = tuple(
    "ˈˌːˑ̩ ɪiɛeæaɑɒɔoʊuʌəɚɜɐᵻɝyøœɨʉɯ ptkbdgʔɾɡfvθðszʃʒhxçɣχʁ mnŋɲɱ lɹrɬʎɫɻʀ wjʍ".replace(" ", "")
)


@dataclasses.dataclass(frozen=True)
class SymbolTable:
    """An ordered list of symbols; `encode` maps unknown symbols to <unk>."""

    symbols: tuple[str, ...]

    def __post_init__(self):
        if tuple(self.symbols[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"a symbol table must start with {SPECIALS}")
        if len(set(self.symbols)) != len(self.symbols):
            raise ValueError("a symbol table must not repeat symbols")
        object.__setattr__(self, "_index", {s: i for i, s in enumerate(self.symbols)})

    @classmethod
    def build(cls, inventory: Iterable[str]) -> "SymbolTable":
        """Specials, punctuation, then the inventory (first occurrence kept)."""
        seen = dict.fromkeys([*SPECIALS, *PUNCTUATION, *inventory])
        return cls(tuple(seen))

    def __len__(self) -> int:
        return len(self.symbols)

    def __contains__(self, symbol: str) -> bool:
        return symbol in self._index

    @property
    def pad_id(self) -> int:
        return 0

    @property
    def blank_id(self) -> int:
        return 1

    @property
    def unk_id(self) -> int:
        return 2

    def encode(self, symbols: Iterable[str]) -> list[int]:
        return [self._index.get(s, 2) for s in symbols]

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.symbols[i] for i in ids if i not in (0, 1)]

    def to_dict(self) -> dict[str, Any]:
        return {"symbols": list(self.symbols), "pad": PAD, "blank": BLANK, "unk": UNK}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SymbolTable":
        if "symbols" not in data:
            raise ValueError("symbol table dict has no 'symbols'")
        return cls(tuple(data["symbols"]))


def pho_symbols() -> SymbolTable:
    return SymbolTable.build(PHO_PHONEMES)


def ipa_symbols() -> SymbolTable:
    return SymbolTable.build(IPA_CHARACTERS)
