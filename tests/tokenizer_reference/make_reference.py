"""What Hugging Face makes of Tiny Shakespeare with byte-level BPE: the outside truth of
tests/test_tokenizers.py for shared/bpe.py's BPETokenizer and its trainer.

    pip install -e '.[reference]'                             # tokenizers and transformers, pinned
    python -m tests.tokenizer_reference.make_reference        # needs Tiny Shakespeare

Hugging Face `tokenizers` (Rust) trains its byte-level BPE on the whole corpus as one text, configured as
GPT-2's: a ByteLevel pre-tokenizer without prefix space (GPT-2's pattern), initial_alphabet
ByteLevel.alphabet() (all 256 bytes), the special token <|endoftext|>, min_frequency 0. It writes, all
committed in tests/tokenizer_reference/shakespeare/ (about 1 MB):

- bpe512/ and bpe8192/: vocab.json and merges.txt as Hugging Face saves them (BPE.save), and for 512
  its tokenizer.json too;
- bpe512.ids.xz, bpe8192.ids.xz: the ids Hugging Face gives the whole corpus, little-endian uint16,
  lzma-compressed;
- reference.json:
  - "hard": for each vocabulary and each of HARD: the ids, the text decoded from them, and the text
    of each id decoded alone (a lone byte of a multi-byte character decodes to U+FFFD);
  - "decode": id sequences that are not valid UTF-8 (truncated, overlong, surrogate, stray bytes; then
    random ids) and what Hugging Face decodes from them;
  - "trainer": for trainings too large to commit (the whole merge list, 21,528 tokens; min_frequency
    2) and for small synthetic texts that stress ties, the SHA-256 of Hugging Face's vocab.json and
    merges.txt;
  - "our_files": the ids Hugging Face gives the corpus (SHA-256) and the hard strings when it reads the
    files written by our trainer (BPETokenizer.train(...).save), through `tokenizers` and through
    transformers' GPT2TokenizerFast, which agree (checked here).

The script checks along the way that transformers' GPT2TokenizerFast reading the saved files agrees with
`tokenizers`, and that decoding the corpus ids gives the corpus back.
"""

import hashlib
import json
import lzma
import random
import shutil
import tempfile
from pathlib import Path

import numpy as np
from tokenizers import ByteLevelBPETokenizer, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPT2TokenizerFast

from shared.bpe import BYTE_CHARS, ENDOFTEXT, BPETokenizer
from shared.data import shakespeare_path

HERE = Path(__file__).resolve().parent / "shakespeare"
VOCABS = [512, 8192]  # committed: files and corpus ids
WHOLE = 100_000  # more than the corpus gives: training runs until every piece is one token (21,528)
HARD = [
    "",
    " ",
    "   ",
    "\n",
    "\n\n\n",
    "\t",
    " \t\n \r\n",
    "   leading spaces",
    "trailing spaces   ",
    "  both  ",
    "two  spaces   three    four",
    "line one\nline two\n\n  indented\n",
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n",
    "Hello, world!",
    "I'm can't won't they're we've you'll he'd it's",
    "I'M CAN'T THEY'RE",  # the pattern's contractions are lower case only
    "'s's ''t 'll've' 're",
    "rock 'n' roll",
    "1234567890 3.14159 1,000,000 x2 y22 z2222",
    "\u0661\u0662\u0663 \u00bd \u216b",  # Arabic-Indic digits, a vulgar fraction, a Roman numeral
    "\U0001f600 \U0001f603\U0001f44d\U0001f3fd \U0001f468\u200d\U0001f469\u200d\U0001f467 \U0001f1eb\U0001f1f7",
    "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8\u3002\u4e2d\u6587\u5b57\u7b26",  # Japanese, Chinese
    "\ud55c\uad6d\uc5b4 \u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645 \u05e9\u05dc\u05d5\u05dd",
    "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440! \u039a\u03b1\u03bb\u03b7\u03bc\u03ad\u03c1\u03b1",
    "e\u0301 n\u0303 Z\u0351\u036b\u0343a\u0352l\u0350g\u033do",  # combining marks
    "H\u00e9llo w\u00f6rld na\u00efve caf\u00e9 \ufb01 \u210c\U0001d522\U0001d529",
    "<|endoftext|>",
    "a<|endoftext|>b",
    "<|endoftext|><|endoftext|>",
    " <|endoftext|> ",
    "end.<|endoftext|>\n\nThe next document",
    "<|endoftext| <|endoftext <endoftext|> |endoftext|>",
    "a\u00a0b \u3000c \u2028d \x85e \x1cf \x0b\x0cg \u200bh \ufeffi",  # whitespace and not-quite
    "\x00\x01\x7f control",
    "a" * 100,
    " " * 40 + "x",
    "-" * 80 + "\n" + "=" * 12,
    "!!!??? ...;;; ---",
    "MixedCASE camelCase snake_case kebab-case",
    "https://example.com/path?q=1&r=2#frag",
    "tab\tseparated\tvalues\n1\t2\t3",
]


def hf_tokenizer() -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return tok


def hf_train(text: str, vocab_size: int, min_frequency: int = 0) -> Tokenizer:
    tok = hf_tokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[ENDOFTEXT],
    )
    tok.train_from_iterator([text], trainer=trainer)
    return tok


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def saved_hashes(tok: Tokenizer) -> dict:
    with tempfile.TemporaryDirectory() as d:
        tok.model.save(d)
        files = {name: (Path(d) / name).read_bytes() for name in ("vocab.json", "merges.txt")}
    hashes = {name: {"sha256": sha256(b), "bytes": len(b)} for name, b in files.items()}
    return hashes | {"tokens": tok.get_vocab_size()}


def load_saved(folder: Path) -> Tokenizer:
    """vocab.json + merges.txt as transformers reads a GPT-2 download (GPT2TokenizerFast.from_pretrained,
    <|endoftext|> special), checked against `tokenizers`' ByteLevelBPETokenizer reading them (which
    knows no special token) on the hard strings without <|endoftext|>."""
    with tempfile.TemporaryDirectory() as d:
        for name in ("vocab.json", "merges.txt"):
            shutil.copy(folder / name, Path(d) / name)
        fast = GPT2TokenizerFast.from_pretrained(d)
    plain = ByteLevelBPETokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    assert fast.backend_tokenizer.get_vocab_size() == plain.get_vocab_size()
    for s in HARD:
        assert fast.encode(s) == fast.backend_tokenizer.encode(s).ids, s
        if ENDOFTEXT not in s:
            assert fast.encode(s) == plain.encode(s).ids, s
    return fast.backend_tokenizer


def encodings(tok: Tokenizer, text: str) -> tuple[np.ndarray, list]:
    ids = np.array(tok.encode(text).ids, dtype=np.uint16)
    assert tok.decode(ids.tolist(), skip_special_tokens=False) == text
    hard = []
    for s in HARD:
        hids = tok.encode(s).ids
        one = [tok.decode([i], skip_special_tokens=False) for i in hids]
        hard.append(
            {"text": s, "ids": hids, "decoded": tok.decode(hids, skip_special_tokens=False), "each": one}
        )
    return ids, hard


def invalid_utf8(tok: Tokenizer, vocab_size: int) -> list:
    """Id sequences whose bytes are not UTF-8, and what Hugging Face decodes from them."""
    vocab = tok.get_vocab()

    def byte_id(b: int) -> int:  # the id of one byte's token
        return vocab[BYTE_CHARS[b]]

    sequences = [
        [byte_id(0xC3)],  # the first byte of "é"
        [byte_id(0xE2), byte_id(0x82)],  # two of "€"'s three bytes
        [byte_id(0xF0), byte_id(0x9F), byte_id(0x98)],  # three of "😀"'s four
        [byte_id(0x80)],  # a continuation byte alone
        [byte_id(0xFF), byte_id(0xFE)],  # never in UTF-8
        [byte_id(0xC0), byte_id(0xAF)],  # an overlong "/"
        [byte_id(0xED), byte_id(0xA0), byte_id(0x80)],  # a surrogate, U+D800
        [byte_id(0xF4), byte_id(0x90), byte_id(0x80), byte_id(0x80)],  # past U+10FFFF
        [vocab["a"], byte_id(0xC3), vocab["b"]],
        [
            byte_id(0xE2),
            byte_id(0x82),
            byte_id(0xE2),
            byte_id(0x82),
            byte_id(0xAC),
        ],  # a truncated "€", then a whole one
        [byte_id(0xF0), vocab["Ġ"], byte_id(0x9F)],
    ]
    rng = random.Random(vocab_size)
    sequences += [[rng.randrange(vocab_size) for _ in range(rng.randint(1, 8))] for _ in range(200)]
    return [{"ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False)} for ids in sequences]


def synthetic_texts() -> list[dict]:
    """Small texts of few characters: many pairs tie, so the tie-breaking rule decides most merges."""
    rng = random.Random(0)
    out = []
    for alphabet, vocab_size, min_frequency in [
        ("ab ", 400, 0),
        ("abc ", 2000, 0),
        ("aab\n", 2000, 0),
        ("xyz!?'s \n", 2000, 2),
        ("a\u00e9\u20ac\U0001f600 ", 2000, 0),
        ("ab", 300, 0),
        ("the cat sat on a mat. ", 600, 0),
        ("\t \n01", 2000, 0),
    ]:
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(500, 3000)))
        out.append({"text": text, "vocab_size": vocab_size, "min_frequency": min_frequency})
    return out


def main():
    text = shakespeare_path().read_text(encoding="utf-8")
    if HERE.exists():
        shutil.rmtree(HERE)
    HERE.mkdir(parents=True)
    ref = {"hard": {}, "decode": {}, "trainer": [], "our_files": {}}
    for V in VOCABS:
        folder = HERE / f"bpe{V}"
        folder.mkdir()
        tok = hf_train(text, V)
        tok.model.save(str(folder))
        if V == VOCABS[0]:
            tok.save(str(folder / "tokenizer.json"))
        loaded = load_saved(folder)
        ids, ref["hard"][V] = encodings(tok, text)
        assert encodings(loaded, text)[0].tolist() == ids.tolist()
        (HERE / f"bpe{V}.ids.xz").write_bytes(lzma.compress(ids.astype("<u2").tobytes(), preset=9))
        ref["decode"][V] = invalid_utf8(tok, V)
        # our trainer's files, read by Hugging Face
        with tempfile.TemporaryDirectory() as d:
            BPETokenizer.train(text, V, progress=False).save(d)
            ours = load_saved(Path(d))
            ours_ids, ours_hard = encodings(ours, text)
        ref["our_files"][V] = {
            "corpus": {"sha256": sha256(ours_ids.astype("<u2").tobytes()), "tokens": len(ours_ids)},
            "hard": [h["ids"] for h in ours_hard],
        }
        print(f"vocab {V}: {len(ids)} tokens")
    for vocab_size, min_frequency in [(WHOLE, 0), (WHOLE, 2)]:
        tok = hf_train(text, vocab_size, min_frequency)
        entry = {"text": "tinyshakespeare", "vocab_size": vocab_size, "min_frequency": min_frequency}
        ref["trainer"].append(entry | saved_hashes(tok))
        print(
            f"trainer, vocab_size {vocab_size}, min_frequency {min_frequency}: {tok.get_vocab_size()} tokens"
        )
    for case in synthetic_texts():
        ref["trainer"].append(
            case | saved_hashes(hf_train(case["text"], case["vocab_size"], case["min_frequency"]))
        )
    (HERE / "reference.json").write_text(
        json.dumps(ref, ensure_ascii=False, indent=1) + "\n", encoding="utf-8"
    )
    total = sum(p.stat().st_size for p in HERE.rglob("*") if p.is_file())
    print(f"wrote {HERE} ({total / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
