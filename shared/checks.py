# SPEC.md "Bad input": the checks every tier runs on idx and targets before computing anything,
# written once so every tier rejects the same inputs with the same message.
import math

import numpy as np

from shared.config import LIMITS, GPTConfig, limit_text
from shared.errors import DivergenceError, InputError
from shared.params import param_shapes


def check_idx(idx, config: GPTConfig, name: str = "idx") -> np.ndarray:
    """Returns idx as an int64 (B, T) array, or raises InputError."""
    if not isinstance(idx, np.ndarray):
        raise InputError(f"{name} must be a numpy array of token ids, got {type(idx).__name__}")
    if idx.dtype.kind not in "iu":
        raise InputError(f"{name} must hold integer token ids, got dtype {idx.dtype}")
    if idx.ndim != 2:
        raise InputError(f"{name} must have shape (B, T), got {idx.ndim}-D shape {idx.shape}")
    B, T = idx.shape
    if B == 0 or T == 0:
        raise InputError(f"{name} is empty: shape {idx.shape}")
    if T > config.block_size:
        raise InputError(f"{name} has length T={T}, longer than block_size={config.block_size}")
    lo, hi = int(idx.min()), int(idx.max())
    if lo < 0 or hi >= config.vocab_size:
        bad = lo if lo < 0 else hi
        raise InputError(f"{name} holds token id {bad}, outside [0, {config.vocab_size})")
    return idx.astype(np.int64, copy=False)


def check_piece(x, layer, config: GPTConfig) -> np.ndarray:
    """The input of one block's piece of the forward (attention_forward, block_forward): x float
    (B, T, C) with 1 <= T <= block_size, and a layer that exists. Returns x as a numpy array."""
    if not isinstance(x, np.ndarray) or x.dtype.kind != "f":
        raise InputError(f"x must be a float numpy array, got {type(x).__name__} {getattr(x, 'dtype', '')}")
    if x.ndim != 3 or x.shape[2] != config.n_embd or 0 in x.shape:
        raise InputError(f"x must have shape (B, T, {config.n_embd}), got {x.shape}")
    if x.shape[1] > config.block_size:
        raise InputError(f"x has length T={x.shape[1]}, longer than block_size={config.block_size}")
    if not isinstance(layer, (int, np.integer)) or not 0 <= layer < config.n_layer:
        raise InputError(f"layer must be an int in [0, {config.n_layer}), got {layer!r}")
    return x


def check_targets(targets, idx: np.ndarray, config: GPTConfig) -> np.ndarray:
    """Targets have idx's shape; each is a token id or -1 (ignored). At least one must count."""
    if not isinstance(targets, np.ndarray):
        raise InputError(f"targets must be a numpy array, got {type(targets).__name__}")
    if targets.dtype.kind not in "iu":
        raise InputError(f"targets must hold integer token ids, got dtype {targets.dtype}")
    if targets.shape != idx.shape:
        raise InputError(f"targets have shape {targets.shape}, idx has {idx.shape}")
    lo, hi = int(targets.min()), int(targets.max())
    if lo < -1 or hi >= config.vocab_size:
        bad = lo if lo < -1 else hi
        raise InputError(f"targets hold {bad}, outside [0, {config.vocab_size}) and not -1 (ignore)")
    if not np.any(targets != -1):
        raise InputError("every target is -1 (ignored): the loss would be 0/0")
    return targets.astype(np.int64, copy=False)


def _is_int(x) -> bool:
    # bool is an int in Python; top_k=True is a bug, not a count (as in GPTConfig)
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def check_generate_args(max_new_tokens, temperature, top_k, config: GPTConfig) -> None:
    if not _is_int(max_new_tokens) or max_new_tokens < 0:
        raise InputError(f"max_new_tokens must be a non-negative int, got {max_new_tokens!r}")
    # a number first: None >= 0.0 would raise TypeError instead of InputError
    if not isinstance(temperature, (int, float, np.integer, np.floating)) or not (
        0.0 <= temperature < np.inf
    ):
        raise InputError(f"temperature must be finite and >= 0, got {temperature!r}")  # also rejects NaN
    if top_k is not None and (not _is_int(top_k) or top_k < 1):
        raise InputError(f"top_k must be None or a positive int, got {top_k!r}")


def check_grads(grads, config: GPTConfig) -> None:
    """Gradients handed to apply_grads: one float array per canonical name, in the parameter's shape."""
    if not isinstance(grads, dict):
        raise InputError(f"grads must be a dict of canonical name -> array, got {type(grads).__name__}")
    shapes = param_shapes(config)
    missing = [n for n in shapes if n not in grads]
    extra = [n for n in grads if n not in shapes]
    if missing or extra:
        raise InputError(f"grads do not match the parameters: missing {missing[:3]}, unexpected {extra[:3]}")
    for name, shape in shapes.items():
        g = grads[name]
        if not isinstance(g, np.ndarray) or g.dtype.kind != "f" or g.shape != shape:
            got = f"{g.dtype} {g.shape}" if isinstance(g, np.ndarray) else type(g).__name__
            raise InputError(f"grads[{name!r}] must be a float array of shape {shape}, got {got}")
    for name, g in grads.items():  # SPEC.md "Limits": NaN or inf would reach every weight through AdamW
        if not np.isfinite(g).all():
            raise InputError(f"grads[{name!r}] holds NaN or inf")


def check_lr(lr) -> None:
    if (
        not isinstance(lr, (int, float, np.integer, np.floating))
        or isinstance(lr, bool)
        or not (0.0 <= lr < np.inf)
    ):
        raise InputError(f"lr must be a finite number >= 0, got {lr!r}")


def check_step(step: int) -> None:
    """SPEC.md "Limits": a model that has taken 2^53 AdamW steps takes no more (its step count, and the
    bias correction's t, would no longer be exact)."""
    if step >= LIMITS["step"]:
        raise InputError(
            f"the model is at step {step}, the most allowed ({limit_text('step')}); it takes no further step"
        )


def check_diverged(step: int, loss: float | None, norm: float) -> None:
    """SPEC.md "Limits": a step whose loss or global gradient norm is not finite is not taken; raised
    before the step changes any weight, moment or the step counter."""
    for what, value in (("the loss", loss), ("the gradient norm", norm)):
        if value is not None and not math.isfinite(value):
            raise DivergenceError(
                f"step {step}: {what} is {value}; the run diverged (try a lower learning rate)"
            )


def check_n_prefill(n_prefill, T: int) -> None:
    if not isinstance(n_prefill, (int, np.integer)) or isinstance(n_prefill, bool) or not 1 <= n_prefill <= T:
        raise InputError(f"n_prefill must be in [1, T={T}], got {n_prefill}")
