# Byte-level BPE on Tiny Shakespeare: ours (shared/bpe.py, Python) next to Hugging Face `tokenizers` (Rust)
# on the same files, Hugging Face's vocabularies of 512 and 8192 tokens trained on the corpus
# (tests/tokenizer_reference/shakespeare/), and GPT-2's own 50,257 (tests/tokenizer_reference/gpt2/,
# encoding only: it was not trained on this corpus). Per vocabulary, two groups: encoding the whole corpus as one
# string, each round with a fresh tokenizer (so the per-piece caches start empty, as on a first call), and
# training that vocabulary from the corpus (Hugging Face's trainer runs on every core, ours on one). The
# Hugging Face rows are skipped where `tokenizers` is not installed (`pip install -e '.[reference]'`).
# The parameters are test_benchmarks.py's (case, impl, op), so `python -m benchmarks.report` reads the rows.
#
#   pytest benchmarks/test_tokenizer_bench.py
#   pytest benchmarks/test_tokenizer_bench.py --benchmark-disable    # each once, untimed (CI)
from pathlib import Path

import pytest

from shared.bpe import ENDOFTEXT, BPETokenizer

REF_DIR = Path(__file__).resolve().parent.parent / "tests" / "tokenizer_reference" / "shakespeare"
CASES = {"bpe512": 512, "bpe8192": 8192, "gpt2": 50257}
FOLDERS = {512: REF_DIR / "bpe512", 8192: REF_DIR / "bpe8192", 50257: REF_DIR.parent / "gpt2"}
IMPLS = ["ours", "huggingface"]
OPS = ["encode", "train"]
ROUNDS = {"encode": 5, "train": 3}


def fresh_encoder(impl: str, V: int):
    vocab, merges = (str(FOLDERS[V] / name) for name in ("vocab.json", "merges.txt"))
    if impl == "huggingface":
        tokenizers = pytest.importorskip("tokenizers")
        tok = tokenizers.ByteLevelBPETokenizer(vocab, merges)
        tok.add_special_tokens([ENDOFTEXT])  # as ours (and GPT2TokenizerFast) treat it
        return lambda text: tok.encode(text).ids
    return BPETokenizer.from_files(vocab, merges).encode


def trainer(impl: str, V: int):
    if impl == "huggingface":
        tokenizers = pytest.importorskip("tokenizers")
        from tokenizers import models, pre_tokenizers, trainers

        def train(text):
            tok = tokenizers.Tokenizer(models.BPE())
            tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
            t = trainers.BpeTrainer(
                vocab_size=V,
                show_progress=False,
                initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                special_tokens=[ENDOFTEXT],
            )
            tok.train_from_iterator([text], trainer=t)

        return train
    return lambda text: BPETokenizer.train(text, V, progress=False)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", CASES)
def test_tokenizer_benchmark(benchmark, corpus_path, case, impl, op):
    V = CASES[case]
    benchmark.group = f"{op} tinyshakespeare {case}"
    text = corpus_path.read_text(encoding="utf-8")
    if op == "encode":
        fresh_encoder(impl, V)  # skips here, not inside the timing, where Hugging Face is missing
        ids = benchmark.pedantic(
            lambda encode: encode(text), setup=lambda: ((fresh_encoder(impl, V),), {}), rounds=ROUNDS[op]
        )
        benchmark.extra_info["tokens"] = len(ids)
        if benchmark.stats is not None:  # absent when timing is off (--benchmark-disable)
            benchmark.extra_info["tokens_per_s"] = len(ids) / benchmark.stats.stats.median
    elif case == "gpt2":
        pytest.skip("GPT-2's vocabulary is encoded with, not trained here")
    else:
        benchmark.pedantic(trainer(impl, V), args=(text,), rounds=ROUNDS[op])
    benchmark.extra_info["chars"] = len(text)
