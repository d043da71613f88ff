# GPT-2 as functions over the autograd engine, in the spec's vocabulary (SPEC.md "Architecture").
# `params` maps the canonical names (shared/params.py) to Tensors. `acts`, when given, is filled with
# the spec's named activations (SPEC.md "Named activations"). `cache`, when given, is the KV cache:
# one {"k", "v"} dict per layer, holding the keys and values of the positions already seen.
import math

import numpy as np

from impl_numpy.engine import Tensor, concat, constant_max, take_rows, where

GELU_C = math.sqrt(2.0 / math.pi)


def record(acts, name, t: Tensor):
    if acts is not None:
        acts[name] = t.data


def embedding(wte, wpe, idx, pos0=0):
    # idx: (B, T) -> (B, T, C); positions count from pos0 (the tokens already in the KV cache);
    # wpe None: the position_embedding ablation, tokens only (SPEC.md "Ablations")
    T = idx.shape[1]
    x = take_rows(wte, idx)
    return x if wpe is None else x + take_rows(wpe, np.arange(pos0, pos0 + T))


def layernorm(x, w, b, eps=1e-5):
    # x: (B, T, C) -> (B, T, C); biased variance, as torch.nn.LayerNorm
    mean = x.mean(-1, keepdims=True)
    xc = x - mean
    var = (xc * xc).mean(-1, keepdims=True)
    rstd = (var + eps) ** -0.5
    return xc * rstd * w + b


def linear(x, w, b):
    # x: (B, T, in) -> (B, T, out); w is (in, out) as in the GPT-2 checkpoint (Conv1D)
    return x @ w + b


def gelu(x):
    # gelu_new, the tanh approximation GPT-2 was trained with: 0.5 x (1 + tanh(c (x + 0.044715 x^3))),
    # written with the constants folded, so that it costs 8 passes over (B, T, 4C) instead of 9
    inner = x * (GELU_C + (GELU_C * 0.044715) * (x * x))
    return x * (0.5 + 0.5 * inner.tanh())


def softmax(x):
    # over the last axis; the max shift is a constant that cancels exactly
    e = (x - constant_max(x, -1)).exp()
    return e / e.sum(-1, keepdims=True)


def attention(x, params, p, config, cache=None, acts=None):
    # x: (B, T, C) -> (B, T, C); p is the block's name prefix "h.{i}."
    B, T, C = x.shape
    NH, HS = config.n_head, config.head_size
    qkv = linear(x, params[p + "attn.c_attn.weight"], params[p + "attn.c_attn.bias"])  # (B, T, 3C)
    record(acts, p + "attn.qkv", qkv)
    q, k, v = qkv[:, :, :C], qkv[:, :, C : 2 * C], qkv[:, :, 2 * C :]
    q = q.reshape(B, T, NH, HS).transpose(0, 2, 1, 3)  # (B, NH, T, HS)
    k = k.reshape(B, T, NH, HS).transpose(0, 2, 1, 3)
    v = v.reshape(B, T, NH, HS).transpose(0, 2, 1, 3)
    pos0 = 0
    if cache is not None:
        if cache["k"] is not None:
            pos0 = cache["k"].shape[2]
            k = concat([cache["k"], k], axis=2)  # (B, NH, pos0 + T, HS)
            v = concat([cache["v"], v], axis=2)
        cache["k"], cache["v"] = k.data, v.data
    scale = 1.0 / math.sqrt(HS) if config.scale_attn_weights else 1.0  # SPEC.md "Ablations"
    att = (q @ k.transpose(0, 1, 3, 2)) * scale  # (B, NH, T, pos0 + T)
    # query i (at position pos0 + i) sees keys 0 .. pos0 + i
    allowed = np.arange(pos0 + T)[None, :] <= (pos0 + np.arange(T))[:, None]  # (T, pos0 + T)
    att = softmax(where(allowed, att, -np.inf))
    record(acts, p + "attn.att", att)
    y = att @ v  # (B, NH, T, HS)
    y = y.transpose(0, 2, 1, 3).reshape(B, T, C)  # heads side by side again
    record(acts, p + "attn.y", y)
    y = linear(y, params[p + "attn.c_proj.weight"], params[p + "attn.c_proj.bias"])
    record(acts, p + "attn.out", y)
    return y


def mlp(x, params, p, acts=None):
    # x: (B, T, C) -> (B, T, 4C) -> (B, T, C)
    h = linear(x, params[p + "mlp.c_fc.weight"], params[p + "mlp.c_fc.bias"])
    record(acts, p + "mlp.fc", h)
    h = gelu(h)
    record(acts, p + "mlp.gelu", h)
    h = linear(h, params[p + "mlp.c_proj.weight"], params[p + "mlp.c_proj.bias"])
    record(acts, p + "mlp.out", h)
    return h


def block(x, params, i, config, cache=None, acts=None):
    # x: (B, T, C) -> (B, T, C); pre-LayerNorm residual block (without config.residual, each half
    # replaces the stream: SPEC.md "Ablations")
    p = f"h.{i}."
    h = layernorm(x, params[p + "ln_1.weight"], params[p + "ln_1.bias"])
    record(acts, p + "ln_1", h)
    y = attention(h, params, p, config, cache, acts)
    x = x + y if config.residual else y
    record(acts, p + "res_1", x)
    h = layernorm(x, params[p + "ln_2.weight"], params[p + "ln_2.bias"])
    record(acts, p + "ln_2", h)
    y = mlp(h, params, p, acts)
    x = x + y if config.residual else y
    record(acts, p + "res_2", x)
    return x


def gpt(params, idx, config, cache=None, acts=None):
    # idx: (B, T) int -> logits (B, T, V)
    pos0 = 0 if cache is None or cache[0]["k"] is None else cache[0]["k"].shape[2]
    wpe = params["wpe.weight"] if config.position_embedding else None
    x = embedding(params["wte.weight"], wpe, idx, pos0)
    record(acts, "emb", x)
    for i in range(config.n_layer):
        x = block(x, params, i, config, None if cache is None else cache[i], acts)
    x = layernorm(x, params["ln_f.weight"], params["ln_f.bias"])
    record(acts, "ln_f", x)
    logits = x @ params["wte.weight"].transpose(1, 0)  # tied head: (B, T, C) @ (C, V)
    record(acts, "logits", logits)
    return logits


def cross_entropy(logits, targets):
    # logits: (B, T, V), targets: (B, T) with -1 for ignored -> scalar mean over counted positions
    V = logits.shape[-1]
    logits = logits.reshape(-1, V)
    targets = targets.reshape(-1)
    counted = (targets != -1)[:, None]  # (N, 1)
    m = constant_max(logits, -1)
    lse = ((logits - m).exp().sum(-1, keepdims=True)).log() + m  # stable log-sum-exp, (N, 1)
    onehot = (np.arange(V)[None, :] == targets[:, None]).astype(logits.dtype)  # -1 matches nothing
    picked = (logits * onehot).sum(-1, keepdims=True)  # the target's logit, (N, 1)
    return ((lse - picked) * counted.astype(logits.dtype)).sum() * (1.0 / int(counted.sum()))


def new_cache(config):
    return [{"k": None, "v": None} for _ in range(config.n_layer)]
