# SPEC.md "Tolerances": how close a tier must come to the float64 reference (impl_numpy in float64),
# as relative L2 error ||a - ref|| / ||ref|| per tensor. The reasoning is in SPEC.md; in short:
# float32 rounds at 6e-8, and these models' forward and backward passes grow that to 1e-7 .. 7e-7 (the
# numpy tier in float32, measured on the conformance configs), so the bounds sit about 5x above, and
# stay far below what a real bug does (erf-GELU for tanh-GELU moves the logits by about 1e-4).
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
    # AdamW through train_step, where each tier uses its own gradients: Adam divides by sqrt(v), so
    # near-zero gradients let float32 noise move an element by up to lr per step. Compared in units of
    # lr, max |p - p_ref| / lr, and the losses along the way.
    "train_params_lr": 0.1,
    "train_loss": 1e-5,
}

# a float64 tier against the float64 reference: rounding at 1e-16, grown by the same passes
FLOAT64 = {name: (bound * 1e-8) for name, bound in FLOAT32.items()}


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
