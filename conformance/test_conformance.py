# Every tier, the float64 numpy tier included, against the outside truth at the spec's tolerances
# (SPEC.md "Tolerances"): values Hugging Face transformers and torch.optim.AdamW computed in float64
# for each case (make_golden.py, read from conformance/golden/cases.safetensors). The cases and the
# measurements are in cases.py. On failure the message lists every tensor, worst first.
import json

import numpy as np
import pytest

from conformance.cases import (
    ADAMW,
    ADAMW_CASES,
    CASES,
    LR,
    N_STEPS,
    QUANTITIES,
    case_batch,
    measure,
    measure_optimizer,
    write_checkpoint,
)
from conformance.compare import assert_within
from conformance.golden import adamw_truth, case_table, cases_metadata, truth
from conformance.tiers import TIERS, load
from shared.params import param_shapes
from shared.tolerances import FLOAT32, flat_gradient


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory):
    folder = tmp_path_factory.mktemp("conformance")
    return {case: write_checkpoint(case, folder) for case in CASES}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("quantity", QUANTITIES)
@pytest.mark.parametrize("tier", list(TIERS))
def test_against_truth(tier, quantity, case, checkpoints):
    assert_within(measure(quantity, tier, case, checkpoints[case]), f"{tier} {quantity} on {case}")


@pytest.mark.parametrize("variant", list(ADAMW_CASES))
@pytest.mark.parametrize("tier", list(TIERS))
def test_optimizer_against_truth(tier, variant, checkpoints):
    # apply_grads on the truth's gradients, with the gradient norm above, below and at the clip limit,
    # and with clipping off: the parameters, m and v after the steps
    rows = measure_optimizer(tier, variant, checkpoints[ADAMW_CASES[variant].case])
    assert_within(rows, f"{tier} AdamW {variant}")


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("tier", list(TIERS))
def test_generate_greedy_matches_recompute(tier, case, checkpoints):
    # greedy decoding through the KV cache picks the argmax of the tier's own full-recompute logits,
    # past block_size, where the cache is rebuilt from the last block_size tokens
    config, idx = CASES[case].config, truth(case)["idx"]
    model = load(tier, checkpoints[case])
    prompt = idx[:, : max(1, idx.shape[1] // 2)]
    n_new = config.block_size + 3
    out = model.generate(prompt, max_new_tokens=n_new, temperature=0.0)
    assert out.shape == (prompt.shape[0], prompt.shape[1] + n_new)
    np.testing.assert_array_equal(out[:, : prompt.shape[1]], prompt)
    for t in range(prompt.shape[1], out.shape[1]):
        window = out[:, max(0, t - config.block_size) : t]
        logits, _ = model.forward(window)
        np.testing.assert_array_equal(out[:, t], np.argmax(logits[:, -1], axis=-1), err_msg=f"position {t}")


# ---- the truth itself: made for these cases, and exercising the regimes it is meant to ----


def test_truth_was_made_for_these_cases():
    # a case changed in cases.py without `python -m conformance.make_golden` would be checked
    # against a stale truth
    assert json.loads(cases_metadata()["cases"]) == case_table(), "run python -m conformance.make_golden"
    for case in CASES:
        idx, targets = case_batch(case)
        np.testing.assert_array_equal(truth(case)["idx"], idx)
        np.testing.assert_array_equal(truth(case)["targets"], targets)


@pytest.mark.parametrize("case", list(CASES))
def test_truth_shapes_and_training(case):
    c, t = CASES[case], truth(case)
    assert t["logits"].shape == (c.B, c.T, c.config.vocab_size)
    assert {n: g.shape for n, g in t["grads"].items()} == param_shapes(c.config)
    assert len(t["train_losses"]) == N_STEPS
    if c.T > 2:
        assert 0 < np.sum(t["targets"] == -1) < t["targets"].size  # some targets ignored, not all
    # the train steps moved the loss by far more than its bound, and the parameters (but the few
    # flat elements and those with no gradient at all) by far more than theirs: the check is not vacuous
    losses = t["train_losses"]
    assert min(abs(a - b) / b for a, b in zip(losses[1:], losses)) > 100 * FLOAT32["train_loss"]
    flat = {n: flat_gradient(n, g, c.config) for n, g in t["grads"].items()}
    assert sum(f.sum() for f in flat.values()) < 0.05 * sum(f.size for f in flat.values())
    for name, p in t["train_params"].items():
        stepped = (t["grads"][name] != 0) & ~flat[name]
        if stepped.any():
            moved = np.abs(p - t["weights"][name])[stepped] / LR
            assert np.median(moved) > 100 * FLOAT32["train_params_lr"], name


def test_truth_covers_the_regimes():
    # large magnitudes: attention scores and logits beyond 88, where float32's exp overflows
    t = truth("large-no-scale_attn_weights-B2-T20")
    config = CASES["large-no-scale_attn_weights-B2-T20"].config
    C, NH = config.n_embd, config.n_head
    qkv = t["acts"]["h.0.attn.qkv"]
    B, T, _ = qkv.shape
    q = qkv[..., :C].reshape(B, T, NH, -1).transpose(0, 2, 1, 3)
    k = qkv[..., C : 2 * C].reshape(B, T, NH, -1).transpose(0, 2, 1, 3)
    assert np.abs(q @ k.transpose(0, 1, 3, 2)).max() > 200 and np.abs(t["logits"]).max() > 200
    # a long sequence at the full block size
    long = CASES["long-B1-T128"]
    assert long.T == long.config.block_size >= 128


def test_optimizer_truth_covers_clipping():
    clip = ADAMW.grad_clip
    for variant, a in ADAMW_CASES.items():
        ref = adamw_truth(variant)
        norms = [np.sqrt(sum(np.sum(g * g) for g in grads.values())) for grads in ref["opt_grads"]]
        assert len(norms) == N_STEPS
        if variant != "clip-at":  # steps of different sizes: Adam's first step divides a scale out
            assert len(set(np.round(norms, 6))) == N_STEPS
        if variant == "clip-above" or variant == "clip-off":
            assert min(norms) > 10 * clip
        elif variant == "clip-below":
            assert max(norms) < clip
        elif variant == "clip-at":
            np.testing.assert_allclose(norms, clip, rtol=1e-12)
        assert (a.adamw.grad_clip is None) == (variant == "clip-off")
