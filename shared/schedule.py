# SPEC.md "AdamW": the optimizer's hyperparameters and the learning-rate schedule, a pure function
# of the step, so every tier and every resumed run computes the same rate.
import math
from dataclasses import dataclass

import numpy as np

from shared.errors import ConfigError

# field -> (lower bound, lower bound excluded, upper bound (excluded) or None)
ADAMW_RANGES = {
    "beta1": (0.0, False, 1.0),
    "beta2": (0.0, False, 1.0),
    "eps": (0.0, True, None),
    "weight_decay": (0.0, False, None),
    "grad_clip": (0.0, True, None),  # or None: no clipping
}


def _range(allowed) -> str:
    lo, lo_open, hi = allowed
    if hi is not None:
        return f"[{lo:g}, {hi:g})"
    return f"{'>' if lo_open else '>='} {lo:g}"


@dataclass(frozen=True)
class AdamWConfig:
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8  # added to sqrt(v_hat), outside the square root (PyTorch's placement)
    weight_decay: float = 0.1  # decoupled, on 2-D parameters only (shared.params.is_decayed)
    grad_clip: float | None = 1.0  # global L2 norm over all gradients, clipped before the update

    def __post_init__(self):
        # SPEC.md "Limits": each a finite number, never a bool (True is an int in Python, and a checkpoint's
        # "eps": true is a mistake, not 1.0; the C reader refuses it too); numpy numbers become floats
        for name, allowed in ADAMW_RANGES.items():
            value = getattr(self, name)
            if name == "grad_clip" and value is None:
                continue
            if (
                not isinstance(value, (int, float, np.integer, np.floating))
                or isinstance(value, (bool, np.bool_))
                or not math.isfinite(value)
            ):
                raise ConfigError(
                    f"AdamW settings: {name} is {value!r}, not a finite number"
                    + (" or None" if name == "grad_clip" else "")
                )
            value = float(value)
            object.__setattr__(self, name, value)
            lo, lo_open, hi = allowed
            if value < lo or (lo_open and value == lo) or (hi is not None and value >= hi):
                raise ConfigError(
                    f"AdamW settings out of range: {name} is {value!r}; allowed: {_range(allowed)}"
                )


def lr_at(step: int, max_lr: float, min_lr: float, warmup_steps: int, decay_steps: int) -> float:
    """Linear warmup to max_lr, then cosine down to min_lr at decay_steps, then flat (nanoGPT's get_lr).
    step counts from 0."""
    if step < warmup_steps:
        return max_lr * (step + 1) / (warmup_steps + 1)
    if step >= decay_steps:
        return min_lr
    ratio = (step - warmup_steps) / max(1, decay_steps - warmup_steps)
    coeff = 0.5 * (1.0 + math.cos(math.pi * ratio))
    return min_lr + coeff * (max_lr - min_lr)
