# The tokenizers, one interface: CharTokenizer (one token per character), BPETokenizer (GPT-2's byte-level
# BPE, in shared/bpe.py) and WordTokenizer (words and the runs between them). Each has
#   kind ("char", "bpe", "word"), vocab_size, encode(str) -> int64 array, decode(ids) -> str
#   (an id outside [0, vocab_size) is an InputError), to_json() / from_json(s) (what a checkpoint's
#   metadata carries), save(folder);
# and tokenizer_from_json(s) / load_tokenizer(folder) give back whichever kind was saved.
#
# On disk: bpe is vocab.json + merges.txt (Hugging Face's GPT-2 files), or a Hugging Face tokenizer.json;
# char and word are a tokenizer.json of our own, {"kind": ..., ...}. A tokenizer.json with "kind" is
# ours, one with "model" is Hugging Face's.
import json
import os
import re
from pathlib import Path

import numpy as np

from shared.bpe import BPETokenizer, check_ids, parse_json, read_json
from shared.errors import InputError

TOKENIZER_FILE = "tokenizer.json"


class CharTokenizer:
    """One token per distinct character, ids in sorted character order (nanoGPT's shakespeare_char
    prepare.py), so Tiny Shakespeare gives the same 65 ids everywhere."""

    kind = "char"

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
        # vectorized, as a corpus of many MB needs: each character's code point is looked up among the
        # vocabulary's, sorted (surrogatepass: a str may hold a lone surrogate, and so may the vocabulary)
        points = np.frombuffer(s.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        vocab = np.frombuffer(self.chars.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        order = np.argsort(vocab)
        at = np.searchsorted(vocab[order], points)
        unknown = at == len(vocab)  # past the largest (or an empty vocabulary)
        unknown[~unknown] = vocab[order][at[~unknown]] != points[~unknown]
        if unknown.any():
            chars = "".join(sorted(set(points[unknown].tobytes().decode("utf-32-le", "surrogatepass"))))
            raise InputError(f"characters not in the tokenizer's vocabulary: {chars!r}")
        return order[at].astype(np.int64)

    def decode(self, ids) -> str:
        return "".join(self.chars[i] for i in check_ids(ids, self.vocab_size))

    def to_json(self) -> str:
        # a bare JSON string, as checkpoints have always stored it
        return json.dumps(self.chars)

    @classmethod
    def from_dict(cls, d, where: str = "tokenizer JSON") -> "CharTokenizer":
        """to_json()'s string, or save()'s {"kind": "char", "chars": ...}, parsed."""
        chars = d.get("chars") if isinstance(d, dict) else d
        if not isinstance(chars, str):
            raise InputError(f"{where}: a char tokenizer is a JSON string of its characters")
        return cls(chars)

    @classmethod
    def from_json(cls, s: str) -> "CharTokenizer":
        return cls.from_dict(parse_json(s, "tokenizer JSON"))

    def save(self, folder) -> None:
        _write_own(folder, {"kind": "char", "chars": self.chars})


# re.split(r"\b") cuts at every boundary between a word character and another: "Hi, you!" gives "Hi",
# ", ", "you", "!". Pieces alternate between words and the runs of everything else.
WORD_BOUNDARY = re.compile(r"\b")
UNK = "<unk>"


def word_pieces(text: str) -> list[str]:
    return [p for p in WORD_BOUNDARY.split(text) if p]


class WordTokenizer:
    """The most frequent pieces of re.split(r"\\b", text) (Hilton's curriculum), and <unk>, id 0, for
    every other piece. Ids 1.. in order of frequency, ties in order of first appearance. No piece can
    be "<unk>" ("<" and "u" have a boundary between them), so decode's "<unk>" is never a real piece."""

    kind = "word"

    def __init__(self, words: list[str]):
        if not all(isinstance(w, str) and w for w in words) or len(set(words)) != len(words):
            raise InputError("word tokenizer: the words must be distinct non-empty strings")
        if UNK in words:
            raise InputError(f"word tokenizer: {UNK!r} is the unknown token, id 0, not a word")
        self.words = [UNK, *words]
        self.stoi = {w: i for i, w in enumerate(self.words)}

    @classmethod
    def train(cls, text: str, vocab_size: int) -> "WordTokenizer":
        """The vocab_size - 1 most frequent pieces (fewer when the text has fewer), and <unk>."""
        if type(vocab_size) is not int or vocab_size < 1:
            raise InputError(f"vocab_size must be an int >= 1 (<unk> and the words), got {vocab_size!r}")
        counts: dict[str, int] = {}
        for p in word_pieces(text):
            counts[p] = counts.get(p, 0) + 1
        # sorted() is stable and counts keeps first appearances in order: ties stay in that order
        return cls(sorted(counts, key=lambda p: -counts[p])[: vocab_size - 1])

    @property
    def vocab_size(self) -> int:
        return len(self.words)

    def encode(self, s: str) -> np.ndarray:
        return np.array([self.stoi.get(p, 0) for p in word_pieces(s)], dtype=np.int64)

    def decode(self, ids) -> str:
        return "".join(self.words[i] for i in check_ids(ids, self.vocab_size))

    def to_json(self) -> str:
        return json.dumps({"kind": "word", "words": self.words[1:]}, ensure_ascii=False)

    @classmethod
    def from_dict(cls, d, where: str = "tokenizer JSON") -> "WordTokenizer":
        words = d.get("words") if isinstance(d, dict) else None
        if not isinstance(words, list):
            raise InputError(f"{where}: a word tokenizer needs a 'words' list (the words of ids 1..)")
        return cls(words)

    @classmethod
    def from_json(cls, s: str) -> "WordTokenizer":
        return cls.from_dict(parse_json(s, "tokenizer JSON"))

    def save(self, folder) -> None:
        _write_own(folder, json.loads(self.to_json()))


KINDS = {"char": CharTokenizer, "bpe": BPETokenizer, "word": WordTokenizer}


def tokenizer_from_json(s: str, where: str = "tokenizer JSON"):
    """Any to_json() text, or a tokenizer.json: a bare JSON string is a char tokenizer (checkpoints from
    before the other kinds), an object with "kind" one of ours, an object with "model" Hugging Face's."""
    return tokenizer_from_dict(parse_json(s, where), where)


def tokenizer_from_dict(d, where: str):
    if isinstance(d, str):
        return CharTokenizer(d)
    if isinstance(d, dict) and "kind" in d:
        if not isinstance(d["kind"], str) or d["kind"] not in KINDS:
            raise InputError(f"{where}: unknown tokenizer kind {d['kind']!r} (known: {', '.join(KINDS)})")
        return KINDS[d["kind"]].from_dict(d, where)
    if isinstance(d, dict) and "model" in d:
        return BPETokenizer.from_hf_dict(d, where)
    raise InputError(f"{where}: neither a tokenizer of ours (no 'kind') nor Hugging Face's (no 'model')")


def load_tokenizer(folder):
    """The tokenizer saved in folder: its tokenizer.json (save()'s, any kind's to_json() text as a token
    folder holds it, or Hugging Face's, which wins over the vocab.json + merges.txt beside it, as in
    transformers), else vocab.json + merges.txt."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder (a tokenizer is a folder of files)")
    if os.path.lexists(folder / TOKENIZER_FILE):  # read_json refuses what is not a regular file
        path = folder / TOKENIZER_FILE
        return tokenizer_from_dict(read_json(path), str(path))
    if (folder / "vocab.json").exists() or (folder / "merges.txt").exists():
        return BPETokenizer.from_files(folder / "vocab.json", folder / "merges.txt")
    raise InputError(f"{folder}: holds no {TOKENIZER_FILE}, nor vocab.json and merges.txt")


def _write_own(folder, d: dict) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / TOKENIZER_FILE).write_text(json.dumps(d, ensure_ascii=False), encoding="utf-8")
