# Our byte-level BPE with GPT-2's own vocabulary (50,257 tokens, tests/tokenizer_reference/gpt2/, made by
# make_gpt2.py from the file openai-whisper ships), against OpenAI's tiktoken and Hugging Face tokenizers,
# which gave the committed ids: Tiny Shakespeare token for token (338,025 ids, the figure nanoGPT's
# prepare.py prints) and the hard strings, and decode back to the text. And the tokenizer of the
# GPT-2-shaped folder conformance/test_hf_bpe.py runs (made by conformance/make_golden_bpe.py) against
# what transformers' tokenizer gave there, from either of the files a download holds.
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conformance.golden import BPE_DIR
from conformance.golden import BPE_REFERENCE_JSON as REFERENCE_JSON
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


GENERATIONS = json.loads(REFERENCE_JSON.read_text(encoding="utf-8"))["generations"]


@pytest.fixture(scope="module", params=["vocab.json + merges.txt", "tokenizer.json"])
def tokenizer(request, tmp_path_factory):
    # a GPT-2 download holds both; each alone must give the same tokenizer
    folder = tmp_path_factory.mktemp("tok")
    names = ["vocab.json", "merges.txt"] if request.param.startswith("vocab") else ["tokenizer.json"]
    for name in names:
        shutil.copy(BPE_DIR / name, folder / name)
    return load_tokenizer(folder)


@pytest.mark.parametrize("g", GENERATIONS, ids=lambda g: repr(g["prompt"][:12]))
def test_tokenizer_matches_transformers(tokenizer, g):
    ids = tokenizer.encode(g["prompt"])
    assert ids.tolist() == g["prompt_ids"]
    assert tokenizer.decode(ids) == g["prompt"]
    assert tokenizer.decode(g["prompt_ids"] + g["new_ids"]) == g["text"]  # invalid UTF-8 decoded as HF does
