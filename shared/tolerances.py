# SPEC.md "Tolerances": how close a tier must come to the float64 reference (impl_numpy in float64),
# as relative L2 error ||a - ref|| / ||ref|| per tensor. The reasoning is in SPEC.md; in short:
# float32 rounds at 6e-8, and these models' forward and backward passes grow that to 3e-7 .. 8e-7 (the
# numpy tier in float32, measured on the conformance configs and weights), so the bounds sit about 5x
# above, and stay below what a real bug does there (erf-GELU for tanh-GELU moves the logits by 1.5e-4,
# LayerNorm eps 1e-6 for 1e-5 by 4e-6 .. 1.5e-5).
import numpy as np

FLOAT32 = {
    "logits": 2e-6,
    "loss": 2e-6,  # |loss - ref| / |ref|
    "activations": 2e-6,  # every named activation
    "grads": 5e-6,  # every parameter gradient
    "decode": 2e-6,  # KV-cache logits against the reference's full-recompute logits
    # AdamW fed the reference's gradients (apply_grads): the same arithmetic on the same inputs, so
    # only the rounding of the stored parameters differs: max |p - p_ref| / lr (lr 1e-2, 3 steps)
    "adamw_params_lr": 1e-4,
    "adamw_moments": 5e-6,  # of m and v after N steps
    # AdamW through train_step, each tier on its own gradients. Adam divides by sqrt(v): where the exact
    # gradient is 0 (the key bias of attention: softmax ignores a shift shared by all keys) each tier
    # steps by +-lr on its own rounding noise. The per-element bound is therefore the largest honest
    # disagreement, 2 lr per step (each tier's normalized step is at most about lr); the strict check of
    # AdamW is adamw_params_lr above, and the losses along the way are held tight.
    "train_params_lr_per_step": 2.0,
    "train_loss": 1e-5,
}

# a float64 tier against the float64 reference: rounding at 1e-16, grown by the same passes
FLOAT64 = {
    name: (bound if name == "train_params_lr_per_step" else bound * 1e-8) for name, bound in FLOAT32.items()
}


def bounds_for(dtype) -> dict[str, float]:
    return FLOAT64 if np.dtype(dtype) == np.float64 else FLOAT32


def pairwise(a: dict, b: dict) -> dict[str, float]:
    """Two tiers each within their bound of the reference are within the sum of each other."""
    return {name: a[name] + b[name] for name in a}


def rel_l2(a, ref) -> float:
    """||a - ref|| / ||ref||, in float64; an all-zero reference compares the norm of a itself."""
    a = np.asarray(a, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if a.shape != ref.shape:
        return float("inf")
    denom = np.linalg.norm(ref)
    diff = np.linalg.norm(a - ref)
    return float(diff / denom) if denom > 0 else float(diff)
