# PyTorch, the reference rows of the benchmarks (on the CPU, or the GPU benchmarks/gpu.py times on): the
# spec's GPT-2 written the way a PyTorch user would write it (nanoGPT's model.py, with
# scaled_dot_product_attention), loaded with our weights.
# Optional: needs the `reference` extra. Never imported by a tier.

import contextlib

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from shared.params import is_decayed


class Block(nn.Module):
    def __init__(self, C, NH):
        super().__init__()
        self.n_head = NH
        self.ln_1 = nn.LayerNorm(C, eps=1e-5)
        self.c_attn = nn.Linear(C, 3 * C)
        self.c_proj = nn.Linear(C, C)
        self.ln_2 = nn.LayerNorm(C, eps=1e-5)
        self.c_fc = nn.Linear(C, 4 * C)
        self.mlp_proj = nn.Linear(4 * C, C)

    def attention(self, x, cache=None):
        # x: the LayerNorm-ed input (B, T, C) -> (B, T, C)
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        if cache is not None:  # KV cache: a dict per block holding the past keys and values
            if "k" in cache:
                k, v = torch.cat([cache["k"], k], dim=2), torch.cat([cache["v"], v], dim=2)
            cache["k"], cache["v"] = k, v
        # a single new query sees every cached key: no mask needed then
        y = F.scaled_dot_product_attention(q, k, v, is_causal=T > 1)
        return self.c_proj(y.transpose(1, 2).reshape(B, T, C))

    def forward(self, x, cache=None):
        x = x + self.attention(self.ln_1(x), cache)
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class TorchGPT(nn.Module):
    def __init__(self, config):
        super().__init__()
        C = config.n_embd
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, C)
        self.wpe = nn.Embedding(config.block_size, C)
        self.h = nn.ModuleList([Block(C, config.n_head) for _ in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(C, eps=1e-5)

    def forward(self, idx, targets=None, cache=None):
        T = idx.shape[1]
        pos0 = 0 if cache is None or "k" not in cache[0] else cache[0]["k"].shape[2]
        x = self.wte(idx) + self.wpe(torch.arange(pos0, pos0 + T, device=idx.device))
        for i, block in enumerate(self.h):
            x = block(x, None if cache is None else cache[i])
        logits = self.ln_f(x) @ self.wte.weight.T
        if targets is None:
            return logits, None
        return logits, F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-1)

    def load_canonical(self, state: dict):
        # our (in, out) linear weights are nn.Linear's (out, in) transposed
        rename = {
            "attn.c_attn": "c_attn",
            "attn.c_proj": "c_proj",
            "mlp.c_fc": "c_fc",
            "mlp.c_proj": "mlp_proj",
        }
        own = dict(self.named_parameters())
        with torch.no_grad():
            for name, a in state.items():
                key = name
                for ours, theirs in rename.items():
                    key = key.replace(ours, theirs)
                t = torch.from_numpy(np.ascontiguousarray(a))
                if t.ndim == 2 and not name.startswith(("wte", "wpe")):
                    t = t.T
                own[key].copy_(t)


def make_optimizer(model: TorchGPT, lr: float, adamw):
    params = dict(model.named_parameters())
    decay = [p for p in params.values() if is_decayed("", tuple(p.shape))]
    no_decay = [p for p in params.values() if not is_decayed("", tuple(p.shape))]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": adamw.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr,
        betas=(adamw.beta1, adamw.beta2),
        eps=adamw.eps,
    )


def train_step(model, opt, idx, targets, grad_clip, dtype=None, scaler=None):
    # dtype: the matrix products in torch.float16 or bfloat16 under torch.autocast, the tinygrad tier's
    # mixed precision (SPEC.md "Mixed precision"); scaler: float16's torch.amp.GradScaler, its loss
    # scaling (GradScaler skips a step whose gradients overflowed, where the tier runs the batch again)
    with torch.autocast(idx.device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext():
        _, loss = model(idx, targets)
    opt.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
    else:
        scaler.scale(loss).backward()
        scaler.unscale_(opt)  # the gradients divided by the scale before they are clipped
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    if scaler is None:
        opt.step()
    else:
        scaler.step(opt)
        scaler.update()
    return loss.item()


def forward_backward(model, idx, targets):
    model.zero_grad(set_to_none=True)
    _, loss = model(idx, targets)
    loss.backward()
    return loss.item()


@torch.no_grad()
def generate_greedy(model: TorchGPT, idx, max_new_tokens: int):
    """Greedy decoding with the KV cache, for prompts that stay within block_size."""
    cache = [{} for _ in model.h]
    logits, _ = model(idx, cache=cache)
    out = [idx]
    for _ in range(max_new_tokens):
        nxt = logits[:, -1].argmax(-1, keepdim=True)
        out.append(nxt)
        logits, _ = model(nxt, cache=cache)
    return torch.cat(out, dim=1)
