# Our byte-level BPE with GPT-2's own vocabulary (50,257 tokens, tests/tokenizer_reference/gpt2/, made by
# make_gpt2.py from the file openai-whisper ships), against OpenAI's tiktoken and Hugging Face tokenizers,
# which gave the committed ids: Tiny Shakespeare token for token (338,025 ids, the figure nanoGPT's
# prepare.py prints) and the hard strings, and decode back to the text.
import json
from pathlib import Path

import numpy as np
import pytest

from shared.tokenizer import load_tokenizer

GPT2 = Path(__file__).resolve().parent / "tokenizer_reference" / "gpt2"
REFERENCE = np.load(GPT2 / "reference.npz")
HARD = json.loads(str(REFERENCE["hard_strings"]))


@pytest.fixture(scope="module")
def gpt2():
    return load_tokenizer(GPT2)


def test_gpt2_vocabulary(gpt2):
    assert gpt2.vocab_size == 50257
    assert gpt2.encode("<|endoftext|>").tolist() == [50256]
    assert gpt2.encode(" the").tolist() == [262] and gpt2.encode("Hello").tolist() == [15496]


def test_corpus_token_for_token(gpt2, corpus_path):
    text = corpus_path.read_text(encoding="utf-8")
    ids, ref = gpt2.encode(text), REFERENCE["corpus"].astype(np.int64)
    assert len(ids) == len(ref) == 338_025
    if not np.array_equal(ids, ref):
        i = int(np.flatnonzero(ids[: len(ref)] != ref[: len(ids)])[0])
        pytest.fail(f"token {i} differs: ours {ids[i - 3 : i + 3]}, tiktoken {ref[i - 3 : i + 3]}")
    assert gpt2.decode(ids) == text


@pytest.mark.parametrize("i", range(len(HARD)), ids=lambda i: repr(HARD[i][:16]))
def test_hard_strings_token_for_token(gpt2, i):
    ids = gpt2.encode(HARD[i])
    assert ids.tolist() == REFERENCE[f"hard.{i}"].tolist()
    assert gpt2.decode(ids) == HARD[i]
