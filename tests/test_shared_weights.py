# experiments/shared_weights.py: the blocks it ties stay one set of weights, the gradient it gives that
# set is the loss's by finite differences, it clips by the norm of the tied model's own gradient, and the
# command writes its figure and numbers.
import json

import matplotlib.image
import numpy as np
import pytest

import impl_c
import impl_numpy
import transformer
from conformance.compare import random_state_dict
from experiments.shared_weights import (
    TiedModel,
    TiedTier,
    block_suffixes,
    cosine_matrix,
    rearranged,
    sum_block_grads,
    tie_state,
    update_similarity,
)
from shared.config import get_config
from shared.data import get_batch
from shared.params import init_state_dict, num_params, param_shapes
from shared.schedule import AdamWConfig

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CONFIG = get_config("tiny", n_layer=3)  # three blocks: a sum over only two of them is wrong
DATA = np.arange(600) % 29 * 7 % 29


def batch(seed: int, B: int = 4):
    return get_batch(DATA, B, CONFIG.block_size, np.random.default_rng(seed))


@pytest.mark.parametrize("tier", [impl_numpy, impl_c], ids=["numpy", "c"])
def test_tied_blocks_stay_bit_identical(tier):
    init = init_state_dict(CONFIG, 0)
    model = TiedTier(tier).from_state_dict(CONFIG, init, adamw=AdamWConfig(weight_decay=0.1))
    for step in range(5):
        model.train_step(*batch(step), lr=1e-2)
    state = model.state_dict()
    for suffix in block_suffixes(CONFIG):
        first = state[f"h.0.{suffix}"]
        assert not np.array_equal(first, init[f"h.0.{suffix}"]), suffix  # it trained
        for i in range(1, CONFIG.n_layer):
            assert np.array_equal(state[f"h.{i}.{suffix}"], first), f"h.{i}.{suffix}"


def test_summed_gradient_is_the_shared_weights_gradient():
    # one shared weight moved in every block at once: the loss changes by the summed gradient
    state = tie_state({n: a.astype(np.float64) for n, a in random_state_dict(CONFIG, 3).items()}, CONFIG)
    x, y = batch(7)
    model = impl_numpy.from_state_dict(CONFIG, state, dtype=np.float64)
    summed = sum_block_grads(model.grads(x, y)[1], CONFIG)
    rng, eps = np.random.default_rng(0), 1e-6
    for suffix in block_suffixes(CONFIG):
        index = tuple(int(rng.integers(n)) for n in param_shapes(CONFIG)[f"h.0.{suffix}"])
        losses = []
        for sign in (1, -1):
            moved = {n: a.copy() for n, a in state.items()}
            for i in range(CONFIG.n_layer):
                moved[f"h.{i}.{suffix}"][index] += sign * eps
            losses.append(impl_numpy.from_state_dict(CONFIG, moved, dtype=np.float64).forward(x, y)[1])
        fd = (losses[0] - losses[1]) / (2 * eps)
        for i in range(CONFIG.n_layer):
            assert summed[f"h.{i}.{suffix}"][index] == pytest.approx(fd, rel=1e-6, abs=1e-9), suffix


class Recorder:
    """Stands for a tier's model: keeps the gradients it is handed."""

    config = CONFIG

    def apply_grads(self, grads, lr):
        self.grads = grads


@pytest.mark.parametrize("grad_clip", [None, 0.5])
def test_clipping_counts_the_shared_gradient_once(grad_clip):
    rng = np.random.default_rng(1)
    grads = {n: rng.normal(size=s) for n, s in param_shapes(CONFIG).items()}
    given = {n: g.copy() for n, g in grads.items()}
    inner = Recorder()
    TiedModel(inner, grad_clip).apply_grads(grads, lr=0.1)
    assert all(np.array_equal(grads[n], given[n]) for n in grads)  # the caller's arrays are untouched
    # the tied model's own gradient: the tensors outside the blocks, and each block tensor's sum once
    own = {n: g for n, g in grads.items() if not n.startswith("h.")}
    own.update({s: sum(grads[f"h.{i}.{s}"] for i in range(CONFIG.n_layer)) for s in block_suffixes(CONFIG)})
    norm = np.sqrt(sum(np.vdot(g, g) for g in own.values()))
    coef = 1.0 if grad_clip is None else grad_clip / (norm + 1e-6)
    assert norm > 10  # far above the threshold: the coefficient is the formula's, not 1
    for name in grads:
        expected = own[name] if not name.startswith("h.") else own[name.split(".", 2)[2]]
        np.testing.assert_allclose(inner.grads[name], coef * expected, rtol=1e-12)


def test_one_layer_tied_trains_as_the_tier_itself():
    # with one block the tied model is the plain one: its clipping must be the tier's own
    config = get_config("tiny", n_layer=1)
    state = {n: a.astype(np.float64) for n, a in init_state_dict(config, 4).items()}
    adamw = AdamWConfig(grad_clip=0.05)
    tied = TiedTier(impl_numpy).from_state_dict(config, state, np.float64, adamw)
    plain = impl_numpy.from_state_dict(config, state, np.float64, adamw)
    assert tied.model.adamw.grad_clip is None and tied.grad_clip == 0.05
    for step in range(3):
        x, y = batch(step)
        assert tied.train_step(x, y, 1e-2) == plain.train_step(x, y, 1e-2)
    for name, a in plain.state_dict().items():
        np.testing.assert_allclose(tied.state_dict()[name], a, rtol=1e-12, atol=1e-15)


def test_measures_on_identical_and_removed_blocks():
    state = tie_state({n: a.astype(np.float64) for n, a in random_state_dict(CONFIG, 5).items()}, CONFIG)
    model = impl_numpy.from_state_dict(CONFIG, state, dtype=np.float64)
    similar = update_similarity(model, DATA, windows=2)
    assert np.allclose(similar["raw"], 1.0) and np.allclose(similar["centered"], 1.0)
    assert np.allclose(cosine_matrix([state[f"h.{i}.mlp.c_fc.weight"] for i in range(3)]), 1.0)
    independent = init_state_dict(get_config("shakespeare"), 0)
    m = cosine_matrix([independent[f"h.{i}.mlp.c_fc.weight"] for i in range(4)])
    assert np.allclose(np.diag(m), 1.0) and np.abs(m - np.eye(4)).max() < 0.01
    # a removed block adds nothing to the stream
    removed = impl_numpy.from_state_dict(CONFIG, rearranged(state, CONFIG, [0, None, 2]), dtype=np.float64)
    x = np.random.default_rng(0).normal(size=(2, 5, CONFIG.n_embd))
    assert np.array_equal(removed.block_forward(x, 1), x)
    assert not np.allclose(removed.block_forward(x, 0), x)


def test_question_command_writes_its_figure_and_data(tmp_path, capsys):
    argv = ["question", "shared-weights", "--impl", "c", "--steps", "2", "--out", str(tmp_path)]
    assert transformer.main(argv) == 0
    path = tmp_path / "questions-shared-weights.png"
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    assert matplotlib.image.imread(path).shape[1] > 1000
    runs = json.loads((tmp_path / "questions-shared-weights.json").read_text())
    separate, shared, one, wide = runs.values()
    for run in runs.values():
        assert run["history"]["step"] == [0, 2] and np.isfinite(run["final_val"])
    assert [r["shared"] for r in (separate, shared, one, wide)] == [False, True, False, True]
    assert shared["params"] == one["params"] == num_params(get_config("shakespeare", n_layer=1))
    assert separate["params"] == num_params(get_config("shakespeare"))
    assert abs(wide["params"] / separate["params"] - 1) < 0.02
    assert shared["max_block_difference"] == wide["max_block_difference"] == 0.0
    blocks = separate["blocks"]
    assert len(blocks["weights"]) == 4 and len(blocks["updates"]["raw"]) == 4
    assert len(blocks["rearranged"]) == 1 + 6 + 4 + 4
    assert str(path) in capsys.readouterr().out
