# SPEC.md "AdamW": the optimizer's hyperparameters and the learning-rate schedule, a pure function
# of the step, so every tier and every resumed run computes the same rate.
import math
from dataclasses import dataclass

from shared.errors import ConfigError


@dataclass(frozen=True)
class AdamWConfig:
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8  # added to sqrt(v_hat), outside the square root (PyTorch's placement)
    weight_decay: float = 0.1  # decoupled, on 2-D parameters only (shared.params.is_decayed)
    grad_clip: float | None = 1.0  # global L2 norm over all gradients, clipped before the update

    def __post_init__(self):
        ok = (
            0.0 <= self.beta1 < 1.0
            and 0.0 <= self.beta2 < 1.0
            and self.eps > 0.0
            and self.weight_decay >= 0.0
            and (self.grad_clip is None or self.grad_clip > 0.0)
        )
        if not ok:  # also rejects NaN: every comparison with it is false
            raise ConfigError(
                f"AdamW settings out of range: {self} (betas in [0, 1), eps > 0, weight_decay >= 0, "
                f"grad_clip None or > 0)"
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
