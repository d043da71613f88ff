"""GPT-2's own tokenizer files, and what two outside tokenizers make of text with them.

    pip download --no-deps --no-binary :all: openai-whisper==20250625 -d /tmp/whisper
    pip install tiktoken tokenizers
    python tests/tokenizer_reference/make_gpt2.py /tmp/whisper/openai_whisper-20250625.tar.gz

GPT-2's vocabulary ships inside the openai-whisper package (whisper/assets/gpt2.tiktoken: each token's
bytes in base64 and its rank, which is its GPT-2 id), so it is had from PyPI without the network beyond
it. This script writes, committed in tests/tokenizer_reference/gpt2/:

- vocab.json and merges.txt in Hugging Face's GPT-2 format (the files of the `gpt2` download): each
  token's bytes through GPT-2's bytes_to_unicode, and for each token of rank 256 and up the merge that
  made it, found as tiktoken's own `data_gym_to_mergeable_bpe_ranks` would check it: byte-pair encoding
  the token's bytes with the ranks below its own leaves exactly two parts. `<|endoftext|>` is 50256.
- reference.npz: the ids tiktoken (OpenAI's encoder, Rust) gives Tiny Shakespeare and the hard strings
  of HARD, with `<|endoftext|>` allowed as the special token; the script checks that Hugging Face
  `tokenizers` reading the written vocab.json and merges.txt gives the same ids for every one of them
  (so the files are right), and that both decode back to the text.

The tests (tests/test_gpt2_tokenizer.py) read only these files.
"""

import base64
import json
import sys
import tarfile
from pathlib import Path

import numpy as np
import tiktoken
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

HERE = Path(__file__).resolve().parent / "gpt2"
ASSET = "whisper/assets/gpt2.tiktoken"
EOT = "<|endoftext|>"
EOT_ID = 50256
PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
HARD = [
    "",
    "Hello, I'm a language model,",
    "It's they're we've I'm you'll he'd IT'S DON'T",
    "   leading and trailing   ",
    "runs\n\n\n of\t\tnewlines \r\n and    spaces  \n",
    "3.14159 2026 1,000,000 0x1F 007",
    "naïve café résumé façade Ångström",
    "Привет мир, Ελληνικά, עברית, العربية, हिन्दी",
    "日本語のテキスト 中文 한국어",
    "emoji 🤖🎉👩‍👩‍👧 flags 🇫🇷 skin 👍🏽",
    "combining e\u0301 a\u0308 and zero\u200bwidth",
    "before<|endoftext|>after <|endoftext|> twice<|endoftext|><|endoftext|>",
    "<|endoftext",
    "ROMEO:\nBut soft, what light through yonder window breaks?",
]


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's encoder.py: every byte to a printable character (printable bytes to themselves)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def read_ranks(sdist: str) -> dict[bytes, int]:
    with tarfile.open(sdist) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith(ASSET))
        lines = tar.extractfile(member).read().decode().splitlines()
    return {base64.b64decode(tok): int(rank) for tok, rank in (line.split() for line in lines if line)}


def merge_of(token: bytes, ranks: dict[bytes, int]) -> tuple[bytes, bytes]:
    """The two parts whose merge made `token`: BPE on its bytes with only the lower ranks."""
    parts = [bytes([b]) for b in token]
    limit = ranks[token]
    while True:
        best = None
        for i in range(len(parts) - 1):
            r = ranks.get(parts[i] + parts[i + 1])
            if r is not None and r < limit and (best is None or r < best[0]):
                best = (r, i)
        if best is None:
            break
        i = best[1]
        parts[i : i + 2] = [parts[i] + parts[i + 1]]
    assert len(parts) == 2, f"{token!r} is not the merge of two lower-ranked tokens"
    return parts[0], parts[1]


def main(sdist: str):
    ranks = read_ranks(sdist)
    assert sorted(ranks.values()) == list(range(EOT_ID)), "ranks must be GPT-2's ids 0..50255"
    byte_ranks = [ranks[bytes([b])] for b in range(256)]
    u = bytes_to_unicode()
    # GPT-2's first 256 ids are the bytes in bytes_to_unicode's order: the printable characters first
    assert sorted(range(256), key=lambda b: byte_ranks[b]) == list(u), "byte ids are not GPT-2's"

    def show(b: bytes) -> str:
        return "".join(u[x] for x in b)

    vocab = {show(tok): rank for tok, rank in ranks.items()}
    vocab[EOT] = EOT_ID
    by_rank = sorted(ranks, key=ranks.get)[256:]
    merges = [merge_of(tok, ranks) for tok in by_rank]
    HERE.mkdir(parents=True, exist_ok=True)
    (HERE / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    lines = ["#version: 0.2"] + [f"{show(a)} {show(b)}" for a, b in merges]
    (HERE / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")

    enc = tiktoken.Encoding("gpt2", pat_str=PATTERN, mergeable_ranks=ranks, special_tokens={EOT: EOT_ID})
    hf = Tokenizer(models.BPE.from_file(str(HERE / "vocab.json"), str(HERE / "merges.txt")))
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    hf.add_special_tokens([EOT])

    from shared.data import shakespeare_path

    texts = {"corpus": shakespeare_path().read_text(encoding="utf-8")}
    texts.update({f"hard.{i}": s for i, s in enumerate(HARD)})
    out = {}
    for name, text in texts.items():
        ids = enc.encode(text, allowed_special="all")
        assert hf.encode(text).ids == ids, f"{name}: tokenizers and tiktoken disagree"
        assert enc.decode(ids) == text and hf.decode(ids, skip_special_tokens=False) == text
        out[name] = np.array(ids, dtype=np.uint16)
    out["hard_strings"] = np.array(json.dumps(HARD, ensure_ascii=False))
    np.savez_compressed(HERE / "reference.npz", **out)
    print(f"wrote {HERE}: {len(vocab)} tokens, {len(merges)} merges, corpus {len(out['corpus']):,} ids")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    main(sys.argv[1])
