# Model FLOPs of each benchmarked operation: 2 per multiply-add of the matmuls (the linear layers, the
# attention scores and their weighted sum, the tied head); LayerNorm, GELU, softmax and AdamW are left
# out, as in the usual MFU estimates (PaLM, nanoGPT). The attention scores count the full T x T square,
# the masked half too. Backward costs twice the forward.
from shared.config import GPTConfig

CEILING_N = 2048  # numpy's CEILING_N^3 float32 matmul is the machine's ceiling


def ceiling_flops() -> int:
    return 2 * CEILING_N**3


def attention_flops(C: int, B: int, T: int, keys: int) -> int:
    # c_attn (C -> 3C) and c_proj (C -> C) for B*T rows; scores and weighted sum over `keys` keys
    return 2 * B * T * 4 * C * C + 4 * B * T * keys * C


def block_flops(C: int, B: int, T: int, keys: int) -> int:
    # the attention, then the MLP (C -> 4C -> C)
    return attention_flops(C, B, T, keys) + 2 * B * T * 8 * C * C


def forward_flops(config: GPTConfig, B: int, T: int, keys: int | None = None) -> int:
    C = config.n_embd
    keys = T if keys is None else keys
    return config.n_layer * block_flops(C, B, T, keys) + 2 * B * T * C * config.vocab_size


def op_flops(op: str, config: GPTConfig, B: int, T: int) -> int:
    """The model FLOPs of one call of a benchmarked operation (benchmarks/test_benchmarks.py)."""
    C = config.n_embd
    if op == "matmul":  # (B*T, C) @ (C, 4C)
        return 2 * B * T * C * 4 * C
    if op == "attention":
        return attention_flops(C, B, T, T)
    if op == "block":
        return block_flops(C, B, T, T)
    if op == "forward":
        return forward_flops(config, B, T)
    if op in ("forward+backward", "train step"):
        return 3 * forward_flops(config, B, T)
    if op == "generate":  # batch 1: one position at a time through the KV cache, T - 1 of them
        return sum(forward_flops(config, 1, 1, keys=p + 1) for p in range(T - 1))
    if op == "recompute":  # batch 1: one new token without the cache, the whole prefix of T through
        return forward_flops(config, 1, T)
    raise ValueError(f"unknown operation {op!r}")
