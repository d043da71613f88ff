# GPT-2 text in and out, against transformers: a GPT-2-shaped model with random weights and a byte-level
# BPE tokenizer, laid out as a Hugging Face download (conformance/golden/hf-bpe/, made by
# make_golden_bpe.py). Every tier loads the directory, our tokenizer reads its files, and the prompt's
# ids, the greedy continuation (through each tier's KV cache), its logits and the decoded text must be
# what transformers gave; the command line's `sample` prints that text. Only the committed files are read.
import json
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file

import transformer
from conformance.make_golden_bpe import BPE_DIR, REFERENCE_JSON, REFERENCE_TENSORS
from conformance.tiers import TIERS, load
from shared.tokenizer import load_tokenizer
from shared.tolerances import bounds_for, rel_l2

REFERENCE = json.loads(REFERENCE_JSON.read_text(encoding="utf-8"))
GENERATIONS = REFERENCE["generations"]
# transformer.py's --impl names for the conformance tiers it offers (numpy-float64 is --dtype float64)
CLI = {"numpy": ["--impl", "numpy"], "numpy-float64": ["--impl", "numpy", "--dtype", "float64"]}
CLI |= {"c": ["--impl", "c"], "tinygrad": ["--impl", "tinygrad"]}


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


@pytest.mark.parametrize("tier", list(TIERS))
def test_command_line_samples_what_transformers_does(tier, capsys):
    g = GENERATIONS[2]  # "Hello, I'm a language model,"
    args = ["sample", "--ckpt", str(BPE_DIR), "--prompt", g["prompt"], "--temperature", "0"]
    assert transformer.main([*args, "--tokens", str(len(g["new_ids"])), *CLI[tier]]) == 0
    assert capsys.readouterr().out == g["text"] + "\n"


# GPT-2's four published config.json files (as the Hugging Face downloads hold them, dropout and all):
# each is a config every tier accepts, with the published parameter count
GPT2_CONFIGS = {
    "gpt2": (768, 12, 12, 124_439_808),
    "gpt2-medium": (1024, 24, 16, 354_823_168),
    "gpt2-large": (1280, 36, 20, 774_030_080),
    "gpt2-xl": (1600, 48, 25, 1_557_611_200),
}


@pytest.mark.parametrize("name", GPT2_CONFIGS)
def test_gpt2_published_configs(name):
    from shared.checkpoint import HF_REQUIRED
    from shared.config import GPTConfig
    from shared.params import num_params

    n_embd, n_layer, n_head, count = GPT2_CONFIGS[name]
    hf = {"activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"], "attn_pdrop": 0.1}
    hf |= {"bos_token_id": 50256, "embd_pdrop": 0.1, "eos_token_id": 50256, "initializer_range": 0.02}
    hf |= {"layer_norm_epsilon": 1e-05, "model_type": "gpt2", "n_ctx": 1024, "n_embd": n_embd}
    hf |= {"n_head": n_head, "n_layer": n_layer, "n_positions": 1024, "resid_pdrop": 0.1}
    hf |= {"summary_type": "cls_index", "summary_use_proj": True, "vocab_size": 50257}
    config = GPTConfig.from_dict(hf)
    assert (config.n_embd, config.n_layer, config.n_head, config.block_size) == (
        n_embd,
        n_layer,
        n_head,
        1024,
    )
    assert num_params(config) == count
    assert all(hf.get(key, value) == value for key, value in HF_REQUIRED.items())
