"""Regenerates the outside truth for GPT-2 text in and out: a GPT-2-shaped model with random weights
and a byte-level BPE tokenizer, saved as Hugging Face saves them, and what transformers makes of it.

    pip install -e '.[reference]'          # torch, transformers and tokenizers, pinned
    python -m conformance.make_golden_bpe  # needs Tiny Shakespeare (TINYSHAKESPEARE or the cache)

It writes, all committed (conformance/golden/hf-bpe/, about 300 KB):

- the tokenizer: Hugging Face `tokenizers`' byte-level BPE trained on Tiny Shakespeare (VOCAB tokens,
  `<|endoftext|>` the special token), saved by transformers' GPT2TokenizerFast (vocab.json, merges.txt,
  tokenizer.json, tokenizer_config.json) and by `tokenizers` itself (vocab.json, merges.txt): the files
  a GPT-2 download holds, of a smaller vocabulary.
- the model: GPT2LMHeadModel with CONFIG's shape and conformance.compare.random_state_dict's weights
  (every weight random at a scale where greedy decoding is decisive) and block_size 128, saved by save_pretrained
  (config.json, model.safetensors, generation_config.json), exactly as a GPT-2 download is laid out.
- reference.json: for each prompt of PROMPTS, the ids transformers' tokenizer gives, the tokens its
  `generate` (greedy, through its KV cache, in float64) continues them with, the text its tokenizer
  decodes from all of them, and each step's top-2 margin; reference.safetensors: the logits of the
  prompt's last position and of every generated step.

The weights' seed is the first from SEED on whose generations are clear of near-ties at every step
(conformance.golden.clear_of_ties), so every tier within the logits bound greedily picks the same tokens.
conformance/test_hf_bpe.py checks every tier and the command line against these files.
"""

import json
import shutil

import numpy as np
import tokenizers
import torch
import transformers
from safetensors.numpy import save_file
from transformers import GPT2TokenizerFast

from conformance.compare import random_state_dict
from conformance.golden import BPE_DIR, clear_of_ties, top2_margins
from conformance.golden import BPE_REFERENCE_JSON as REFERENCE_JSON
from conformance.golden import BPE_REFERENCE_TENSORS as REFERENCE_TENSORS
from conformance.make_golden import hf_model
from shared.config import GPTConfig
from shared.data import shakespeare_path

VOCAB = 512
SEED = 7
NEW_TOKENS = 24
# what a user types: Shakespeare, GPT-2's own demo prompt, and text far from the corpus (digits,
# contractions, runs of spaces, accents, emoji, other scripts, the special token)
PROMPTS = [
    "ROMEO:",
    "First Citizen:\nBefore we proceed any further, hear me speak.",
    "Hello, I'm a language model,",
    "  It's 2026 -- they'll   say\n\n\tnaïve café 🤖 Привет 日本 <|endoftext|>KING",
]


def train_tokenizer(text: str) -> GPT2TokenizerFast:
    bpe = tokenizers.ByteLevelBPETokenizer()
    bpe.train_from_iterator([text], vocab_size=VOCAB, special_tokens=["<|endoftext|>"], show_progress=False)
    return bpe


@torch.no_grad()
def greedy(model, ids: list[int]) -> tuple[list[int], np.ndarray]:
    """transformers' greedy continuation of ids, and the logits each new token is the argmax of."""
    prompt = torch.tensor([ids])
    out = model.generate(prompt, max_new_tokens=NEW_TOKENS, do_sample=False)  # no eos: all NEW_TOKENS
    logits = model(out[:, :-1]).logits[0, len(ids) - 1 :].numpy()  # (NEW_TOKENS, V)
    new = out[0, len(ids) :].tolist()
    assert logits.argmax(-1).tolist() == new, "generate's cache and the forward pass disagree"
    return new, logits


def main():
    bpe = train_tokenizer(shakespeare_path().read_text(encoding="utf-8"))
    tok = GPT2TokenizerFast(tokenizer_object=bpe, bos_token="<|endoftext|>", eos_token="<|endoftext|>")
    eot = tok.convert_tokens_to_ids("<|endoftext|>")
    config = GPTConfig(n_layer=2, n_head=4, n_embd=32, block_size=128, vocab_size=len(tok))
    encoded = [tok.encode(p) for p in PROMPTS]
    for seed in range(SEED, SEED + 100):  # the first weights whose every generation is clear of near-ties
        weights = random_state_dict(config, seed)
        model = hf_model(config, weights, torch.float64)
        runs = [greedy(model, ids) for ids in encoded]
        if all(clear_of_ties(logits) for _, logits in runs):
            break
    else:
        raise RuntimeError("no weights clear of near-ties in 100 seeds")

    shutil.rmtree(BPE_DIR, ignore_errors=True)
    hf_model(config, weights, torch.float32, bos_token_id=eot, eos_token_id=eot).save_pretrained(
        BPE_DIR, safe_serialization=True
    )
    tok.save_pretrained(BPE_DIR)  # tokenizer.json, tokenizer_config.json
    bpe.save_model(str(BPE_DIR))  # vocab.json, merges.txt: GPT-2's own two files, as a download has them
    reference = {
        "made_by": "python -m conformance.make_golden_bpe",
        "seed": seed,
        "config": json.loads(config.to_json()),
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "torch": torch.__version__,
        "generations": [
            {
                "prompt": prompt,
                "prompt_ids": ids,
                "new_ids": new,
                "text": tok.decode(ids + new),
                "margins": top2_margins(logits).round(4).tolist(),
            }
            for prompt, ids, (new, logits) in zip(PROMPTS, encoded, runs)
        ],
    }
    REFERENCE_JSON.write_text(json.dumps(reference, indent=1, ensure_ascii=False) + "\n")
    save_file({f"logits.{i}": logits for i, (_, logits) in enumerate(runs)}, REFERENCE_TENSORS)
    size = sum(p.stat().st_size for p in BPE_DIR.iterdir())
    print(f"wrote {BPE_DIR} ({size:,} bytes), weights seed {seed}")


if __name__ == "__main__":
    main()
