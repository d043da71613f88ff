# SPEC.md "AdamW": global-norm clipping, then PyTorch's AdamW update, on tinygrad Tensors.
# tinygrad's own nn.optim.AdamW is not used: it decays every parameter it is given and has no clipping.
# The parameters, gradients and moments are each one flat buffer in canonical order, so the whole
# update is a handful of kernels, where a loop over the parameters would be several per parameter (in
# tinygrad every kernel costs compile time once and launch time at every step). These functions run
# inside one compiled step, so what changes from step to step arrives as a Tensor: a Python number
# would be baked into the kernels.
import math

from tinygrad import Tensor, dtypes


def grad_norm(g: Tensor) -> Tensor:
    # one L2 norm over every gradient (g holds them all): clipping's, and the check that the step has
    # not diverged. The squares are summed in rows of 1024, then the rows: one float32 loop over
    # 10^5..10^8 terms would lose digits.
    rows = g.pad((0, -g.shape[0] % 1024)).reshape(-1, 1024)
    return (rows * rows).sum(-1).sum().sqrt()


def clip_grad_norm(g: Tensor, max_norm: float, norm: Tensor) -> Tensor:
    # g scaled if its norm exceeds max_norm (torch's formula), unrealized, to be fused into the update
    coef = (max_norm / (norm + 1e-6)).minimum(1.0)  # no branch in a compiled step: 1 keeps g as it is
    return g * coef.contiguous()  # the coefficient stored once, not recomputed by every kernel


def adamw_scalars(t: int, lr: float, norm: float, cfg, device=None) -> Tensor:
    # the numbers of step t (counting from 1), computed on the host in float64 as impl_numpy does:
    # the decay factor, lr / bc1 and sqrt(bc2); and the gradient norm (a float32, back where it was)
    bc1 = 1.0 - cfg.beta1**t
    bc2 = 1.0 - cfg.beta2**t
    return Tensor(
        [1.0 - lr * cfg.weight_decay, lr / bc1, math.sqrt(bc2), norm], dtype=dtypes.float32, device=device
    )


def adamw_step(params, grads, m, v, decayed, scalars, cfg):
    # params, m, v: flat buffers, updated in place; grads: flat; decayed: True on the elements of the
    # 2-D parameters (shared/params.py is_decayed); scalars from adamw_scalars
    decay, step_size, sqrt_bc2 = scalars[0], scalars[1], scalars[2]
    p = decayed.where(params * decay, params)  # decoupled decay, before the update
    m.assign(cfg.beta1 * m + (1.0 - cfg.beta1) * grads)
    v.assign(cfg.beta2 * v + (1.0 - cfg.beta2) * (grads * grads))
    denom = v.sqrt() / sqrt_bc2 + cfg.eps  # eps outside the square root
    params.assign(p - step_size * m / denom)
