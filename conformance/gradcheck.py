# A float64 tier's gradients against central finite differences of its own loss.
import numpy as np

from conformance.compare import random_state_dict
from shared.params import param_shapes


def finite_difference_check(tier, config, entries_per_tensor=6, eps=1e-5, seed=3) -> dict[str, float]:
    """Worst relative error per parameter tensor, at up to `entries_per_tensor` entries spread over it,
    of the tier's float64 gradient against (L(p + eps) - L(p - eps)) / (2 eps)."""
    state = {n: a.astype(np.float64) for n, a in random_state_dict(config, seed).items()}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, config.vocab_size, size=(2, min(9, config.block_size)))
    targets = rng.integers(0, config.vocab_size, size=idx.shape)
    targets[1, : idx.shape[1] // 3] = -1
    _, grads = tier.from_state_dict(config, state, dtype=np.float64).grads(idx, targets)
    errors = {}
    for name, shape in param_shapes(config).items():
        worst = 0.0
        for j in np.linspace(
            0, int(np.prod(shape)) - 1, num=min(entries_per_tensor, int(np.prod(shape))), dtype=int
        ):
            losses = []
            for sign in (1.0, -1.0):
                moved = dict(state)
                moved[name] = state[name].copy()
                moved[name].reshape(-1)[j] += sign * eps
                losses.append(tier.from_state_dict(config, moved, dtype=np.float64).forward(idx, targets)[1])
            numeric = (losses[0] - losses[1]) / (2 * eps)
            analytic = grads[name].reshape(-1)[j]
            worst = max(worst, abs(numeric - analytic) / max(abs(numeric), abs(analytic), 1e-3))
        errors[name] = worst
    return errors
