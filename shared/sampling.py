# SPEC.md "Generation": the draw is made here, from a tier's logits, with a seeded Generator,
# so tiers that agree on logits sample the same tokens.
import numpy as np


def sample_next(logits: np.ndarray, temperature: float, top_k: int | None, rng) -> np.ndarray:
    """logits: (B, V) for the last position -> (B,) int64 token ids.

    temperature 0 is greedy (argmax, lowest id on a tie). Otherwise the logits less their maximum are
    divided by the temperature, all but the top_k largest (ties at the k-th value kept) are dropped, and one token is
    drawn by inverse CDF with one uniform number per row: rng.random(B)."""
    logits = np.asarray(logits, dtype=np.float64)
    if temperature == 0.0:
        return np.argmax(logits, axis=-1).astype(np.int64)
    # the largest logit subtracted before dividing: a tiny temperature then sends the rest to -inf (the
    # greedy token), where logits / temperature would overflow to inf - inf = NaN
    with np.errstate(over="ignore"):  # a tiny temperature: the overflow to -inf is the point
        z = (logits - logits.max(axis=-1, keepdims=True)) / temperature
    if top_k is not None and top_k < z.shape[-1]:
        kth = np.sort(z, axis=-1)[:, -top_k][:, None]
        z = np.where(z < kth, -np.inf, z)
    p = np.exp(z)
    cdf = np.cumsum(p, axis=-1)
    u = rng.random(z.shape[0]) * cdf[:, -1]
    out = np.array([np.searchsorted(cdf[b], u[b], side="right") for b in range(z.shape[0])])
    return np.minimum(out, z.shape[-1] - 1).astype(np.int64)


def context_window(idx: np.ndarray, block_size: int) -> np.ndarray:
    """The model conditions on at most the last block_size tokens (nanoGPT's crop)."""
    return idx[:, -block_size:]


def generate_tokens(idx, max_new_tokens, block_size, prefill, step, temperature, top_k, seed):
    """SPEC.md "Generation": the decode loop every Python tier runs around its KV cache.

    prefill(window) empties the cache, runs the (B, L) window through it and returns the last
    position's logits (B, V); step(tokens) feeds (B,) tokens one position further and returns theirs.
    The next token is always conditioned on the last block_size tokens: while the cache has room one
    step suffices, and once it is full the cache is rebuilt from the last block_size tokens."""
    rng = np.random.default_rng(seed)
    out = idx
    cached = 0  # positions in the cache
    for _ in range(max_new_tokens):
        if cached == 0 or cached == block_size:
            window = context_window(out, block_size)
            logits, cached = prefill(window), window.shape[1]
        else:
            logits, cached = step(out[:, -1]), cached + 1
        nxt = sample_next(logits, temperature, top_k, rng)
        out = np.concatenate([out, nxt[:, None]], axis=1)
    return out
