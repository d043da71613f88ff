# Every tier against the golden file (golden.py), an outside reference made by Hugging Face
# transformers and torch.optim.AdamW (make_golden.py), at the spec's tolerances. The tests only read the
# committed files: no torch, no transformers.
import json

import numpy as np
import pytest

from conformance.compare import assert_within
from conformance.golden import (
    HF_DIR,
    MARGIN_FACTOR,
    OUTSIDE_FLOAT32,
    OUTSIDE_QUANTITIES,
    QUANTITIES,
    clear_of_ties,
    generate_rows,
    measure,
    read_golden,
    top2_margins,
    write_checkpoint,
)
from conformance.tiers import REFERENCE, TIERS, load
from shared.checkpoint import HF_CONFIG
from shared.params import param_shapes
from shared.tolerances import FLOAT32, bounds_for


@pytest.fixture(scope="session")
def golden_weights(tmp_path_factory):
    return write_checkpoint(tmp_path_factory.mktemp("golden"))


@pytest.mark.parametrize("quantity", QUANTITIES)
@pytest.mark.parametrize("tier", list(TIERS))
def test_against_golden(tier, quantity, golden_weights):
    # logits and loss, every gradient, the losses along N AdamW steps, and the same logits and loss from
    # the directory transformers saved, each against transformers in float64
    assert_within(measure(quantity, tier, golden_weights), f"{tier} {quantity} against the golden file")


def test_the_float64_reference_is_checked_against_the_golden_file():
    # the reference every other tier is held to is itself held to the outside one, through TIERS
    assert REFERENCE in TIERS.values()


@pytest.mark.parametrize("tier", list(TIERS))
def test_hf_directory_holds_the_golden_weights(tier):
    model = load(tier, HF_DIR)
    assert model.config == read_golden().config
    state = model.state_dict()
    for name, w in read_golden().weights.items():
        np.testing.assert_array_equal(state[name], w.astype(state[name].dtype), err_msg=name)


def test_hf_directory_is_transformers_own():
    cfg = json.loads((HF_DIR / HF_CONFIG).read_text())
    assert cfg["model_type"] == "gpt2" and cfg["architectures"] == ["GPT2LMHeadModel"]
    assert cfg["transformers_version"] == read_golden().metadata["transformers"]


@pytest.mark.parametrize("tier", list(TIERS))
def test_greedy_generation_matches_golden(tier, golden_weights):
    # the same tokens as transformers' generate for every prompt, and the KV-cache logits of every step
    # within the decode bound of transformers' logits
    golden = read_golden()
    rows, tokens = generate_rows(load(tier, golden_weights), bounds_for(TIERS[tier][1]))
    for i, (got, gen) in enumerate(zip(tokens, golden.generations)):
        np.testing.assert_array_equal(got, gen.tokens, err_msg=f"{tier}: generation {i}")
    assert_within(rows, f"{tier} generation logits against the golden file")


@pytest.mark.parametrize("quantity", OUTSIDE_QUANTITIES)
def test_transformers_float32_within_the_float32_bounds(quantity):
    # an implementation this project did not write meets the float32 bounds: they leave room for an
    # honest float32 GPT-2, not only for ours
    assert_within(measure(quantity, OUTSIDE_FLOAT32, None), f"{OUTSIDE_FLOAT32} {quantity}")


def test_golden_file_contents():
    golden = read_golden()
    B, T = golden.idx.shape
    assert golden.targets.shape == (B, T)
    assert 0 < np.sum(golden.targets == -1) < B * T  # some targets ignored, not all
    for run in golden.runs.values():
        assert run["logits"].shape == (B, T, golden.config.vocab_size)
        assert {n: g.shape for n, g in run["grads"].items()} == param_shapes(golden.config)
        if "train_losses" in run:  # not in the unscaled run: logits, loss and gradients only
            assert len(run["train_losses"]) == int(golden.metadata["n_steps"]) >= 2
    # clipping engages (the gradients' global norm exceeds grad_clip), and AdamW moves the loss by far
    # more than the bound on it: the steps are really checked
    norm = np.sqrt(sum(np.sum(g * g) for g in golden.runs["float64"]["grads"].values()))
    assert norm > 2 * golden.adamw.grad_clip
    losses = golden.runs["float64"]["train_losses"]
    assert min(abs(a - b) / b for a, b in zip(losses[1:], losses)) > 100 * FLOAT32["train_loss"]
    for key in ("torch", "transformers", "transformers_settings", "adamw", "lr"):
        assert golden.metadata[key]


def test_golden_generations_are_clear_of_near_ties():
    golden = read_golden()
    assert len(golden.generations) >= 3
    for gen in golden.generations:
        P = gen.prompt.shape[1]
        np.testing.assert_array_equal(gen.tokens[:, :P], gen.prompt)
        np.testing.assert_array_equal(gen.tokens[0, P:], np.argmax(gen.logits, axis=-1))
        np.testing.assert_array_equal(gen.margins, top2_margins(gen.logits))
        # every step's top-2 margin, relative to its row, is MARGIN_FACTOR float32 logits bounds or more
        relative = gen.margins / np.linalg.norm(gen.logits, axis=-1)
        assert relative.min() >= MARGIN_FACTOR * FLOAT32["logits"]
        assert clear_of_ties(gen.logits)


def test_near_tie_guard_rejects_a_near_tie():
    assert MARGIN_FACTOR >= 10  # "well above" the tolerance; sqrt(2) is where ties could flip
    row = read_golden().generations[0].logits[:1].copy()
    assert clear_of_ties(row)
    top, second = np.argsort(row[0])[-1], np.argsort(row[0])[-2]
    threshold = MARGIN_FACTOR * FLOAT32["logits"] * np.linalg.norm(row)
    row[0, second] = row[0, top] - 0.5 * threshold  # still the runner-up, but too close
    assert top2_margins(row)[0] == pytest.approx(0.5 * threshold)
    assert not clear_of_ties(row)
    row[0, second] = row[0, top] - 1e-7  # a near-tie, far inside a float32 tier's rounding
    assert not clear_of_ties(row)
    row[0, second] = row[0, top]  # an exact tie
    assert not clear_of_ties(row)
