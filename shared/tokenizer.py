# A character-level tokenizer: one token per distinct character, ids in sorted character order
# (nanoGPT's shakespeare_char prepare.py), so Tiny Shakespeare gives the same 65 ids everywhere.
import json

import numpy as np

from shared.errors import InputError


class CharTokenizer:
    def __init__(self, chars: str):
        if len(set(chars)) != len(chars):
            raise InputError("tokenizer characters must be distinct")
        self.chars = chars
        self.stoi = {c: i for i, c in enumerate(chars)}

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        return cls("".join(sorted(set(text))))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, s: str) -> np.ndarray:
        unknown = sorted(set(s) - self.stoi.keys())
        if unknown:
            raise InputError(f"characters not in the tokenizer's vocabulary: {''.join(unknown)!r}")
        return np.array([self.stoi[c] for c in s], dtype=np.int64)

    def decode(self, ids) -> str:
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < len(self.chars)]
        if bad:  # a negative id would otherwise index from the end and decode silently
            raise InputError(f"token id {bad[0]} outside [0, {self.vocab_size})")
        return "".join(self.chars[i] for i in ids)

    def to_json(self) -> str:
        return json.dumps(self.chars)

    @classmethod
    def from_json(cls, s: str) -> "CharTokenizer":
        return cls(json.loads(s))
