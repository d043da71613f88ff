# SPEC.md "AdamW": global-norm clipping, then PyTorch's AdamW update, on numpy arrays in place.
import math

import numpy as np

from shared.params import is_decayed


def grad_norm(grads: dict) -> float:
    # one L2 norm over every gradient: clipping's, and the check that the step has not diverged
    return float(np.sqrt(sum(float(np.vdot(g, g)) for g in grads.values())))


def clip_grad_norm(grads: dict, max_norm: float, norm: float) -> None:
    # every gradient scaled if their norm exceeds max_norm (torch's formula)
    coef = max_norm / (norm + 1e-6)
    if coef < 1.0:
        for g in grads.values():
            g *= g.dtype.type(coef)


def adamw_step(params, grads, m, v, t, lr, cfg):
    # t counts from 1 (the step being taken); every argument dict is keyed by canonical name
    bc1 = 1.0 - cfg.beta1**t
    bc2 = 1.0 - cfg.beta2**t
    for name, p in params.items():
        g = grads[name]
        if is_decayed(name, p.shape):
            p *= p.dtype.type(1.0 - lr * cfg.weight_decay)  # decoupled decay, before the moments
        m[name] *= cfg.beta1  # in place: the moments belong to the optimizer
        m[name] += (1.0 - cfg.beta1) * g
        v[name] *= cfg.beta2
        v[name] += (1.0 - cfg.beta2) * (g * g)
        denom = np.sqrt(v[name]) / math.sqrt(bc2) + cfg.eps  # eps outside the square root
        p -= (lr / bc1) * m[name] / denom
