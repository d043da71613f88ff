"""Regenerates the suite's outside truth with Hugging Face transformers' GPT2LMHeadModel and
torch.optim.AdamW on the CPU, in float64:

    pip install -e '.[reference]'      # torch and transformers, pinned
    python -m conformance.make_golden

It writes, all committed:

- conformance/golden/cases.safetensors (read by golden.py: `truth(case)`, `adamw_truth(variant)`): for
  every case in cases.py CASES, on the case's weights and batch,
    weights.<set>.<name>         each weight set of cases.WEIGHTS, float32 (the float64 runs hold the
                                 same numbers)
    case.<case>.idx, .targets    (B, T) int64; some targets are -1 (ignored)
    case.<case>.logits, .loss    the logits and the spec's loss
    case.<case>.acts.<name>      every named activation (SPEC.md "Named activations"), read from the
                                 model's modules by forward hooks
    case.<case>.grads.<name>     d loss / d parameter, every parameter under its canonical name
    case.<case>.train_losses     the loss before each of N_STEPS steps of clip_grad_norm_ + AdamW at LR
    case.<case>.train_params.<name>   the parameters after them
  and for every optimizer case in cases.ADAMW_CASES, on its case's gradients scaled per step,
    adamw.<variant>.scales       (N_STEPS,) the scale of the gradients at each step
    adamw.<variant>.params.<name>, .m.<name>, .v.<name>   after N_STEPS steps at OPT_LR
  metadata: format, every case's config, B, T, weights and regime (the tests check they are still
  cases.py's), the AdamW settings, the transformers settings, versions.
- conformance/golden/tiny.safetensors (golden.py `read_golden`): the `tiny` preset with its own weights
  and batch, transformers' float32 run beside the float64 one (an honest float32 GPT-2 that is not
  ours, held to the float32 bounds), 5 AdamW steps, greedy generations through transformers' KV cache
  from prompts clear of near-ties, and the run with scale_attn_weights=False.
- conformance/golden/hf-tiny/: those weights saved by transformers itself (save_pretrained:
  config.json + model.safetensors), which every tier must load.

Rerunning it reproduces every tensor bit for bit (safetensors may write the header's keys in another
order). Regenerate after changing a case, and commit the files; conformance/test_conformance.py and
test_golden.py then check every tier against them, and `python -m conformance.summary` prints the table.

How the spec maps onto transformers (SPEC.md "Architecture", "Ablations", "Loss", "AdamW"):
- GPT2Config: gelu_new, layer_norm_epsilon 1e-5, every dropout 0, scale_attn_by_inverse_layer_idx /
  reorder_and_upcast_attn off, n_inner None (4C), n_positions = block_size, the head tied to wte
  (lm_head has no bias), eager attention (softmax written out).
- The ablations: scale_attn_weights=False is transformers' own switch of that name. Without
  position_embedding, a forward hook multiplies wpe's output by 0 (wpe then gets an exact zero
  gradient and stays under AdamW's decay, as the spec says). Without residual, each block's forward is
  its own submodules in a row, ln_1, attn, ln_2, mlp, without the two additions (the spec's one change).
- Conv1D keeps its weight as (in, out), the spec's layout: our tensors load as they are, under
  `transformer.<name>`.
- The loss is torch's cross_entropy with ignore_index -1 on transformers' logits, not the model's own
  `labels=` loss, which shifts the labels by one position (our targets are already the next tokens)
  and casts the logits to float32.
- AdamW: torch.optim.AdamW(foreach=False: the single-tensor algorithm) with weight decay on the 2-D
  parameters only (the spec's rule, written here, not imported), after torch.nn.utils.clip_grad_norm_
  (unless the case turns clipping off); a constant lr, as the tiers' train_step and apply_grads.
"""

import dataclasses
import json
import shutil
import types

import numpy as np
import torch
import transformers
from safetensors.numpy import save_file
from transformers import GPT2Config, GPT2LMHeadModel

from conformance.cases import ADAMW, ADAMW_CASES, CASES, LR, N_STEPS, OPT_LR, WEIGHTS, case_batch
from conformance.compare import random_state_dict
from conformance.golden import (
    CASES_FILE,
    CASES_FORMAT,
    FORMAT,
    GOLDEN_FILE,
    HF_DIR,
    UNSCALED,
    case_table,
    clear_of_ties,
    top2_margins,
)
from shared.activations import activation_names
from shared.config import get_config
from shared.params import param_shapes

TINY = get_config("tiny")  # 2 layers, 2 heads of 8, C 16, block_size 16, V 29
TINY_SEED = 2024
TINY_STEPS = 5
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


def _no_residual_forward(self, hidden_states, cache=None, attention_mask=None, *args, **kwargs):
    # SPEC.md "Ablations", residual: GPT2Block.forward without its two additions
    kwargs.pop("encoder_attention_mask", None)
    hidden_states, _ = self.attn(
        self.ln_1(hidden_states), cache=cache, attention_mask=attention_mask, **kwargs
    )
    return self.mlp(self.ln_2(hidden_states))


def hf_model(config, weights: dict, dtype, **settings) -> GPT2LMHeadModel:
    """transformers' GPT-2 for one of our configs (its ablations included) holding our weights."""
    cfg = GPT2Config(
        vocab_size=config.vocab_size,
        n_positions=config.block_size,
        n_embd=config.n_embd,
        n_layer=config.n_layer,
        n_head=config.n_head,
        **{**HF_SETTINGS, "scale_attn_weights": config.scale_attn_weights, **settings},
    )
    model = GPT2LMHeadModel(cfg).to(dtype).eval()
    assert model.config._attn_implementation == "eager"
    # strict: the transformer's state dict is exactly the canonical names, Conv1D weights (in, out)
    model.transformer.load_state_dict({n: torch.from_numpy(w).to(dtype) for n, w in weights.items()})
    assert model.lm_head.weight is model.transformer.wte.weight, "the head must be tied to wte"
    assert model.lm_head.bias is None
    if not config.position_embedding:
        model.transformer.wpe.register_forward_hook(lambda module, inputs, out: out * 0.0)
    if not config.residual:
        for block in model.transformer.h:
            block.forward = types.MethodType(_no_residual_forward, block)
    return model


def loss_of(model, idx, targets):
    logits = model(torch.from_numpy(idx)).logits  # (B, T, V)
    loss = torch.nn.functional.cross_entropy(
        logits.flatten(0, 1), torch.from_numpy(targets).flatten(), ignore_index=-1
    )
    return logits, loss


def record_activations(model, config) -> tuple[dict, list]:
    """Forward hooks that fill a dict with the spec's named activations; and the hooks' handles."""
    acts, handles = {}, []

    def output(name, pick=lambda out: out):
        def hook(module, inputs, out):
            acts[name] = pick(out)

        return hook

    def first_input(name):
        def hook(module, args, kwargs):
            acts[name] = args[0] if args else kwargs["hidden_states"]

        return hook

    tr = model.transformer
    handles.append(tr.h[0].register_forward_pre_hook(first_input("emb"), with_kwargs=True))
    for i, block in enumerate(tr.h):
        p = f"h.{i}."
        handles += [
            block.ln_1.register_forward_hook(output(p + "ln_1")),
            block.attn.c_attn.register_forward_hook(output(p + "attn.qkv")),
            block.attn.register_forward_hook(output(p + "attn.att", lambda out: out[1])),  # eager: weights
            block.attn.c_proj.register_forward_pre_hook(first_input(p + "attn.y"), with_kwargs=True),
            block.attn.c_proj.register_forward_hook(output(p + "attn.out")),
            block.ln_2.register_forward_pre_hook(first_input(p + "res_1"), with_kwargs=True),
            block.ln_2.register_forward_hook(output(p + "ln_2")),
            block.mlp.c_fc.register_forward_hook(output(p + "mlp.fc")),
            block.mlp.c_proj.register_forward_pre_hook(first_input(p + "mlp.gelu"), with_kwargs=True),
            block.mlp.c_proj.register_forward_hook(output(p + "mlp.out")),
            block.register_forward_hook(output(p + "res_2")),
        ]
    handles.append(tr.ln_f.register_forward_hook(output("ln_f")))
    return acts, handles


def gradients(config, weights, idx, targets, dtype, with_acts=False, **settings) -> dict[str, np.ndarray]:
    """Logits, loss and every gradient of transformers in one dtype (and the named activations)."""
    model = hf_model(config, weights, dtype, **settings)
    acts, handles = record_activations(model, config) if with_acts else ({}, [])
    logits, loss = loss_of(model, idx, targets)
    for h in handles:
        h.remove()
    loss.backward()
    out = {"logits": logits.detach().numpy(), "loss": loss.detach().numpy()}
    if with_acts:
        acts["logits"] = logits
        names = activation_names(config)  # the hooks fire as modules return: put in forward order
        assert set(acts) == set(names), "a named activation without its hook, or the other way round"
        out.update({f"acts.{n}": acts[n].detach().numpy() for n in names})
    params = dict(model.transformer.named_parameters())  # the tied head's gradient is wte's
    assert list(params) == list(param_shapes(config))
    out.update({f"grads.{n}": _grad(p).numpy() for n, p in params.items()})
    return out


def _grad(p):
    return torch.zeros_like(p) if p.grad is None else p.grad


def adamw(params: dict, adamw_cfg, lr) -> torch.optim.AdamW:
    """torch's AdamW with the spec's decay rule: the 2-D parameters decayed, the rest not."""
    groups = [
        {"params": [p for p in params.values() if (p.ndim == 2) == decay], "weight_decay": wd}
        for decay, wd in ((True, adamw_cfg.weight_decay), (False, 0.0))
    ]
    return torch.optim.AdamW(
        groups, lr=lr, betas=(adamw_cfg.beta1, adamw_cfg.beta2), eps=adamw_cfg.eps, foreach=False
    )


def step(model, opt, adamw_cfg):
    for p in model.transformer.parameters():  # a parameter the loss does not read steps on zero
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    if adamw_cfg.grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), adamw_cfg.grad_clip, foreach=False)
    opt.step()


def train(config, weights, idx, targets, dtype, n_steps, lr=LR) -> dict[str, np.ndarray]:
    """The loss before each of n_steps AdamW steps at a constant lr, and the parameters after."""
    model = hf_model(config, weights, dtype)
    params = dict(model.transformer.named_parameters())
    opt = adamw(params, ADAMW, lr)
    losses = []
    for _ in range(n_steps):
        opt.zero_grad(set_to_none=True)
        _, loss = loss_of(model, idx, targets)
        loss.backward()
        step(model, opt, ADAMW)
        losses.append(loss.item())
    out = {"train_losses": np.array(losses, dtype=np.float64)}
    out.update({f"train_params.{n}": p.detach().numpy().copy() for n, p in params.items()})
    return out


def optimizer_case(variant: str, weights: dict, grads: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """N_STEPS AdamW steps at OPT_LR on the given gradients scaled per step; the state after."""
    case = ADAMW_CASES[variant]
    norm = float(np.sqrt(sum(np.sum(g * g) for g in grads.values())))
    scales = case.scales(norm)
    model = hf_model(CASES[case.case].config, weights, torch.float64)
    params = dict(model.transformer.named_parameters())
    opt = adamw(params, case.adamw, OPT_LR)
    for s in scales:
        for n, p in params.items():
            p.grad = torch.from_numpy(grads[n] * s)
        step(model, opt, case.adamw)
    out = {"scales": np.array(scales, dtype=np.float64)}
    for n, p in params.items():
        out[f"params.{n}"] = p.detach().numpy().copy()
        out[f"m.{n}"] = opt.state[p]["exp_avg"].numpy().copy()
        out[f"v.{n}"] = opt.state[p]["exp_avg_sq"].numpy().copy()
    return out


def make_cases():
    weights = {name: w.state_dict() for name, w in WEIGHTS.items()}
    tensors = {f"weights.{s}.{n}": w for s, state in weights.items() for n, w in state.items()}
    for name, case in CASES.items():
        idx, targets = case_batch(name)
        w = weights[case.weights]
        out = {"idx": idx, "targets": targets}
        out.update(gradients(case.config, w, idx, targets, torch.float64, with_acts=True))
        out.update(train(case.config, w, idx, targets, torch.float64, N_STEPS))
        tensors.update({f"case.{name}.{k}": v for k, v in out.items()})
        print(f"{name}: loss {float(out['loss']):.4f}, max |score| and |logit| in the table below")
    for variant, case in ADAMW_CASES.items():
        grads = {n: tensors[f"case.{case.case}.grads.{n}"] for n in param_shapes(CASES[case.case].config)}
        out = optimizer_case(variant, weights[CASES[case.case].weights], grads)
        tensors.update({f"adamw.{variant}.{k}": v for k, v in out.items()})
    metadata = {
        "format": CASES_FORMAT,
        "cases": json.dumps(case_table()),
        "n_steps": str(N_STEPS),
        "lr": repr(LR),
        "opt_lr": repr(OPT_LR),
        "adamw": json.dumps(dataclasses.asdict(ADAMW)),
        "transformers_settings": json.dumps(HF_SETTINGS),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "made_by": "python -m conformance.make_golden",
    }
    save_file({k: np.array(v, order="C") for k, v in tensors.items()}, CASES_FILE, metadata=metadata)
    print(f"wrote {CASES_FILE} ({CASES_FILE.stat().st_size} bytes)")


# ---- the tiny file: transformers' float32 run, greedy generations, its own directory ----


@torch.no_grad()
def generate(model, prompt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Greedy tokens up to block_size (transformers' generate, through its KV cache) and, from one
    forward pass over them in the model's dtype (generate hands its logits out in float32), the logits
    each generated token is the argmax of."""
    P = prompt.shape[1]
    tokens = model.generate(
        torch.from_numpy(prompt), max_new_tokens=TINY.block_size - P, do_sample=False
    ).numpy()
    logits = model(torch.from_numpy(tokens[:, :-1])).logits[0, P - 1 :].numpy()  # (N, V)
    assert np.array_equal(logits.argmax(-1), tokens[0, P:]), "generate's cache and the forward pass disagree"
    return tokens, logits


def generations(weights, rng) -> dict[str, np.ndarray]:
    model64, model32 = hf_model(TINY, weights, torch.float64), hf_model(TINY, weights, torch.float32)
    out = {}
    for i, P in enumerate(PROMPT_LENGTHS):
        for _ in range(100):  # draw prompts until one is clear of near-ties at every step
            prompt = rng.integers(0, TINY.vocab_size, size=(1, P))
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


def make_tiny():
    torch.manual_seed(0)  # transformers' own initial weights are all overwritten; fixed anyway
    rng = np.random.default_rng(TINY_SEED)
    weights = random_state_dict(TINY, seed=TINY_SEED)
    B, T = 2, TINY.block_size
    idx = rng.integers(0, TINY.vocab_size, size=(B, T))
    targets = rng.integers(0, TINY.vocab_size, size=(B, T))
    targets[0, : T // 3] = -1  # ignored positions, in both rows
    targets[1, -2] = -1

    tensors = {"weights." + n: w for n, w in weights.items()}
    tensors.update({"idx": idx, "targets": targets})
    for name, dtype in DTYPES.items():
        out = gradients(TINY, weights, idx, targets, dtype)
        out["train_losses"] = train(TINY, weights, idx, targets, dtype, TINY_STEPS)["train_losses"]
        tensors.update({f"{name}.{k}": v for k, v in out.items()})
    tensors.update(generations(weights, rng))
    # SPEC.md "Ablations": transformers' scale_attn_weights=False is the spec's ablation of that name
    unscaled = gradients(TINY, weights, idx, targets, torch.float64, scale_attn_weights=False)
    tensors.update({f"{UNSCALED}.{k}": v for k, v in unscaled.items()})
    metadata = {
        "format": FORMAT,
        "config": TINY.to_json(),
        "lr": repr(LR),
        "n_steps": str(TINY_STEPS),
        "adamw": json.dumps(dataclasses.asdict(ADAMW)),
        "generations": str(len(PROMPT_LENGTHS)),
        "seed": str(TINY_SEED),
        "transformers_settings": json.dumps(HF_SETTINGS),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "made_by": "python -m conformance.make_golden",
        UNSCALED: "the float64 logits, loss and gradients with scale_attn_weights=False",
    }
    GOLDEN_FILE.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: np.array(v, order="C") for k, v in tensors.items()}, GOLDEN_FILE, metadata=metadata)

    shutil.rmtree(HF_DIR, ignore_errors=True)
    hf_model(TINY, weights, torch.float32).save_pretrained(HF_DIR, safe_serialization=True)
    print(f"wrote {GOLDEN_FILE} ({GOLDEN_FILE.stat().st_size} bytes) and {HF_DIR}")


def main():
    make_tiny()
    make_cases()


if __name__ == "__main__":
    main()
