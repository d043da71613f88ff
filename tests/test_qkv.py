# experiments/qkv.py: the dot-product variant is the numpy tier (logits, loss and gradients equal), each
# score equals its formula written with numpy alone, each score's gradients equal finite differences in
# float64, and the command prints the shapes and writes its figure and data.
import json
import math

import matplotlib.image
import numpy as np
import pytest

import impl_numpy
import transformer
from experiments.qkv import (
    COSINE_EPS,
    SCORES,
    ScoredGPT,
    init_score_params,
    learned,
    score_shapes,
    scores,
)
from impl_numpy.engine import Tensor
from shared.config import get_config
from shared.params import init_state_dict

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
B, NH, T, HS = 2, 3, 5, 4


def random_qk_params(score: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray, dict]:
    """q, k and the score's parameters drawn at random in float64: far from the init (bilinear's W not
    the identity, nor symmetric), so that a transposed or swapped operand shows."""
    rng = np.random.default_rng(seed)
    q, k = rng.standard_normal((2, B, NH, T, HS))
    sp = {name: rng.standard_normal(shape) for name, shape in score_shapes(score, NH, HS).items()}
    if score == "additive":
        sp["W"], sp["U"] = sp["W"] / math.sqrt(HS), sp["U"] / math.sqrt(HS)  # tanh not saturated
    return q, k, sp


def reference_scores(q, k, score: str, sp: dict) -> np.ndarray:
    """Each score as its formula, with numpy alone: (B, NH, T, T), row i query i, column j key j."""
    if score == "dot":
        return np.einsum("bhid,bhjd->bhij", q, k) / math.sqrt(HS)
    if score == "unscaled":
        return np.einsum("bhid,bhjd->bhij", q, k)
    if score == "bilinear":
        return np.einsum("bhid,hde,bhje->bhij", q, sp["W"], k)
    if score == "additive":
        hidden = np.tanh(
            np.einsum("bhid,hde->bhie", q, sp["W"])[:, :, :, None]
            + np.einsum("bhjd,hde->bhje", k, sp["U"])[:, :, None]
        )  # (B, NH, T, T, HS)
        return np.einsum("bhije,he->bhij", hidden, sp["v"][..., 0])
    if score == "cosine":
        # |q| with the eps that keeps a zero query finite, under the square root
        qn = q / np.sqrt(np.linalg.norm(q, axis=-1, keepdims=True) ** 2 + COSINE_EPS)
        kn = k / np.sqrt(np.linalg.norm(k, axis=-1, keepdims=True) ** 2 + COSINE_EPS)
        return np.exp(sp["log_tau"]) * np.einsum("bhid,bhjd->bhij", qn, kn)
    if score == "neg-dist":
        return -((q[:, :, :, None] - k[:, :, None]) ** 2).sum(-1) / (2 * math.sqrt(HS))
    raise AssertionError(score)


@pytest.mark.parametrize("score", SCORES)
def test_each_score_is_its_formula(score):
    q, k, sp = random_qk_params(score)
    got = scores(Tensor(q), Tensor(k), score, {n: Tensor(a) for n, a in sp.items()}).data
    assert got.shape == (B, NH, T, T)
    np.testing.assert_allclose(got, reference_scores(q, k, score, sp), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("score", SCORES)
def test_score_gradients_match_finite_differences(score):
    # the gradient of sum(R * scores) with respect to q, k and each of the score's parameters, every entry
    # against a central difference in float64
    q, k, sp = random_qk_params(score, seed=1)
    R = np.random.default_rng(2).standard_normal((B, NH, T, T))
    inputs = {"q": q, "k": k, **sp}

    def loss(arrays: dict, requires_grad=False):
        t = {n: Tensor(a, requires_grad) for n, a in arrays.items()}
        out = (scores(t["q"], t["k"], score, {n: t[n] for n in sp}) * R).sum()
        return out, t

    out, tensors = loss(inputs, requires_grad=True)
    out.backward()
    eps = 1e-6
    for name, a in inputs.items():
        numeric = np.zeros_like(a)
        for i in np.ndindex(a.shape):
            plus, minus = a.copy(), a.copy()
            plus[i] += eps
            minus[i] -= eps
            up = loss({**inputs, name: plus})[0].data
            down = loss({**inputs, name: minus})[0].data
            numeric[i] = (up - down) / (2 * eps)
        np.testing.assert_allclose(tensors[name].grad, numeric, rtol=1e-6, atol=1e-8, err_msg=name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dot_is_the_numpy_tier_exactly(dtype):
    config = get_config("tiny")
    tier = impl_numpy.from_state_dict(config, init_state_dict(config, 3), dtype=dtype)
    variant = ScoredGPT(config, "dot", 3, dtype=dtype)
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, config.vocab_size, (2, 3, config.block_size))
    logits, loss = tier.forward(x, y)
    got_logits, got_loss = variant.forward(x, y)
    assert got_logits.dtype == dtype and np.array_equal(got_logits, logits) and got_loss == loss
    tier_loss, tier_grads = tier.grads(x, y)
    got_loss, got_grads = variant.grads(x, y)
    assert got_loss == tier_loss and set(got_grads) == set(tier_grads)
    for name, g in tier_grads.items():
        assert np.array_equal(got_grads[name], g), name
    # and one training step later, the same weights (the same AdamW as the tier's train_step)
    tier.adamw = variant.adamw
    tier.train_step(x, y, 1e-2)
    variant.train_step(x, y, 1e-2)
    for name, p in tier.state_dict().items():
        assert np.array_equal(variant.params[name], p), name


@pytest.mark.parametrize("score", [s for s in SCORES if score_shapes(s, 1, 1)])
def test_the_model_passes_gradients_to_the_score(score):
    # through the whole GPT: a few entries of each of the score's parameters and of c_attn's weight,
    # against central differences of the loss, in float64
    config = get_config("tiny", n_layer=1)
    model = ScoredGPT(config, score, 0, dtype=np.float64)
    rng = np.random.default_rng(1)
    for n in model.score_names:  # away from the init, where bilinear's identity is a special point
        model.params[n] += 0.3 * rng.standard_normal(model.params[n].shape)
    x, y = rng.integers(0, config.vocab_size, (2, 2, config.block_size))
    _, grads = model.grads(x, y)
    eps = 1e-6
    for name in [*model.score_names, "h.0.attn.c_attn.weight"]:
        p = model.params[name]
        for flat in rng.choice(p.size, size=min(4, p.size), replace=False):
            i = np.unravel_index(flat, p.shape)
            p[i] += eps
            up = model.forward(x, y)[1]
            p[i] -= 2 * eps
            down = model.forward(x, y)[1]
            p[i] += eps
            assert grads[name][i] == pytest.approx((up - down) / (2 * eps), rel=1e-5, abs=1e-9), (name, i)


def test_every_variant_starts_from_the_same_gpt_and_its_stated_init():
    config = get_config("tiny")
    models = {score: ScoredGPT(config, score, 5, dtype=np.float64) for score in SCORES}
    gpt_names = list(init_state_dict(config))
    for model in models.values():
        for n in gpt_names:
            assert np.array_equal(model.params[n], models["dot"].params[n])
        assert set(model.params) == set(gpt_names) | set(model.score_names)
    # bilinear starts as the unscaled dot product, cosine with tau = sqrt(HS)
    q, k, _ = random_qk_params("dot")
    small = get_config("tiny", n_head=NH, n_embd=NH * HS)
    W = init_score_params(small, "bilinear", 0)["h.0.attn.score.W"]
    got = scores(Tensor(q), Tensor(k), "bilinear", {"W": Tensor(W)}).data
    np.testing.assert_allclose(got, reference_scores(q, k, "dot", {}) * math.sqrt(HS), rtol=1e-13)
    tau = np.exp(models["cosine"].params["h.0.attn.score.log_tau"])
    assert tau == pytest.approx(math.sqrt(config.head_size))
    # and what the command prints of them after training, here at the start
    m = learned({score: {"model": models[score]} for score in ("bilinear", "cosine")}, config)
    assert np.array(m["bilinear_W_from_I"]).shape == (config.n_layer, config.n_head)
    assert np.allclose(m["bilinear_W_from_I"], 0.0)
    assert np.allclose(m["cosine_tau"], math.sqrt(config.head_size))


def test_command_prints_the_shapes_and_writes_its_figure_and_data(tmp_path, capsys):
    assert transformer.main(["question", "qkv", "--steps", "2", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    path = tmp_path / "questions-qkv.png"
    assert path.read_bytes()[:8] == PNG_SIGNATURE and str(path) in out
    assert matplotlib.image.imread(path).shape[1] > 1000
    data = json.loads((tmp_path / "questions-qkv.json").read_text())
    shapes = data["dimensions"]["shapes"]
    assert shapes["attn.q"] == [12, 4, 64, 32] and shapes["attn.att"] == [12, 4, 64, 64]
    assert shapes["attn.y"] == [12, 64, 128] and shapes["attn.score.hidden"] == [12, 4, 64, 64, 32]
    assert "(12, 4, 64, 32)" in out and "(B, NH, T, HS)" in out
    assert list(data["runs"]) == [*SCORES, "dot, seed 1", "dot, seed 2"]
    assert np.array(data["learned"]["cosine_tau"]).shape == (4, 4)  # layers, heads
    for run in data["runs"].values():
        assert run["history"]["step"] == [0, 2] and len(run["history"]["step_ms"]) == 2
        assert np.isfinite(run["final_val"]) and run["median_ms"] > 0
    # the same weights and batches: every score starts at the same loss, up to the scores at init
    starts = [run["history"]["val"][0] for run in data["runs"].values() if run["seed"] == 1337]
    assert len(starts) == len(SCORES) and max(starts) - min(starts) < 0.01


def test_other_tiers_are_refused(tmp_path, capsys):
    assert transformer.main(["question", "qkv", "--impl", "c", "--steps", "1", "--out", str(tmp_path)]) == 2
    assert "numpy" in capsys.readouterr().err
    assert not (tmp_path / "questions-qkv.png").exists()
