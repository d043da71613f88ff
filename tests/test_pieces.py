# One block's pieces of the forward on their own (attention_forward, block_forward: what the benchmarks
# time): every tier against the outside truth at the activations' bound (the truth's own activations of
# a conformance case are each piece's input and output), and the same bad input rejected the same way.
import numpy as np
import pytest

from conformance.cases import CASES
from conformance.compare import random_state_dict
from conformance.golden import truth
from conformance.tiers import TIERS, tier_module
from shared.config import GPTConfig
from shared.errors import InputError
from shared.tolerances import bounds_for, rel_l2

CONFIG = GPTConfig(n_layer=2, n_head=3, n_embd=48, block_size=24, vocab_size=37)
STATE = random_state_dict(CONFIG, seed=5)
X = np.random.default_rng(5).standard_normal((2, 19, CONFIG.n_embd))


def model(name):
    _, dtype = TIERS[name]
    return tier_module(name).from_state_dict(CONFIG, STATE, dtype=dtype)


# piece -> (its input, its output) among the named activations of block l
PIECES = {
    "attention_forward": (lambda l: f"h.{l}.ln_1", lambda l: f"h.{l}.attn.out"),
    "block_forward": (lambda l: "emb" if l == 0 else f"h.{l - 1}.res_2", lambda l: f"h.{l}.res_2"),
}


@pytest.mark.parametrize("case", ["odd-B3-T7", "odd-no-residual-B2-T7"])
@pytest.mark.parametrize("piece", list(PIECES))
@pytest.mark.parametrize("tier", list(TIERS))
def test_piece_matches_the_truth(tier, piece, case):
    _, dtype = TIERS[tier]
    c, t = CASES[case], truth(case)
    m = tier_module(tier).from_state_dict(c.config, t["weights"], dtype=dtype)
    inp, out = PIECES[piece]
    for layer in range(c.config.n_layer):
        x = t["acts"][inp(layer)]
        got = getattr(m, piece)(x.astype(dtype), layer)
        assert got.shape == x.shape
        err = rel_l2(got, t["acts"][out(layer)])
        assert err < bounds_for(dtype, c.regime)["activations"], (piece, layer, err)


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
