# GPT-2 as functions over tinygrad Tensors, in the spec's vocabulary (SPEC.md "Architecture").
# `params` maps the canonical names (shared/params.py) to Tensors. `acts`, when given, is filled with
# the spec's named activations (SPEC.md "Named activations"). `cache`, when given, is the KV cache:
# one {"k", "v"} dict per layer, each (B, NH, block_size, HS): shapes stay fixed so that one compiled
# step serves every position, and pos0 (an int, or a Tensor in the compiled decode step) says where
# the new tokens go. Gradients come from tinygrad's autograd (Tensor.gradient), not from this file.
# `compute` is the dtype of the matrix products: float32, or float16 / bfloat16 under mixed precision
# (SPEC.md "Mixed precision"), where the rest stays float32. Only this tier has it: a GPU's half-precision
# products are what it is for, and tinygrad is the tier that reaches GPUs; so here alone `matmul` and
# `compute_weights` stand where the numpy tier writes `@`. Each function takes the compute dtype from the
# weights it is given: `gpt` casts them once (compute_weights), and every product follows them.
# tinygrad fuses what it can, and would rather recompute an activation inside a later kernel than
# store it: `.contiguous()` marks the two results worth storing (the softmax and the GELU: without
# them a shakespeare training step takes 3x as long); it changes where results are kept, not what
# is computed.
import math

from tinygrad import Tensor, dtypes

GELU_C = math.sqrt(2.0 / math.pi)


def record(acts, name, t: Tensor):
    if acts is not None:
        acts[name] = t


def embedding(wte, wpe, idx, pos0=0):
    # idx: (B, T) -> (B, T, C); positions count from pos0 (the tokens already in the KV cache);
    # wpe None: the position_embedding ablation, tokens only (SPEC.md "Ablations")
    T = idx.shape[1]
    x = wte[idx]
    return x if wpe is None else x + wpe[Tensor.arange(T) + pos0]


def layernorm(x, w, b, eps=1e-5):
    # x: (B, T, C) -> (B, T, C); biased variance, as torch.nn.LayerNorm
    mean = x.mean(-1, keepdim=True)
    xc = x - mean
    var = (xc * xc).mean(-1, keepdim=True)
    rstd = (var + eps) ** -0.5
    return xc * rstd * w + b


def matmul(a, b, dtype):
    # a: (..., M, K), b: (..., K, N) -> (..., M, N) float32, with both operands rounded to dtype and the
    # products summed in float32 (SPEC.md "Mixed precision"); in float32 it is a plain a @ b
    return a.cast(dtype).dot(b.cast(dtype), dtype=dtypes.float32)


def linear(x, w, b):
    # x: (B, T, in) -> (B, T, out); w is (in, out) as in the GPT-2 checkpoint (Conv1D), in the compute
    # dtype (gpt() casts the weights of the products once); the bias is added in float32
    return matmul(x, w, w.dtype) + b


def gelu(x):
    # gelu_new, the tanh approximation GPT-2 was trained with: 0.5 x (1 + tanh(c (x + 0.044715 x^3))),
    # written with the constants folded, so that it costs 8 passes over (B, T, 4C) instead of 9
    inner = x * (GELU_C + (GELU_C * 0.044715) * (x * x))
    return (x * (0.5 + 0.5 * inner.tanh())).contiguous()


def softmax(x):
    # over the last axis; the max shift is a constant that cancels exactly
    e = (x - x.max(-1, keepdim=True).detach()).exp()
    return (e / e.sum(-1, keepdim=True)).contiguous()


def attention(x, params, p, config, cache=None, pos0=0, acts=None):
    # x: (B, T, C) -> (B, T, C); p is the block's name prefix "h.{i}."
    B, T, C = x.shape
    NH, HS = config.n_head, config.head_size
    qkv = linear(x, params[p + "attn.c_attn.weight"], params[p + "attn.c_attn.bias"])  # (B, T, 3C)
    record(acts, p + "attn.qkv", qkv)
    q, k, v = qkv[:, :, :C], qkv[:, :, C : 2 * C], qkv[:, :, 2 * C :]
    # their gradients are stored apart before they are put side by side: fused into one kernel, each
    # element of d qkv would run all three reductions and keep one
    q, k, v = q.contiguous_backward(), k.contiguous_backward(), v.contiguous_backward()
    q = q.reshape(B, T, NH, HS).permute(0, 2, 1, 3)  # (B, NH, T, HS)
    k = k.reshape(B, T, NH, HS).permute(0, 2, 1, 3)
    v = v.reshape(B, T, NH, HS).permute(0, 2, 1, 3)
    S = T  # the keys: the T new positions, or all block_size slots of the cache
    if cache is not None:
        S = config.block_size
        if T == 1:  # one decode step: the new key and value go to slot pos0
            at = Tensor.arange(S)[:, None] == pos0  # (S, 1)
            k, v = at.where(k, cache["k"]), at.where(v, cache["v"])  # (B, NH, S, HS)
        else:  # a prefill from position 0; the slots past T hold nothing yet, and are masked
            assert isinstance(pos0, int) and pos0 == 0, "a multi-token cache call starts an empty cache"
            k, v = k.pad((None, None, (0, S - T), None)), v.pad((None, None, (0, S - T), None))
        cache["k"].assign(k)
        cache["v"].assign(v)
    compute = params[p + "attn.c_attn.weight"].dtype  # the heads' two products too run in it
    scale = 1.0 / math.sqrt(HS) if config.scale_attn_weights else 1.0  # SPEC.md "Ablations"
    att = matmul(q, k.permute(0, 1, 3, 2), compute) * scale  # (B, NH, T, S)
    # query i (at position pos0 + i) sees keys 0 .. pos0 + i
    allowed = Tensor.arange(S)[None, :] <= (Tensor.arange(T) + pos0)[:, None]  # (T, S)
    att = softmax(allowed.where(att, -math.inf))
    record(acts, p + "attn.att", att)
    y = matmul(att, v, compute)  # (B, NH, T, HS)
    y = y.permute(0, 2, 1, 3).reshape(B, T, C)  # heads side by side again
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


def block(x, params, i, config, cache=None, pos0=0, acts=None):
    # x: (B, T, C) -> (B, T, C); pre-LayerNorm residual block (without config.residual, each half
    # replaces the stream: SPEC.md "Ablations")
    p = f"h.{i}."
    h = layernorm(x, params[p + "ln_1.weight"], params[p + "ln_1.bias"])
    record(acts, p + "ln_1", h)
    y = attention(h, params, p, config, cache, pos0, acts)
    x = x + y if config.residual else y
    record(acts, p + "res_1", x)
    h = layernorm(x, params[p + "ln_2.weight"], params[p + "ln_2.bias"])
    record(acts, p + "ln_2", h)
    y = mlp(h, params, p, acts)
    x = x + y if config.residual else y
    record(acts, p + "res_2", x)
    return x


def gpt(params, idx, config, cache=None, pos0=0, acts=None, compute=dtypes.float32):
    # idx: (B, T) int -> logits (B, T, V)
    wpe = params["wpe.weight"] if config.position_embedding else None
    x = embedding(params["wte.weight"], wpe, idx, pos0)  # the float32 weights: a lookup, no product
    record(acts, "emb", x)
    params = compute_weights(params, compute)
    for i in range(config.n_layer):
        x = block(x, params, i, config, None if cache is None else cache[i], pos0, acts)
    x = layernorm(x, params["ln_f.weight"], params["ln_f.bias"])
    record(acts, "ln_f", x)
    logits = matmul(x, params["wte.weight"].transpose(1, 0), compute)  # tied head: (B, T, C) @ (C, V)
    record(acts, "logits", logits)
    return logits


def compute_weights(params, compute):
    # the weights of the products in the compute dtype, cast once per pass: every 2-D parameter but
    # wpe, which is added, not multiplied; the others, and the residual stream, stay float32
    return {n: t.cast(compute) if t.ndim == 2 and n != "wpe.weight" else t for n, t in params.items()}


def cross_entropy(logits, targets):
    # logits: (B, T, V), targets: (B, T) with -1 for ignored -> scalar mean over counted positions
    V = logits.shape[-1]
    logits = logits.reshape(-1, V)
    targets = targets.reshape(-1)
    counted = (targets != -1)[:, None]  # (N, 1)
    m = logits.max(-1, keepdim=True).detach()
    lse = ((logits - m).exp().sum(-1, keepdim=True)).log() + m  # stable log-sum-exp, (N, 1)
    onehot = (Tensor.arange(V)[None, :] == targets[:, None]).cast(logits.dtype)  # -1 matches nothing
    picked = (logits * onehot).sum(-1, keepdim=True)  # the target's logit, (N, 1)
    N = counted.cast(logits.dtype).sum()  # counted in the graph: a host number would be baked into it
    return ((lse - picked) * counted.cast(logits.dtype)).sum() * (1.0 / N)


def new_cache(config, B, device=None):
    shape = (B, config.n_head, config.block_size, config.head_size)
    zeros = lambda: Tensor.zeros(*shape, dtype=dtypes.float32, device=device).contiguous()
    cache = [{"k": zeros(), "v": zeros()} for _ in range(config.n_layer)]
    Tensor.realize(*[t for c in cache for t in c.values()])
    return cache
