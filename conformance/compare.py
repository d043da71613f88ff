# Comparing a tier's tensors with the reference's and reporting them, worst first.
import numpy as np

from shared.config import GPTConfig
from shared.params import param_shapes
from shared.tolerances import rel_l2


def random_state_dict(config: GPTConfig, seed: int) -> dict[str, np.ndarray]:
    """Weights with every parameter random and at a scale where each nonlinearity works in its curved
    range: the spec's init sets biases to 0 and gains to 1 (which would hide a bias added in the wrong
    place) and keeps the MLP's inputs near 0, where erf-GELU and tanh-GELU agree to 1e-7."""
    rng = np.random.default_rng(seed)
    state = {}
    for name, shape in param_shapes(config).items():
        if name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")):
            w = 1.0 + 0.2 * rng.standard_normal(shape)
        elif name in ("wte.weight", "wpe.weight"):
            w = 0.5 * rng.standard_normal(shape)
        elif len(shape) == 2:  # (in, out) matmul weights: unit-variance outputs from unit-variance inputs
            w = rng.standard_normal(shape) / np.sqrt(shape[0])
        else:
            w = 0.2 * rng.standard_normal(shape)
        state[name] = w.astype(np.float32)
    return state


def report(rows) -> str:
    """rows: (tensor, error, bound). A table, worst error/bound first, failures marked."""
    rows = sorted(rows, key=_ratio, reverse=True)
    width = max(len(r[0]) for r in rows)
    lines = [f"{'tensor':<{width}}  {'error':>9}  {'bound':>9}"]
    for name, err, bound in rows:
        mark = "  FAIL" if not err <= bound else ""
        lines.append(f"{name:<{width}}  {err:9.2e}  {bound:9.2e}{mark}")
    return "\n".join(lines)


def _ratio(row) -> float:
    """error / bound, NaN counted as the worst"""
    _, err, bound = row
    ratio = err / bound if bound > 0 else np.inf
    return np.inf if np.isnan(ratio) else ratio


def worst(rows):
    """The row (tensor, error, bound) with the largest error relative to its bound."""
    return max(rows, key=_ratio)


def assert_within(rows, what: str):
    """Fails with the whole table when any row exceeds its bound (NaN exceeds every bound)."""
    rows = list(rows)
    if any(not err <= bound for _, err, bound in rows):
        raise AssertionError(f"{what}: tensors beyond the spec's tolerance\n{report(rows)}")


def max_abs(a, ref) -> float:
    """max |a - ref|, in float64; a shape mismatch is infinite, a NaN anywhere gives NaN."""
    a = np.asarray(a, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    return float(np.abs(a - ref).max()) if a.shape == ref.shape else float("inf")


def compare_dicts(got: dict, ref: dict, bound: float):
    assert set(got) == set(ref), f"names differ: missing {set(ref) - set(got)}, extra {set(got) - set(ref)}"
    return [(name, rel_l2(got[name], ref[name]), bound) for name in ref]
