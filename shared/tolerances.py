# SPEC.md "Tolerances": how close a tier must come to the truth (the float64 values an outside library
# computed, conformance/golden/), as relative L2 error ||a - ref|| / ||ref|| per tensor, with the
# reasoning. The measured errors and the headroom of each bound are the table in SPEC.md, which
# `python -m conformance.summary --spec` writes from a fresh measurement (numbers live in one place).
import numpy as np

FLOAT32 = {
    "logits": 2e-6,
    "loss": 2e-6,  # |loss - ref| / |ref|
    "activations": 2e-6,  # every named activation
    "grads": 5e-6,  # every parameter gradient
    "decode": 2e-6,  # KV-cache logits against the truth's full-recompute logits
    # AdamW fed the truth's gradients (apply_grads): the same arithmetic on the same inputs, so only
    # the rounding of the stored parameters differs: max |p - p_ref| / lr (lr 1e-2, 3 steps)
    "adamw_params_lr": 1e-4,
    "adamw_moments": 5e-6,  # of m and v after N steps
    # AdamW through train_step, each tier on its own gradients, max |p - p_ref| / lr after the steps.
    # Adam divides by sqrt(v): where the exact gradient is 0 (the part of attn.c_attn.bias that adds to
    # the keys: softmax ignores a shift shared by all keys) or nearly so (flat_gradient), each tier
    # steps by up to +-lr on its own rounding noise, so there the bound is the largest honest
    # disagreement, 2 lr per step; everywhere else the gradient's rounding moves a step by far less
    # than lr, and the parameters' own float32 rounding (u |p| per step) sets the floor.
    "train_params_lr": 2e-3,
    "train_flat_lr": 2.0 * 3,  # 3 steps
    "train_loss": 1e-5,
}

# Regimes whose rounding grows beyond the default's (SPEC.md "Tolerances", "Large magnitudes"): a case
# names its regime, and its bounds are the default's with these replaced.
REGIMES = {
    "default": {},
    # attention scores and logits in the hundreds (up to 336 and 308 in the conformance case): a score
    # s rounds by u |s| = 2e-5 absolute, which softmax turns into a relative error of the weights, and
    # the backward pass through the saturated softmax carries it into every earlier gradient; the
    # LayerNorm gain of 57 before the head rounds by u 57 = 3.4e-6, 3.4e-3 lr at lr 1e-3
    "large": {
        "logits": 1e-5,
        "activations": 1e-5,
        "decode": 1e-5,
        "grads": 3e-4,
        "train_params_lr": 3e-2,
    },
}

# a float64 tier: rounding at 1.1e-16 instead of 6e-8, grown by the same passes
_PER_LR = ("train_flat_lr",)


def _float64(bounds: dict) -> dict:
    return {name: (b if name in _PER_LR else b * 1e-8) for name, b in bounds.items()}


FLOAT64 = _float64(FLOAT32)


# Mixed precision (SPEC.md "Mixed precision", the tinygrad tier): the products' operands rounded to
# float16 (u = 4.9e-4) or bfloat16 (u = 3.9e-3) instead of float32 (6e-8), so every bound that rounding
# sets is the measured error under that rounding, about 5x above it as elsewhere; per precision, the
# default regime's replacements, then the large regime's on top. The optimizer is float32 either way
# (apply_grads: the float32 bounds). After train steps, the gradients' relative error (1e-3 .. 3e-2)
# exceeds FLAT for many elements, where Adam's sign-like step can turn: every element is held to the
# largest honest disagreement, 2 lr per step, and the losses say whether training follows the truth.
MIXED = {
    "float16": {
        "default": {
            "logits": 5e-3,
            "loss": 1e-3,
            "activations": 5e-3,
            "grads": 2e-2,
            "decode": 5e-3,
            "train_params_lr": 2.0 * 3,
            "train_loss": 5e-3,
        },
        "large": {"logits": 3e-2, "activations": 5e-2, "grads": 0.75, "decode": 3e-2},
    },
    "bfloat16": {
        "default": {
            "logits": 5e-2,
            "loss": 1e-2,
            "activations": 5e-2,
            "grads": 0.15,
            "decode": 5e-2,
            "train_params_lr": 2.0 * 3,
            "train_loss": 3e-2,
        },
        # scores in the hundreds round by +-1 in bfloat16: the gradients through the saturated softmax
        # are mostly rounding (SPEC.md "Mixed precision"), and this bound checks only that they are finite
        "large": {"logits": 0.2, "activations": 0.3, "grads": 6.0, "decode": 0.2},
    },
}


def bounds_for(dtype, regime: str = "default", mixed_precision: str | None = None) -> dict[str, float]:
    bounds = {**FLOAT32, **REGIMES[regime]}
    if mixed_precision is not None:
        return {**bounds, **MIXED[mixed_precision]["default"], **MIXED[mixed_precision].get(regime, {})}
    return _float64(bounds) if np.dtype(dtype) == np.float64 else bounds


def pairwise(a: dict, b: dict) -> dict[str, float]:
    """Two tiers each within their bound of the truth are within the sum of each other."""
    return {name: a[name] + b[name] for name in a}


# An element's gradient is flat when it is under FLAT times its tensor's RMS: there a rounding error of
# the tensor's size (1e-6 of its norm) is 1e-3 of the element, and Adam's normalized step can turn.
FLAT = 1e-3


def flat_gradient(name: str, grad: np.ndarray, config) -> np.ndarray:
    """The elements of a parameter whose true gradient `grad` is zero by the model's symmetry but not
    in rounding (the keys' part of attn.c_attn.bias: softmax ignores a shift shared by all keys), or
    nonzero and under FLAT times the tensor's RMS, as a boolean mask. An exact zero (a position past
    T, wpe without position embeddings) is not flat: every tier computes it exactly, and steps by 0."""
    grad = np.asarray(grad, dtype=np.float64)
    flat = (np.abs(grad) < FLAT * np.sqrt(np.mean(grad * grad))) & (grad != 0)
    if name.endswith("attn.c_attn.bias"):
        flat[config.n_embd : 2 * config.n_embd] = True
    return flat


def rel_l2(a, ref) -> float:
    """||a - ref|| / ||ref||, in float64; an all-zero reference compares the norm of a itself."""
    a = np.asarray(a, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if a.shape != ref.shape:
        return float("inf")
    denom = np.linalg.norm(ref)
    diff = np.linalg.norm(a - ref)
    return float(diff / denom) if denom > 0 else float(diff)
