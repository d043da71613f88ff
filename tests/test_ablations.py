# The ablation questions (experiments/ablations.py): the measurements they rest on, and each command
# writing its figure. The ablations themselves are checked tier against tier by the conformance suite.
import dataclasses
import json

import matplotlib.image
import numpy as np
import pytest

import impl_numpy
import transformer
from conformance.compare import random_state_dict
from experiments.ablations import grad_norms_by_layer, input_dependence, layer_of, order_sensitivity
from shared.config import get_config

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_parameters_are_grouped_by_layer():
    config = get_config("tiny")
    groups = {layer_of(n) for n in random_state_dict(config, 0)}
    assert groups == {"emb", "h.0", "h.1", "ln_f"}
    grads = {
        "h.0.ln_1.weight": np.full(4, 1.0),
        "h.0.mlp.c_fc.bias": np.full(5, 1.0),
        "wte.weight": np.ones((3, 1)),
    }
    norms = grad_norms_by_layer(grads)
    assert norms["h.0"] == pytest.approx(3.0) and norms["emb"] == pytest.approx(np.sqrt(3))


def model(n_layer: int, position_embedding: bool):
    config = get_config("tiny", n_layer=n_layer, position_embedding=position_embedding, vocab_size=8)
    state = {
        n: 3 * a.astype(np.float64) for n, a in random_state_dict(config, seed=2).items()
    }  # far from uniform
    return impl_numpy.from_state_dict(config, state, dtype=np.float64)


def test_one_layer_without_positions_cannot_see_the_order_of_its_context():
    # the last query attends to a set of keys: shuffling them changes nothing but the summation order
    blind = order_sensitivity(model(1, False), np.arange(400) % 8 * 3 % 8, windows=32)
    assert blind["mean_kl"] < 1e-14 and blind["max_logit_diff"] < 1e-12
    seeing = order_sensitivity(model(1, True), np.arange(400) % 8 * 3 % 8, windows=32)
    assert seeing["mean_kl"] > 1e-4


def test_with_two_layers_the_causal_mask_lets_some_order_through():
    # layer 1's outputs at earlier positions each see a different prefix, so layer 2's keys depend on
    # the order (why docs/questions.md shows both depths)
    leaky = order_sensitivity(model(2, False), np.arange(400) % 8 * 3 % 8, windows=32)
    assert leaky["mean_kl"] > 1e-8


@pytest.mark.parametrize("name", ["scale-training", "residual", "positions"])
def test_question_command_writes_its_figure_and_data(name, tmp_path, capsys):
    argv = ["question", name, "--impl", "c", "--steps", "2", "--out", str(tmp_path)]
    assert transformer.main(argv) == 0
    path = tmp_path / f"questions-{name}.png"
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[1] > 1000
    runs = json.loads((tmp_path / f"questions-{name}.json").read_text())
    assert len(runs) == 4
    for run in runs.values():
        assert run["history"]["step"] == [0, 2] and np.isfinite(run["final_val"])
    ablated = [run["config"] for run in runs.values() if len(run["config"]) > 5]  # to_dict: off ones only
    assert len(ablated) == 2 and all(False in c.values() for c in ablated)
    if name == "residual":
        assert [len(run["input_dependence"]) for run in runs.values()] == [4, 4, 8, 8]
    assert str(path) in capsys.readouterr().out


def test_input_dependence_is_zero_when_a_block_forgets_its_input():
    config = get_config("tiny", residual=False, vocab_size=8)
    state = random_state_dict(config, seed=1)
    alive = impl_numpy.from_state_dict(config, state, dtype=np.float64)
    state["h.1.mlp.c_proj.weight"] = np.zeros_like(state["h.1.mlp.c_proj.weight"])  # block 1 outputs its bias
    dead = impl_numpy.from_state_dict(config, state, dtype=np.float64)
    data = np.arange(400) % 8 * 3 % 8
    assert min(input_dependence(alive, data)) > 1e-2
    assert input_dependence(dead, data)[1] < 1e-12 < input_dependence(dead, data)[0]


def test_the_variants_differ_only_by_the_ablation():
    from experiments.ablations import position_variants, residual_variants, scale_variants

    for variants in (scale_variants(65), residual_variants(65), position_variants(65)):
        configs = list(variants.values())
        for a, b in zip(configs[::2], configs[1::2]):
            assert b.ablated and not a.ablated
            assert dataclasses.replace(b, **{b.ablated[0]: True}) == a
