# SPEC.md "Parameters" and "Init": the canonical names, order and shapes (Hugging Face GPT2Model's),
# and the one initialization every tier loads, so tiers start from identical weights by construction.
import math

import numpy as np

from shared.config import GPTConfig
from shared.errors import CheckpointError, ConfigError


def param_shapes(config: GPTConfig) -> dict[str, tuple[int, ...]]:
    """Canonical name -> shape, in checkpoint order. Linear weights are (in, out): y = x @ W + b."""
    return dict(iter_param_shapes(config))


def iter_param_shapes(config: GPTConfig):
    """param_shapes one (name, shape) at a time, for a caller that may stop early (a checkpoint reader
    naming the first tensors a file lacks, without building the table a file's config asks for)."""
    V, C, T = config.vocab_size, config.n_embd, config.block_size
    yield "wte.weight", (V, C)
    yield "wpe.weight", (T, C)
    for i in range(config.n_layer):
        p = f"h.{i}."
        yield p + "ln_1.weight", (C,)
        yield p + "ln_1.bias", (C,)
        yield p + "attn.c_attn.weight", (C, 3 * C)
        yield p + "attn.c_attn.bias", (3 * C,)
        yield p + "attn.c_proj.weight", (C, C)
        yield p + "attn.c_proj.bias", (C,)
        yield p + "ln_2.weight", (C,)
        yield p + "ln_2.bias", (C,)
        yield p + "mlp.c_fc.weight", (C, 4 * C)
        yield p + "mlp.c_fc.bias", (4 * C,)
        yield p + "mlp.c_proj.weight", (4 * C, C)
        yield p + "mlp.c_proj.bias", (C,)
    yield "ln_f.weight", (C,)
    yield "ln_f.bias", (C,)


def num_params(config: GPTConfig) -> int:
    return sum(math.prod(s) for s in param_shapes(config).values())


def is_decayed(name: str, shape: tuple[int, ...]) -> bool:
    """SPEC.md "AdamW": weight decay applies to 2-D parameters only (matmul weights, embeddings)."""
    return len(shape) == 2


def init_state_dict(config: GPTConfig, seed: int = 0, dtype=np.float32) -> dict[str, np.ndarray]:
    """SPEC.md "Init". Draws in canonical order from one Generator, always in float64, then casts,
    so the float32 and float64 models of one seed hold the same numbers up to rounding."""
    rng = np.random.default_rng(seed)
    residual_std = 0.02 / math.sqrt(2 * config.n_layer)
    state = {}
    for name, shape in param_shapes(config).items():
        if name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")):
            w = np.ones(shape)
        elif name.endswith(".bias"):
            w = np.zeros(shape)
        elif name.endswith("c_proj.weight"):  # attn.c_proj and mlp.c_proj: the residual projections
            w = rng.normal(0.0, residual_std, size=shape)
        else:
            w = rng.normal(0.0, 0.02, size=shape)
        state[name] = w.astype(dtype)
    return state


def check_state_dict(config: GPTConfig, state: dict) -> None:
    """SPEC.md "Bad input": missing, extra or wrong-shaped tensors, and weights that do not match the
    config, each raise CheckpointError / ConfigError naming the tensor."""
    expected = param_shapes(config)
    missing = [n for n in expected if n not in state]
    extra = [n for n in state if n not in expected]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {_names(missing)}")
        if extra:
            parts.append(f"unexpected {_names(extra)}")
        raise CheckpointError(f"state dict does not match the config: {'; '.join(parts)}")
    for name, shape in expected.items():
        a = state[name]
        if not isinstance(a, np.ndarray):
            raise CheckpointError(f"{name} must be a numpy array, got {type(a).__name__}")
        if tuple(a.shape) != shape:
            # the most common cause: the weights belong to another config
            raise ConfigError(
                f"{name} has shape {tuple(a.shape)} but the config needs {shape} "
                f"(does the config match the weights?)"
            )
        if a.dtype.kind != "f":
            raise CheckpointError(f"{name} has dtype {a.dtype}, expected a float type")
        if not np.all(np.isfinite(a)):
            raise CheckpointError(f"{name} holds NaN or infinite values")


def _names(names: list[str], most: int = 5) -> str:
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")
