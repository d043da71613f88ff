# One block's pieces of the forward on their own (attention_forward, block_forward: what the benchmarks
# time): every tier against the float64 reference at the activations' bound, and the same bad input
# rejected the same way.
import importlib

import numpy as np
import pytest

from conformance.compare import random_state_dict
from conformance.tiers import REFERENCE, TIERS, tier_module
from shared.config import GPTConfig
from shared.errors import InputError
from shared.tolerances import bounds_for, rel_l2

CONFIG = GPTConfig(n_layer=2, n_head=3, n_embd=48, block_size=24, vocab_size=37)
STATE = random_state_dict(CONFIG, seed=5)
X = np.random.default_rng(5).standard_normal((2, 19, CONFIG.n_embd))


def model(name):
    _, dtype = TIERS[name]
    return tier_module(name).from_state_dict(CONFIG, STATE, dtype=dtype)


@pytest.fixture(scope="module")
def reference():
    module, dtype = REFERENCE
    return importlib.import_module(module).from_state_dict(CONFIG, STATE, dtype=dtype)


@pytest.mark.parametrize("piece", ["attention_forward", "block_forward"])
@pytest.mark.parametrize("tier", list(TIERS))
def test_piece_matches_reference(tier, piece, reference):
    _, dtype = TIERS[tier]
    m = model(tier)
    for layer in range(CONFIG.n_layer):
        got = getattr(m, piece)(X.astype(dtype), layer)
        want = getattr(reference, piece)(X, layer)
        assert got.shape == X.shape
        assert rel_l2(got, want) < bounds_for(dtype)["activations"], (piece, layer)


@pytest.mark.parametrize("tier", list(TIERS))
def test_piece_rejects_bad_input(tier):
    m = model(tier)
    x = X.astype(np.float32)
    bad = [
        (x, 2, "layer must be an int in"),
        (x, -1, "layer must be an int in"),
        (x[:, :, :5], 0, "x must have shape"),
        (x[0], 0, "x must have shape"),
        (np.zeros((1, 25, CONFIG.n_embd), np.float32), 0, "longer than block_size"),
        (np.zeros((1, 4, CONFIG.n_embd), np.int64), 0, "x must be a float numpy array"),
    ]
    for xb, layer, message in bad:
        for piece in (m.attention_forward, m.block_forward):
            with pytest.raises(InputError, match=message):
                piece(xb, layer)
