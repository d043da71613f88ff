"""Regenerates the golden file, the suite's outside reference (issue 5), with Hugging Face transformers'
GPT2LMHeadModel and torch.optim.AdamW on the CPU:

    pip install -e '.[reference]'      # torch and transformers, pinned
    python -m conformance.make_golden

It writes, both committed:

- conformance/golden/tiny.safetensors (read by golden.py; tensors and str -> str metadata):
    weights.<name>          the `tiny` preset's weights, random at conformance scale
                            (compare.random_state_dict), float32; the float64 run holds the same numbers
    idx, targets            (B, T) int64; some targets are -1 (ignored)
    <dtype>.logits          (B, T, V), <dtype> float64 or float32: transformers run in that dtype
    <dtype>.loss            the spec's loss on those logits
    <dtype>.grads.<name>    d loss / d parameter, every parameter under its canonical name
    <dtype>.train_losses    the loss before each of N_STEPS steps of clip_grad_norm_ + AdamW at lr
    unscaled-float64.logits, .loss, .grads.<name>
                            the same weights and batch with scale_attn_weights=False (SPEC.md
                            "Ablations"), float64
    generate.<i>.prompt, .tokens, .logits, .margins
                            greedy generation (transformers' generate, float64, KV cache) from a few
                            prompts: the tokens, the logits at every generated step and their top-2
                            margins; only prompts clear of near-ties (golden.clear_of_ties) are kept
    metadata                format, config, lr, adamw, the transformers settings, versions
- conformance/golden/hf-tiny/: the same weights saved by transformers itself (save_pretrained:
  config.json + model.safetensors), which every tier must load.

Rerunning it reproduces every tensor bit for bit (safetensors may write the header's keys in another
order). Regenerate after changing anything here, and commit both; conformance/test_golden.py then
checks every tier against the new file, and `python -m conformance.golden_report` prints the table.

How the spec maps onto transformers (SPEC.md "Architecture", "Loss", "AdamW"):
- GPT2Config: gelu_new, layer_norm_epsilon 1e-5, every dropout 0, scale_attn_weights on and
  scale_attn_by_inverse_layer_idx / reorder_and_upcast_attn off, n_inner None (4C), n_positions =
  block_size, the head tied to wte (lm_head has no bias), eager attention (softmax written out).
- Conv1D keeps its weight as (in, out), the spec's layout: our tensors load as they are, under
  `transformer.<name>`.
- The loss is torch's cross_entropy with ignore_index -1 on transformers' logits, not the model's own
  `labels=` loss, which shifts the labels by one position (our targets are already the next tokens)
  and casts the logits to float32.
- AdamW: torch.optim.AdamW(foreach=False: the single-tensor algorithm) with weight decay on the 2-D
  parameters only, after torch.nn.utils.clip_grad_norm_; a constant lr, as the tiers' train_step.
"""

import dataclasses
import json
import shutil

import numpy as np
import torch
import transformers
from safetensors.numpy import save_file
from transformers import GPT2Config, GPT2LMHeadModel

from conformance.cases import ADAMW, LR
from conformance.compare import random_state_dict
from conformance.golden import FORMAT, GOLDEN_FILE, HF_DIR, UNSCALED, clear_of_ties, top2_margins
from shared.config import get_config
from shared.params import is_decayed, param_shapes

CONFIG = get_config("tiny")  # 2 layers, 2 heads of 8, C 16, block_size 16, V 29
B, T = 2, CONFIG.block_size
SEED = 2024
N_STEPS = 5
PROMPT_LENGTHS = (1, 4, 9)  # one golden generation each, generated up to block_size tokens in all
HF_SETTINGS = {
    "activation_function": "gelu_new",
    "layer_norm_epsilon": 1e-5,
    "resid_pdrop": 0.0,
    "embd_pdrop": 0.0,
    "attn_pdrop": 0.0,
    "scale_attn_weights": True,
    "scale_attn_by_inverse_layer_idx": False,
    "reorder_and_upcast_attn": False,
    "n_inner": None,
    "tie_word_embeddings": True,
    "bos_token_id": None,
    "eos_token_id": None,  # generation runs its full length
    "pad_token_id": None,
    "attn_implementation": "eager",  # the attention written out: matmul, mask, softmax, matmul
}
DTYPES = {"float64": torch.float64, "float32": torch.float32}


def hf_model(weights: dict, dtype, **settings) -> GPT2LMHeadModel:
    cfg = GPT2Config(
        vocab_size=CONFIG.vocab_size,
        n_positions=CONFIG.block_size,
        n_embd=CONFIG.n_embd,
        n_layer=CONFIG.n_layer,
        n_head=CONFIG.n_head,
        **{**HF_SETTINGS, **settings},
    )
    model = GPT2LMHeadModel(cfg).to(dtype).eval()
    assert model.config._attn_implementation == "eager"
    # strict: the transformer's state dict is exactly the canonical names, Conv1D weights (in, out)
    model.transformer.load_state_dict({n: torch.from_numpy(w).to(dtype) for n, w in weights.items()})
    assert model.lm_head.weight is model.transformer.wte.weight, "the head must be tied to wte"
    assert model.lm_head.bias is None
    return model


def loss_of(model, idx, targets):
    logits = model(torch.from_numpy(idx)).logits  # (B, T, V)
    loss = torch.nn.functional.cross_entropy(
        logits.flatten(0, 1), torch.from_numpy(targets).flatten(), ignore_index=-1
    )
    return logits, loss


def gradients(weights, idx, targets, dtype, **settings) -> dict[str, np.ndarray]:
    """Logits, loss and every gradient of transformers in one dtype, with HF_SETTINGS changed by settings."""
    model = hf_model(weights, dtype, **settings)
    logits, loss = loss_of(model, idx, targets)
    loss.backward()
    out = {"logits": logits.detach().numpy(), "loss": loss.detach().numpy()}
    params = dict(model.transformer.named_parameters())  # the tied head's gradient is wte's
    assert list(params) == list(param_shapes(CONFIG))
    out.update({f"grads.{n}": p.grad.numpy() for n, p in params.items()})
    return out


def run(weights, idx, targets, dtype) -> dict[str, np.ndarray]:
    """Logits, loss, gradients and N_STEPS AdamW losses of transformers in one dtype."""
    out = gradients(weights, idx, targets, dtype)
    model = hf_model(weights, dtype)
    params = dict(model.transformer.named_parameters())
    groups = [
        {
            "params": [p for n, p in params.items() if decay == is_decayed(n, tuple(p.shape))],
            "weight_decay": wd,
        }
        for decay, wd in ((True, ADAMW.weight_decay), (False, 0.0))
    ]
    opt = torch.optim.AdamW(groups, lr=LR, betas=(ADAMW.beta1, ADAMW.beta2), eps=ADAMW.eps, foreach=False)
    losses = []
    for _ in range(N_STEPS):
        opt.zero_grad(set_to_none=True)
        _, loss = loss_of(model, idx, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), ADAMW.grad_clip, foreach=False)
        opt.step()
        losses.append(loss.item())
    out["train_losses"] = np.array(losses, dtype=np.float64)
    return out


@torch.no_grad()
def generate(model, prompt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Greedy tokens up to block_size (transformers' generate, through its KV cache) and, from one
    forward pass over them in the model's dtype (generate hands its logits out in float32), the logits
    each generated token is the argmax of."""
    P = prompt.shape[1]
    tokens = model.generate(
        torch.from_numpy(prompt), max_new_tokens=CONFIG.block_size - P, do_sample=False
    ).numpy()
    logits = model(torch.from_numpy(tokens[:, :-1])).logits[0, P - 1 :].numpy()  # (N, V)
    assert np.array_equal(logits.argmax(-1), tokens[0, P:]), "generate's cache and the forward pass disagree"
    return tokens, logits


def generations(weights, rng) -> dict[str, np.ndarray]:
    model64, model32 = hf_model(weights, torch.float64), hf_model(weights, torch.float32)
    out = {}
    for i, P in enumerate(PROMPT_LENGTHS):
        for _ in range(100):  # draw prompts until one is clear of near-ties at every step
            prompt = rng.integers(0, CONFIG.vocab_size, size=(1, P))
            tokens, logits = generate(model64, prompt)
            if clear_of_ties(logits):
                break
        else:
            raise RuntimeError(f"no prompt of length {P} clear of near-ties in 100 draws")
        # the guard's promise, kept by transformers' own float32 run
        assert np.array_equal(generate(model32, prompt)[0], tokens)
        out.update(
            {
                f"generate.{i}.prompt": prompt,
                f"generate.{i}.tokens": tokens,
                f"generate.{i}.logits": logits,
                f"generate.{i}.margins": top2_margins(logits),
            }
        )
    return out


def main():
    torch.manual_seed(0)  # transformers' own initial weights are all overwritten; fixed anyway
    rng = np.random.default_rng(SEED)
    weights = random_state_dict(CONFIG, seed=SEED)
    idx = rng.integers(0, CONFIG.vocab_size, size=(B, T))
    targets = rng.integers(0, CONFIG.vocab_size, size=(B, T))
    targets[0, : T // 3] = -1  # ignored positions, in both rows
    targets[1, -2] = -1

    tensors = {"weights." + n: w for n, w in weights.items()}
    tensors.update({"idx": idx, "targets": targets})
    for name, dtype in DTYPES.items():
        tensors.update({f"{name}.{k}": v for k, v in run(weights, idx, targets, dtype).items()})
    tensors.update(generations(weights, rng))
    # SPEC.md "Ablations": transformers' scale_attn_weights=False is the spec's ablation of that name
    unscaled = gradients(weights, idx, targets, torch.float64, scale_attn_weights=False)
    tensors.update({f"{UNSCALED}.{k}": v for k, v in unscaled.items()})
    metadata = {
        "format": FORMAT,
        "config": CONFIG.to_json(),
        "lr": repr(LR),
        "n_steps": str(N_STEPS),
        "adamw": json.dumps(dataclasses.asdict(ADAMW)),
        "generations": str(len(PROMPT_LENGTHS)),
        "seed": str(SEED),
        "transformers_settings": json.dumps(HF_SETTINGS),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "made_by": "python -m conformance.make_golden",
        UNSCALED: "the float64 logits, loss and gradients with scale_attn_weights=False",
    }
    GOLDEN_FILE.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: np.array(v, order="C") for k, v in tensors.items()}, GOLDEN_FILE, metadata=metadata)

    shutil.rmtree(HF_DIR, ignore_errors=True)
    hf_model(weights, torch.float32).save_pretrained(HF_DIR, safe_serialization=True)
    print(f"wrote {GOLDEN_FILE} ({GOLDEN_FILE.stat().st_size} bytes) and {HF_DIR}")


if __name__ == "__main__":
    main()
