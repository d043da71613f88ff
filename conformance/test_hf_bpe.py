# GPT-2 text in and out, against transformers: a GPT-2-shaped model with random weights and a byte-level
# BPE tokenizer, laid out as a Hugging Face download (conformance/golden/hf-bpe/, made by
# make_golden_bpe.py). Every tier loads the directory, our tokenizer reads its files, and the prompt's
# ids, the greedy continuation (through each tier's KV cache), its logits and the decoded text must be
# what transformers gave; the command line's `sample` prints that text. Only the committed files are read.
import json

import numpy as np
import pytest
from safetensors.numpy import load_file

import transformer
from conformance.golden import BPE_DIR
from conformance.golden import BPE_REFERENCE_JSON as REFERENCE_JSON
from conformance.golden import BPE_REFERENCE_TENSORS as REFERENCE_TENSORS
from conformance.tiers import TIERS, load
from shared.tokenizer import load_tokenizer
from shared.tolerances import bounds_for, rel_l2

REFERENCE = json.loads(REFERENCE_JSON.read_text(encoding="utf-8"))
GENERATIONS = REFERENCE["generations"]
# transformer.py's --impl names for the conformance tiers it offers (numpy-float64 is --dtype float64)
CLI = {"numpy": ["--impl", "numpy"], "numpy-float64": ["--impl", "numpy", "--dtype", "float64"]}
CLI |= {"c": ["--impl", "c"], "tinygrad": ["--impl", "tinygrad"]}


@pytest.mark.parametrize("tier", list(TIERS))
def test_greedy_generation_matches_transformers(tier):
    model = load(tier, BPE_DIR)
    tok = load_tokenizer(BPE_DIR)
    logits = load_file(REFERENCE_TENSORS)
    bound = bounds_for(TIERS[tier][1])["logits"]
    for i, g in enumerate(GENERATIONS):
        prompt = tok.encode(g["prompt"])[None]
        out = model.generate(prompt, len(g["new_ids"]), temperature=0.0)
        assert out[0, prompt.shape[1] :].tolist() == g["new_ids"], f"{tier}: prompt {g['prompt']!r}"
        assert tok.decode(out[0]) == g["text"]
        # the logits each new token was the argmax of, from one forward pass over the whole sequence
        seq = np.array([g["prompt_ids"] + g["new_ids"][:-1]])
        got = model.forward(seq)[0][0, len(g["prompt_ids"]) - 1 :]
        assert rel_l2(got, logits[f"logits.{i}"]) <= bound, f"{tier}: logits of prompt {g['prompt']!r}"


@pytest.mark.parametrize("tier", list(CLI))  # the built-in tiers: the command line runs only those
def test_command_line_samples_what_transformers_does(tier, capsys):
    g = GENERATIONS[2]  # "Hello, I'm a language model,"
    args = ["sample", "--ckpt", str(BPE_DIR), "--prompt", g["prompt"], "--temperature", "0"]
    assert transformer.main([*args, "--tokens", str(len(g["new_ids"])), *CLI[tier]]) == 0
    assert capsys.readouterr().out == g["text"] + "\n"
