# SPEC.md "AdamW": global-norm clipping, then PyTorch's AdamW update, on tinygrad Tensors in place.
# tinygrad's own nn.optim.AdamW is not used: it decays every parameter it is given and has no clipping.
# These functions run inside one compiled step, so what changes from step to step arrives as a
# Tensor: a Python number would be baked into the kernels. Each assign is a kernel, so every tensor is
# assigned once, a whole expression, where impl_numpy updates in place step by step.
import math

from tinygrad import Tensor, dtypes

from shared.params import is_decayed


def clip_grad_norm(grads: dict, max_norm: float) -> Tensor:
    # one L2 norm over every gradient; scale all of them if it exceeds max_norm (torch's formula).
    # The scaled gradients replace the dict's entries unrealized, to be fused into the update.
    # summed by rows, then the rows: float32 sums of thousands of terms in one loop lose digits
    norm = sum((g * g).sum(-1).sum() for g in grads.values()).sqrt()
    coef = (max_norm / (norm + 1e-6)).contiguous()  # stored, not recomputed in every update kernel
    for name, g in grads.items():
        grads[name] = g * coef.minimum(1.0)  # no branch in a compiled step: a coefficient of 1 keeps g
    return norm


def adamw_scalars(t: int, lr: float, cfg, device=None) -> Tensor:
    # the numbers of step t (counting from 1), computed on the host in float64 as impl_numpy does:
    # the decay factor, lr / bc1 and sqrt(bc2)
    bc1 = 1.0 - cfg.beta1**t
    bc2 = 1.0 - cfg.beta2**t
    return Tensor(
        [1.0 - lr * cfg.weight_decay, lr / bc1, math.sqrt(bc2)], dtype=dtypes.float32, device=device
    )


def adamw_step(params, grads, m, v, scalars, cfg):
    # scalars from adamw_scalars; every dict is keyed by canonical name
    decay, step_size, sqrt_bc2 = scalars[0], scalars[1], scalars[2]
    for name, p in params.items():
        g = grads[name]
        m[name].assign(cfg.beta1 * m[name] + (1.0 - cfg.beta1) * g)
        v[name].assign(cfg.beta2 * v[name] + (1.0 - cfg.beta2) * (g * g))
        denom = v[name].sqrt() / sqrt_bc2 + cfg.eps  # eps outside the square root
        decayed = p * decay if is_decayed(name, p.shape) else p  # decoupled decay, before the update
        p.assign(decayed - step_size * m[name] / denom)
