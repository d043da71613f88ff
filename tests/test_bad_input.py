# SPEC.md "Bad input": every tier rejects the same inputs, before computing anything, with one of
# shared/errors.py's classes and a message naming the problem. Parametrized over TIERS, so a new tier
# joins by adding its module to the list.
import numpy as np
import pytest

import impl_c
import impl_numpy
import impl_tinygrad
from shared.checkpoint import OptimizerState, save_checkpoint
from shared.config import get_config
from shared.errors import CheckpointError, ConfigError, DivergenceError, InputError
from shared.params import init_state_dict

TIERS = [impl_numpy, impl_c, impl_tinygrad]

CONFIG = get_config("tiny")  # V = 29, block_size = 16
V, BLOCK = CONFIG.vocab_size, CONFIG.block_size


@pytest.fixture(params=TIERS, ids=lambda m: m.__name__)
def tier(request):
    return request.param


@pytest.fixture
def model(tier):
    return tier.from_state_dict(CONFIG, init_state_dict(CONFIG, seed=0))


def good_idx(B=2, T=5):
    return np.arange(B * T).reshape(B, T) % V


def targets_for(idx):
    # well-formed targets of idx's shape where there is one, so only idx is at fault
    try:
        return np.zeros(np.shape(idx), dtype=np.int64)
    except ValueError:
        return np.zeros((1, 1), dtype=np.int64)


# every entry point that takes idx
IDX_CALLS = {
    "forward": lambda m, idx: m.forward(idx),
    "forward-targets": lambda m, idx: m.forward(idx, targets_for(idx)),
    "grads": lambda m, idx: m.grads(idx, targets_for(idx)),
    "train_step": lambda m, idx: m.train_step(idx, targets_for(idx), 1e-3),
    "activations": lambda m, idx: m.activations(idx),
    "decode": lambda m, idx: m.decode(idx),
    "generate": lambda m, idx: m.generate(idx, max_new_tokens=2),
}

BAD_IDX = {
    "negative-id": (np.array([[1, 2, -1, 3]]), r"idx holds token id -1, outside \[0, 29\)"),
    "id-equal-V": (np.array([[1, 29, 3]]), r"idx holds token id 29, outside \[0, 29\)"),
    "id-above-V": (np.array([[0, 1], [2, 1000]]), r"idx holds token id 1000, outside \[0, 29\)"),
    "too-long": (np.zeros((2, BLOCK + 1), dtype=np.int64), r"idx has length T=17, longer than block_size=16"),
    "1-D": (np.arange(5), r"idx must have shape \(B, T\), got 1-D shape \(5,\)"),
    "3-D": (np.zeros((2, 3, 4), dtype=np.int64), r"idx must have shape \(B, T\), got 3-D shape \(2, 3, 4\)"),
    "0-D": (np.array(3), r"idx must have shape \(B, T\), got 0-D"),
    "float-dtype": (good_idx().astype(np.float32), r"idx must hold integer token ids, got dtype float32"),
    "bool-dtype": (np.ones((2, 3), dtype=bool), r"idx must hold integer token ids, got dtype bool"),
    "empty-batch": (np.zeros((0, 4), dtype=np.int64), r"idx is empty: shape \(0, 4\)"),
    "empty-T": (np.zeros((2, 0), dtype=np.int64), r"idx is empty: shape \(2, 0\)"),
    "list": ([[1, 2, 3]], r"idx must be a numpy array of token ids, got list"),
    "tuple": (((1, 2),), r"idx must be a numpy array of token ids, got tuple"),
}


def assert_untouched(model, before):
    assert model.step == 0
    after = model.state_dict()
    for n, p in before.items():
        np.testing.assert_array_equal(after[n], p, err_msg=n)


@pytest.mark.parametrize("call", list(IDX_CALLS))
@pytest.mark.parametrize("case", list(BAD_IDX))
def test_bad_idx(model, call, case):
    idx, match = BAD_IDX[case]
    before = model.state_dict()
    with pytest.raises(InputError, match=match):
        IDX_CALLS[call](model, idx)
    assert_untouched(model, before)


@pytest.mark.parametrize("call", list(IDX_CALLS))
def test_good_idx_edges_are_accepted(model, call):
    # the boundaries of what is allowed: ids 0 and V-1, T = block_size, B = 1, unsigned and narrow ints
    for idx in [
        np.array([[0, V - 1]]),
        np.full((1, BLOCK), V - 1, dtype=np.int64),
        np.array([[3, 4, 5]], dtype=np.uint8),
        np.array([[3, 4, 5]], dtype=np.int32),
    ]:
        IDX_CALLS[call](model, idx)


# every entry point that takes targets
TARGET_CALLS = {
    "forward": lambda m, idx, t: m.forward(idx, t),
    "grads": lambda m, idx, t: m.grads(idx, t),
    "train_step": lambda m, idx, t: m.train_step(idx, t, 1e-3),
}

BAD_TARGETS = {
    "shorter": (np.zeros((2, 4), dtype=np.int64), r"targets have shape \(2, 4\), idx has \(2, 5\)"),
    "flat": (np.zeros(10, dtype=np.int64), r"targets have shape \(10,\), idx has \(2, 5\)"),
    "transposed": (np.zeros((5, 2), dtype=np.int64), r"targets have shape \(5, 2\), idx has \(2, 5\)"),
    "below-minus-1": (np.array([[0, 1, -2, 3, 4]] * 2), r"targets hold -2, outside \[0, 29\) and not -1"),
    "equal-V": (np.array([[0, 1, 2, 3, 29]] * 2), r"targets hold 29, outside \[0, 29\)"),
    "above-V": (np.array([[0, 1, 2, 3, 4], [99, 0, 0, 0, 0]]), r"targets hold 99, outside \[0, 29\)"),
    "all-ignored": (np.full((2, 5), -1), r"every target is -1 \(ignored\)"),
    "float-dtype": (
        np.zeros((2, 5), dtype=np.float64),
        r"targets must hold integer token ids, got dtype float64",
    ),
    "list": ([[0] * 5] * 2, r"targets must be a numpy array, got list"),
}


@pytest.mark.parametrize("call", list(TARGET_CALLS))
@pytest.mark.parametrize("case", list(BAD_TARGETS))
def test_bad_targets(model, call, case):
    targets, match = BAD_TARGETS[case]
    before = model.state_dict()
    with pytest.raises(InputError, match=match):
        TARGET_CALLS[call](model, good_idx(), targets)
    assert_untouched(model, before)


@pytest.mark.parametrize("call", list(TARGET_CALLS))
def test_some_ignored_targets_are_accepted(model, call):
    targets = np.full((2, 5), -1)
    targets[1, 3] = V - 1  # one counted position is enough
    TARGET_CALLS[call](model, good_idx(), targets)


BAD_GENERATE = {
    "negative-max_new_tokens": (
        {"max_new_tokens": -1},
        r"max_new_tokens must be a non-negative int, got -1",
    ),
    "float-max_new_tokens": (
        {"max_new_tokens": 2.0},
        r"max_new_tokens must be a non-negative int, got 2\.0",
    ),
    "bool-max_new_tokens": (
        {"max_new_tokens": True},
        r"max_new_tokens must be a non-negative int, got True",
    ),
    "negative-temperature": ({"temperature": -0.5}, r"temperature must be finite and >= 0, got -0\.5"),
    "nan-temperature": ({"temperature": float("nan")}, r"temperature must be finite and >= 0, got nan"),
    "none-temperature": ({"temperature": None}, r"temperature must be finite and >= 0, got None"),
    "str-temperature": ({"temperature": "hot"}, r"temperature must be finite and >= 0, got 'hot'"),
    "inf-temperature": ({"temperature": float("inf")}, r"temperature must be finite and >= 0, got inf"),
    "top_k-0": ({"top_k": 0}, r"top_k must be None or a positive int, got 0"),
    "top_k-negative": ({"top_k": -3}, r"top_k must be None or a positive int, got -3"),
    "top_k-float": ({"top_k": 2.5}, r"top_k must be None or a positive int, got 2\.5"),
    "top_k-bool": ({"top_k": True}, r"top_k must be None or a positive int, got True"),
}


@pytest.mark.parametrize("case", list(BAD_GENERATE))
def test_bad_generate_args(model, case):
    kwargs, match = BAD_GENERATE[case]
    kwargs = {"max_new_tokens": 3, **kwargs}
    with pytest.raises(InputError, match=match):
        model.generate(good_idx(), **kwargs)


def test_good_generate_edges_are_accepted(model):
    idx = good_idx()
    np.testing.assert_array_equal(model.generate(idx, max_new_tokens=0), idx)
    assert model.generate(idx, max_new_tokens=np.int64(2), temperature=0, top_k=np.int32(1)).shape == (2, 7)
    assert model.generate(idx, max_new_tokens=2, temperature=np.float32(0.7), top_k=V + 5).shape == (2, 7)


@pytest.mark.parametrize("n_prefill", [0, -1, 6, 100])
def test_bad_n_prefill(model, n_prefill):
    with pytest.raises(InputError, match=rf"n_prefill must be in \[1, T=5\], got {n_prefill}"):
        model.decode(good_idx(), n_prefill)


@pytest.mark.parametrize("n_prefill", [1, 3, 5])
def test_good_n_prefill(model, n_prefill):
    assert model.decode(good_idx(), n_prefill).shape == (2, 5, V)


# ---- bad weights handed to from_state_dict ----


def test_from_state_dict_missing_tensor(tier):
    state = init_state_dict(CONFIG)
    del state["h.0.mlp.c_fc.bias"]
    with pytest.raises(CheckpointError, match=r"missing h\.0\.mlp\.c_fc\.bias"):
        tier.from_state_dict(CONFIG, state)


def test_from_state_dict_other_config(tier):
    with pytest.raises(
        ConfigError, match=r"wte\.weight has shape \(29, 16\) but the config needs \(29, 32\)"
    ):
        tier.from_state_dict(get_config("tiny", n_embd=32), init_state_dict(CONFIG))


def test_from_state_dict_nan(tier):
    state = init_state_dict(CONFIG)
    state["ln_f.weight"][3] = np.nan
    with pytest.raises(CheckpointError, match=r"ln_f\.weight holds NaN"):
        tier.from_state_dict(CONFIG, state)


def test_from_state_dict_int_tensor(tier):
    state = init_state_dict(CONFIG)
    state["wpe.weight"] = state["wpe.weight"].astype(np.int32)
    with pytest.raises(CheckpointError, match=r"wpe\.weight has dtype int32, expected a float type"):
        tier.from_state_dict(CONFIG, state)


def good_grads():
    return {n: np.zeros_like(a) for n, a in init_state_dict(CONFIG, seed=0).items()}


BAD_GRADS = {
    "missing": (
        lambda g: {n: a for n, a in g.items() if n != "ln_f.bias"},
        r"grads do not match the parameters: missing \['ln_f.bias'\]",
    ),
    "extra": (lambda g: {**g, "lm_head.weight": g["wte.weight"]}, r"unexpected \['lm_head.weight'\]"),
    "scalar": (
        lambda g: {**g, "ln_f.bias": np.float32(0.0)},
        r"grads\['ln_f.bias'\] must be a float array of shape \(16,\), got float32",
    ),
    "broadcastable": (
        lambda g: {**g, "ln_f.bias": np.zeros((1,), np.float32)},
        r"grads\['ln_f.bias'\] must be a float array of shape \(16,\), got float32 \(1,\)",
    ),
    "int": (lambda g: {**g, "ln_f.bias": np.zeros(16, np.int64)}, r"got int64 \(16,\)"),
    "not-a-dict": (lambda g: list(g.values()), r"grads must be a dict"),
}


@pytest.mark.parametrize("case", list(BAD_GRADS))
def test_bad_apply_grads(model, case):
    make, message = BAD_GRADS[case]
    before = model.state_dict()
    with pytest.raises(InputError, match=message):
        model.apply_grads(make(good_grads()), 1e-3)
    assert model.optimizer_state().step == 0
    for n, p in model.state_dict().items():
        np.testing.assert_array_equal(p, before[n])


@pytest.mark.parametrize("lr", [-1e-3, float("nan"), float("inf"), None, "0.1", True])
@pytest.mark.parametrize("call", ["train_step", "apply_grads"])
def test_bad_lr(model, call, lr):
    idx = good_idx()
    with pytest.raises(InputError, match="lr must be a finite number >= 0"):
        if call == "train_step":
            model.train_step(idx, targets_for(idx), lr)
        else:
            model.apply_grads(good_grads(), lr)
    assert model.optimizer_state().step == 0


def test_unsupported_dtype(tier):
    with pytest.raises(InputError, match="float16"):
        tier.from_state_dict(CONFIG, init_state_dict(CONFIG, seed=0), dtype=np.float16)


# ---- SPEC.md "Limits": a diverging run stops, before the step changes anything ----


def assert_optimizer_untouched(model, before):
    # weights, both moments and the step exactly as they were
    after = model.optimizer_state()
    assert after.step == before.step
    for n, p in before.m.items():
        np.testing.assert_array_equal(after.m[n], p, err_msg=f"m {n}")
        np.testing.assert_array_equal(after.v[n], before.v[n], err_msg=f"v {n}")


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_apply_grads_refuses_non_finite_grads(model, value):
    grads = good_grads()
    grads["h.1.mlp.c_fc.weight"][3, 7] = value
    before, opt = model.state_dict(), model.optimizer_state()
    with pytest.raises(InputError, match=r"^grads\['h\.1\.mlp\.c_fc\.weight'\] holds NaN or inf$"):
        model.apply_grads(grads, 1e-3)
    assert_untouched(model, before)
    assert_optimizer_untouched(model, opt)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy says where it overflowed
def test_apply_grads_gradient_norm_overflows(model):
    # every gradient finite, their squares' sum beyond float32: the step is refused, not taken with
    # an infinite second moment
    model.train_step(good_idx(), targets_for(good_idx()), 1e-3)  # nonzero moments to keep
    grads = {n: np.full_like(a, 1e30) for n, a in good_grads().items()}
    before, opt = model.state_dict(), model.optimizer_state()
    with pytest.raises(
        DivergenceError, match=r"^step 1: the gradient norm is inf; the run diverged \(try a lower"
    ):
        model.apply_grads(grads, 1e-3)
    assert_untouched_at(model, before, 1)
    assert_optimizer_untouched(model, opt)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy says where it overflowed
def test_train_step_absurd_learning_rate_stops(model):
    # lr 1e30 blows every weight up in one step; the next step's loss is NaN and the run stops there
    # (before, every weight silently became NaN and training went on)
    idx = good_idx()
    model.train_step(idx, targets_for(idx), 1e30)
    before, opt = model.state_dict(), model.optimizer_state()
    with pytest.raises(
        DivergenceError, match=r"^step 1: the loss is nan; the run diverged \(try a lower learning rate\)$"
    ):
        model.train_step(idx, targets_for(idx), 1e30)
    assert_untouched_at(model, before, 1)
    assert_optimizer_untouched(model, opt)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy says where it overflowed
def test_train_step_overflowing_logits_stop(tier):
    # finite weights whose logits overflow float32: the loss is NaN on the first step
    state = init_state_dict(CONFIG, seed=0)
    state["ln_f.weight"][:] = 3e38
    model = tier.from_state_dict(CONFIG, state)
    with pytest.raises(DivergenceError, match=r"^step 0: the loss is nan"):
        model.train_step(good_idx(), targets_for(good_idx()), 1e-3)
    assert_untouched(model, state)


def _model_at_step(tier, tmp_path, step):
    state = init_state_dict(CONFIG, seed=0)
    zeros = {n: np.zeros_like(a) for n, a in state.items()}
    path = tmp_path / "at-step.safetensors"
    save_checkpoint(path, CONFIG, state, OptimizerState(step, zeros, dict(zeros)))
    return tier.load(path)


STEP_CALLS = {
    "train_step": lambda m: m.train_step(good_idx(), targets_for(good_idx()), 1e-3),
    "apply_grads": lambda m: m.apply_grads(good_grads(), 1e-3),
}


@pytest.mark.parametrize("call", list(STEP_CALLS))
def test_no_step_past_the_limit(tier, tmp_path, call):
    # SPEC.md "Limits": step is at most 2^53; the last step allowed reaches it, the next is refused
    model = _model_at_step(tier, tmp_path, 2**53 - 1)
    assert model.step == 2**53 - 1
    STEP_CALLS[call](model)
    assert model.step == 2**53
    before = model.state_dict()
    with pytest.raises(
        InputError, match=r"^the model is at step 9007199254740992, the most allowed \(9007199254740992"
    ):
        STEP_CALLS[call](model)
    assert_untouched_at(model, before, 2**53)


def assert_untouched_at(model, before, step):
    assert model.step == step
    for n, p in model.state_dict().items():
        np.testing.assert_array_equal(p, before[n], err_msg=n)
