# Run-to-run determinism of every tier: the same weights and inputs give bit-identical logits, gradients,
# parameters after AdamW steps and sampled tokens, whether computed twice by one model or by two.
import numpy as np
import pytest

from conformance.cases import batch
from conformance.compare import random_state_dict
from conformance.tiers import TIERS, tier_module
from shared.config import GPTConfig

CONFIG = GPTConfig(n_layer=2, n_head=3, n_embd=48, block_size=24, vocab_size=37)


def run(model, idx, targets) -> dict:
    out = {"logits": model.forward(idx, targets)[0]}
    out.update({f"grad {n}": g for n, g in model.grads(idx, targets)[1].items()})
    out["losses"] = np.array([model.train_step(idx, targets, 1e-2) for _ in range(2)])
    out.update({f"param {n}": p for n, p in model.state_dict().items()})
    out["sampled"] = model.generate(idx[:, :5], 6, temperature=1.0, top_k=10, seed=3)
    return out


@pytest.mark.parametrize("tier", list(TIERS))
def test_bit_identical_runs(tier):
    _, dtype = TIERS[tier]
    state = random_state_dict(CONFIG, seed=11)
    idx, targets = batch(CONFIG, 3, 20, seed=11)
    module = tier_module(tier)
    first = run(module.from_state_dict(CONFIG, state, dtype=dtype), idx, targets)
    second = run(module.from_state_dict(CONFIG, state, dtype=dtype), idx, targets)
    model = module.from_state_dict(CONFIG, state, dtype=dtype)
    again = [model.forward(idx, targets)[0] for _ in range(2)]
    for name, a in first.items():
        assert a.tobytes() == second[name].tobytes(), f"{tier}: {name} differs between two runs"
    assert again[0].tobytes() == again[1].tobytes() == first["logits"].tobytes()
