# shared/: the config and its presets, the parameter shapes and the init, the learning-rate schedule,
# and the sampling and decode loop every Python tier runs (SPEC.md "Config", "Init", "AdamW",
# "Generation").
import dataclasses
import itertools
import math

import numpy as np
import pytest

from shared.config import LIMITS, PRESETS, GPTConfig, get_config
from shared.errors import CheckpointError, ConfigError
from shared.params import check_state_dict, init_state_dict, is_decayed, num_params, param_shapes
from shared.sampling import context_window, generate_tokens, sample_next
from shared.schedule import lr_at

GOOD = {"n_layer": 2, "n_head": 2, "n_embd": 16, "block_size": 16, "vocab_size": 29}

# ---- config ----


def test_good_config():
    c = GPTConfig(**GOOD)
    assert c.head_size == 8
    assert c.to_dict() == GOOD
    assert GPTConfig.from_dict(c.to_dict()) == c


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_config("tiny").n_layer = 3


def test_n_embd_not_divisible_by_n_head():
    with pytest.raises(ConfigError, match=r"n_embd \(16\) must be divisible by n_head \(3\)"):
        GPTConfig(**{**GOOD, "n_head": 3})


@pytest.mark.parametrize("name", list(GOOD))
@pytest.mark.parametrize("value", [0, -1, -16])
def test_zero_or_negative(name, value):
    with pytest.raises(ConfigError, match=rf"config\.{name} must be positive, got {value}"):
        GPTConfig(**{**GOOD, name: value})


@pytest.mark.parametrize("name", list(GOOD))
@pytest.mark.parametrize("value", [True, False, 2.0, "2", None, 2.5])
def test_not_an_int(name, value):
    with pytest.raises(
        ConfigError, match=rf"config\.{name} must be an int, got {type(value).__name__} {value!r}"
    ):
        GPTConfig(**{**GOOD, name: value})


def test_numpy_ints_are_plain_ints_in_the_config():
    config = GPTConfig(**{name: np.int64(v) for name, v in GOOD.items()})
    assert config == GPTConfig(**GOOD) and all(type(v) is int for v in config.to_dict().values())


def test_unknown_override():
    with pytest.raises(ConfigError, match="unknown config field n_layers"):
        get_config("tiny", n_layers=3)


def test_unknown_preset():
    with pytest.raises(ConfigError, match=r"unknown config preset 'gpt3'; presets: tiny, shakespeare, gpt2"):
        get_config("gpt3")


def test_preset_overrides():
    c = get_config("shakespeare", block_size=256)
    assert c.block_size == 256 and c.n_embd == 128
    assert PRESETS["shakespeare"].block_size == 64  # the preset itself is untouched
    with pytest.raises(ConfigError, match=r"divisible"):
        get_config("tiny", n_head=5)


def test_presets():
    s = get_config("shakespeare")
    assert (s.n_layer, s.n_head, s.n_embd, s.block_size, s.vocab_size) == (4, 4, 128, 64, 65)
    g = get_config("gpt2")
    assert (g.n_layer, g.n_head, g.n_embd, g.block_size, g.vocab_size) == (12, 12, 768, 1024, 50257)
    assert num_params(g) == 124_439_808  # GPT-2 small, the tied head counted once
    t = get_config("tiny")
    assert (t.n_layer, t.n_head, t.n_embd, t.block_size, t.vocab_size) == (2, 2, 16, 16, 29)


def test_from_dict_hugging_face_keys():
    hf = {
        "n_layer": 12,
        "n_head": 12,
        "n_embd": 768,
        "n_positions": 1024,
        "n_ctx": 1024,
        "vocab_size": 50257,
        "activation_function": "gelu_new",
        "model_type": "gpt2",
    }
    assert GPTConfig.from_dict(hf) == get_config("gpt2")
    assert "block_size" not in hf  # the caller's dict is not modified


def test_from_dict_block_size_wins_over_n_positions():
    assert GPTConfig.from_dict({**GOOD, "n_positions": 99}).block_size == 16


def test_from_dict_missing_keys():
    with pytest.raises(ConfigError, match=r"config is missing n_head, vocab_size"):
        GPTConfig.from_dict({"n_layer": 2, "n_embd": 16, "block_size": 16})


@pytest.mark.parametrize("bad", [None, [1, 2], "n_layer=2", 3])
def test_from_dict_not_a_dict(bad):
    with pytest.raises(ConfigError, match=rf"config must be a JSON object, got {type(bad).__name__}"):
        GPTConfig.from_dict(bad)


def test_from_dict_validates():
    with pytest.raises(ConfigError, match=r"config\.n_embd must be an int, got float 16\.0"):
        GPTConfig.from_dict({**GOOD, "n_embd": 16.0})  # what a JSON writer may produce


@pytest.mark.parametrize(
    "name, value, allowed",
    [
        ("n_layer", 2**16 + 1, r"1 \.\. 65536 \(2\^16\)"),
        ("n_layer", 10**30, r"1 \.\. 65536 \(2\^16\)"),
        ("n_embd", 2**21, r"1 \.\. 1048576 \(2\^20\)"),
        ("block_size", 2**20 + 1, r"1 \.\. 1048576 \(2\^20\)"),
        ("vocab_size", 2**30 + 1, r"1 \.\. 1073741824 \(2\^30\)"),
    ],
)
def test_config_limits(name, value, allowed):
    # SPEC.md "Limits": one line naming the field, the value and what is allowed
    with pytest.raises(ConfigError, match=rf"^config\.{name} is {value}; allowed: {allowed}$"):
        GPTConfig(**{**GOOD, name: value})


def test_config_n_head_at_most_n_embd():
    with pytest.raises(ConfigError, match=r"^config\.n_head is 32; allowed: 1 \.\. n_embd \(16\)$"):
        GPTConfig(**{**GOOD, "n_head": 32})


def test_config_parameter_limit():
    # every field within its own limit, the total above 2^40: 2^16 layers of 12 * 2^20^2 weights each
    big = {"n_layer": 2**16, "n_head": 1, "n_embd": 2**20, "block_size": 1, "vocab_size": 1}
    with pytest.raises(
        ConfigError, match=r"^config has \d+ parameters .*; allowed: at most 1099511627776 \(2\^40\)$"
    ):
        GPTConfig(**big)


def test_config_limits_themselves_are_allowed():
    # the largest values allowed, one field at a time (nothing is allocated from a config)
    for name in ("n_layer", "block_size"):
        assert getattr(GPTConfig(**{**GOOD, name: LIMITS[name]}), name) == LIMITS[name]
    # (n_embd 2^20 itself passes its own check, but 12 C^2 is then 12 x 2^40: the parameter limit binds)
    assert "parameters" in str(pytest.raises(ConfigError, GPTConfig, 1, 1, 2**20, 1, 1).value)
    assert GPTConfig(n_layer=1, n_head=1, n_embd=1, block_size=1, vocab_size=2**30).vocab_size == 2**30
    # the closed form the limit uses is the table's count
    from shared.config import count_params

    assert count_params(
        **{k: GOOD[k] for k in ("n_layer", "n_embd", "block_size", "vocab_size")}
    ) == num_params(GPTConfig(**GOOD))


# ---- parameters and init ----


def test_param_shapes_order():
    c = get_config("tiny")
    names = list(param_shapes(c))
    assert names[:2] == ["wte.weight", "wpe.weight"]
    assert names[-2:] == ["ln_f.weight", "ln_f.bias"]
    assert names[2:14] == [
        "h.0." + n
        for n in [
            "ln_1.weight",
            "ln_1.bias",
            "attn.c_attn.weight",
            "attn.c_attn.bias",
            "attn.c_proj.weight",
            "attn.c_proj.bias",
            "ln_2.weight",
            "ln_2.bias",
            "mlp.c_fc.weight",
            "mlp.c_fc.bias",
            "mlp.c_proj.weight",
            "mlp.c_proj.bias",
        ]
    ]
    assert len(names) == 2 + 12 * c.n_layer + 2
    shapes = param_shapes(c)
    assert shapes["h.1.attn.c_attn.weight"] == (16, 48)
    assert shapes["h.1.mlp.c_proj.weight"] == (64, 16)


def test_is_decayed():
    shapes = param_shapes(get_config("tiny"))
    decayed = [n for n, s in shapes.items() if is_decayed(n, s)]
    assert decayed == [n for n in shapes if n.endswith(".weight") and "ln_" not in n]


def test_init_is_seeded():
    c = get_config("tiny")
    a, b, other = init_state_dict(c, seed=3), init_state_dict(c, seed=3), init_state_dict(c, seed=4)
    assert list(a) == list(param_shapes(c))
    for n in a:
        np.testing.assert_array_equal(a[n], b[n], err_msg=n)
    assert not np.array_equal(a["wte.weight"], other["wte.weight"])


def test_init_statistics():
    c = get_config("shakespeare")
    state = init_state_dict(c, seed=0)
    residual_std = 0.02 / math.sqrt(2 * c.n_layer)  # 0.00707 for 4 layers
    for name, shape in param_shapes(c).items():
        w = state[name]
        assert w.shape == shape and w.dtype == np.float32, name
        if name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")):
            np.testing.assert_array_equal(w, 1.0, err_msg=name)
        elif name.endswith(".bias"):
            np.testing.assert_array_equal(w, 0.0, err_msg=name)
        else:
            want = residual_std if name.endswith("c_proj.weight") else 0.02
            # the sample std of n normal draws is within a few times want/sqrt(2n) of want; the
            # smallest tensor (wpe, 8192 draws) gives 0.8%, so 5% fails only on a wrong std
            assert abs(w.std() / want - 1) < 0.05, (name, w.std(), want)
            assert abs(w.mean()) < 5 * want / math.sqrt(w.size), (name, w.mean())


def test_init_draws_are_distinct_across_tensors():
    # one Generator in canonical order: no two tensors of one shape are copies of each other
    state = init_state_dict(get_config("tiny"), seed=0)
    assert not np.array_equal(state["h.0.attn.c_proj.weight"], state["h.1.attn.c_proj.weight"])


def test_init_float32_and_float64_agree():
    c = get_config("tiny")
    s32 = init_state_dict(c, seed=1, dtype=np.float32)
    s64 = init_state_dict(c, seed=1, dtype=np.float64)
    for n in s32:
        assert s32[n].dtype == np.float32 and s64[n].dtype == np.float64
        np.testing.assert_array_equal(s32[n], s64[n].astype(np.float32), err_msg=n)
        np.testing.assert_allclose(s32[n], s64[n], rtol=2**-24, atol=0, err_msg=n)


def test_check_state_dict_not_an_array():
    c = get_config("tiny")
    state = init_state_dict(c)
    state["ln_f.bias"] = state["ln_f.bias"].tolist()
    with pytest.raises(CheckpointError, match=r"ln_f\.bias must be a numpy array, got list"):
        check_state_dict(c, state)


# ---- learning-rate schedule ----

MAX, MIN, WARMUP, DECAY = 1e-3, 1e-4, 10, 110


def lr(step):
    return lr_at(step, MAX, MIN, WARMUP, DECAY)


def test_lr_warmup_is_linear():
    warm = [lr(s) for s in range(WARMUP)]
    assert warm[0] == pytest.approx(MAX / (WARMUP + 1))
    for s, v in enumerate(warm):
        assert v == pytest.approx(MAX * (s + 1) / (WARMUP + 1))
    np.testing.assert_allclose(np.diff(warm), MAX / (WARMUP + 1))
    assert all(v < MAX for v in warm)


def test_lr_peak():
    assert lr(WARMUP) == pytest.approx(MAX)
    assert max(lr(s) for s in range(DECAY + 10)) == pytest.approx(MAX)


def test_lr_cosine():
    mid = (WARMUP + DECAY) // 2
    assert lr(mid) == pytest.approx((MAX + MIN) / 2)
    quarter = WARMUP + (DECAY - WARMUP) // 4
    assert lr(quarter) == pytest.approx(MIN + (MAX - MIN) * 0.5 * (1 + math.cos(math.pi / 4)))
    decay = [lr(s) for s in range(WARMUP, DECAY + 1)]
    assert all(a > b for a, b in itertools.pairwise(decay))  # strictly decreasing
    assert lr(DECAY - 1) > MIN


def test_lr_floor():
    for s in [DECAY, DECAY + 1, 10 * DECAY, 10**9]:
        assert lr(s) == MIN


def test_lr_is_a_pure_function():
    forward = [lr(s) for s in range(150)]
    backward = [lr(s) for s in reversed(range(150))][::-1]
    assert forward == backward
    assert lr(37) == lr(37)


def test_lr_without_warmup():
    assert lr_at(0, MAX, MIN, 0, 100) == MAX
    assert lr_at(50, MAX, MIN, 0, 100) == pytest.approx((MAX + MIN) / 2)


# ---- sampling ----


def test_temperature_zero_is_argmax():
    logits = np.array([[0.1, 2.0, -1.0, 1.9], [5.0, -5.0, 4.0, 0.0]])
    out = sample_next(logits, 0.0, None, np.random.default_rng(0))
    assert out.dtype == np.int64 and out.shape == (2,)
    np.testing.assert_array_equal(out, [1, 0])


def test_temperature_zero_ties_pick_lowest_id():
    logits = np.array([[1.0, 3.0, 3.0, 3.0], [2.0, 2.0, 2.0, 2.0], [-1.0, 0.0, -1.0, 0.0]])
    np.testing.assert_array_equal(sample_next(logits, 0.0, None, np.random.default_rng(0)), [1, 0, 1])


@pytest.mark.parametrize("temperature", [0.5, 1.0, 3.0])
def test_top_k_1_is_greedy(temperature):
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((64, 50))
    out = sample_next(logits, temperature, 1, np.random.default_rng(1))
    np.testing.assert_array_equal(out, np.argmax(logits, axis=-1))


def test_top_k_keeps_ties_at_the_kth_value():
    # the 2nd largest value, 2.0, is shared by ids 1, 3 and 4: all of them stay in
    logits = np.tile([5.0, 2.0, 1.0, 2.0, 2.0, -3.0], (4000, 1)) / 10.0
    out = sample_next(logits, 0.1, 2, np.random.default_rng(0))
    assert set(out.tolist()) == {0, 1, 3, 4}
    # ties at the largest value: top_k 1 keeps every one of them
    out = sample_next(np.tile([1.0, 4.0, 4.0, 0.0], (2000, 1)), 1.0, 1, np.random.default_rng(0))
    assert set(out.tolist()) == {1, 2}
    assert abs(np.mean(out == 1) - 0.5) < 4 * math.sqrt(0.25 / 2000)


def test_top_k_at_least_vocab_is_no_filter():
    logits = np.tile(np.log([0.2, 0.5, 0.3]), (1000, 1))
    a = sample_next(logits, 1.0, None, np.random.default_rng(3))
    for k in (3, 4, 100):
        np.testing.assert_array_equal(sample_next(logits, 1.0, k, np.random.default_rng(3)), a)


def test_same_seed_same_draw():
    logits = np.random.default_rng(0).standard_normal((16, 30))
    a = sample_next(logits, 1.0, None, np.random.default_rng(42))
    b = sample_next(logits, 1.0, None, np.random.default_rng(42))
    c = sample_next(logits, 1.0, None, np.random.default_rng(43))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_one_uniform_per_row():
    # SPEC.md "Generation": inverse CDF with rng.random(B), so every tier draws identically
    p = np.array([0.2, 0.5, 0.3])
    rng = np.random.default_rng(7)
    out = sample_next(np.tile(np.log(p), (6, 1)), 1.0, None, rng)
    u = np.random.default_rng(7).random(6)
    np.testing.assert_array_equal(out, np.searchsorted(np.cumsum(p), u, side="right"))
    assert rng.random() == pytest.approx(np.random.default_rng(7).random(7)[-1])


N_DRAWS = 20_000


def assert_frequencies(out, p):
    p = np.asarray(p) / np.sum(p)
    freq = np.bincount(out, minlength=len(p)) / len(out)
    se = np.sqrt(p * (1 - p) / len(out))
    # 4.5 standard errors: a false alarm about once in 100,000 runs, while a real bias of a few
    # percent (a wrong temperature, an off-by-one in the CDF) is 10+ standard errors away
    assert np.all(np.abs(freq - p) <= 4.5 * se + 1e-12), (freq, p, se)


@pytest.mark.parametrize(
    "temperature, top_k, want",
    [
        (1.0, None, [0.2, 0.5, 0.3]),
        (2.0, None, np.sqrt([0.2, 0.5, 0.3])),  # p ** (1 / T)
        (0.5, None, np.square([0.2, 0.5, 0.3])),
        (1.0, 2, [0.0, 0.5, 0.3]),  # the smallest dropped, the rest renormalized
    ],
)
def test_sampling_distribution(temperature, top_k, want):
    logits = np.tile(np.log([0.2, 0.5, 0.3]) + 1.7, (N_DRAWS, 1))  # a shift changes nothing
    out = sample_next(logits, temperature, top_k, np.random.default_rng(2024))
    assert out.min() >= 0 and out.max() <= 2
    assert_frequencies(out, want)


def test_sampling_never_draws_masked_tokens():
    logits = np.tile([-np.inf, 0.0, -np.inf, 0.0, -np.inf], (5000, 1))
    out = sample_next(logits, 1.0, None, np.random.default_rng(0))
    assert set(out.tolist()) == {1, 3}


# ---- the decode loop ----


def context_window_ref(out, block_size):
    return out[:, max(0, out.shape[1] - block_size) :]


def next_token(context: np.ndarray, V: int) -> np.ndarray:
    """A fake model's greedy choice: depends on every token of the window and on its position."""
    w = np.arange(1, context.shape[1] + 1)
    return (context * w).sum(axis=1) % V


class FakeModel:
    """A KV cache that holds tokens, and one-hot logits from next_token over what it holds."""

    def __init__(self, block_size, V):
        self.block_size, self.V = block_size, V
        self.cache = None
        self.prefills, self.steps = [], 0

    def logits(self):
        return np.eye(self.V)[next_token(self.cache, self.V)]

    def prefill(self, window):
        assert 1 <= window.shape[1] <= self.block_size
        self.prefills.append(window.shape[1])
        self.cache = window.copy()
        return self.logits()

    def step(self, tokens):
        assert tokens.ndim == 1
        self.cache = np.concatenate([self.cache, tokens[:, None]], axis=1)
        assert self.cache.shape[1] <= self.block_size, "the cache grew past block_size"
        self.steps += 1
        return self.logits()


def reference_generate(idx, n, block_size, V):
    out = idx
    for _ in range(n):
        out = np.concatenate([out, next_token(context_window_ref(out, block_size), V)[:, None]], axis=1)
    return out


@pytest.mark.parametrize(
    "T0, block_size, n, prefills",
    [
        (3, 8, 0, []),
        (3, 8, 1, [3]),
        (3, 8, 6, [3]),  # 1 prefill and 5 steps fill the cache exactly
        (3, 8, 7, [3, 8]),  # the 7th token needs a window of the last 8: rebuilt
        (3, 8, 20, [3] + [8] * 14),  # once full, every token rebuilds the cache
        (8, 8, 4, [8] * 4),  # a prompt of block_size: full from the start
        (1, 1, 5, [1] * 5),
    ],
)
def test_generate_tokens_window(T0, block_size, n, prefills):
    V = 11
    idx = np.random.default_rng(T0 + n).integers(0, V, size=(2, T0))
    fake = FakeModel(block_size, V)
    out = generate_tokens(idx, n, block_size, fake.prefill, fake.step, 0.0, None, seed=0)
    assert out.shape == (2, T0 + n)
    np.testing.assert_array_equal(out[:, :T0], idx)
    np.testing.assert_array_equal(out, reference_generate(idx, n, block_size, V))
    assert fake.prefills == prefills
    assert len(fake.prefills) + fake.steps == n


def test_generate_tokens_prefill_count_formula():
    # 1 prefill, then steps until the cache holds block_size, then one prefill per token
    V, block_size, T0 = 7, 16, 5
    for n in range(1, 40):
        fake = FakeModel(block_size, V)
        idx = np.zeros((1, T0), dtype=np.int64)
        generate_tokens(idx, n, block_size, fake.prefill, fake.step, 0.0, None, seed=0)
        assert len(fake.prefills) == 1 + max(0, n - 1 - (block_size - T0)), n


def test_generate_tokens_sampled_is_seeded():
    V, block_size = 13, 6

    def run(seed):
        fake = FakeModel(block_size, V)
        # logits that leave room for chance: the fake's one-hot choice plus noise-free ramps
        prefill = lambda w: fake.prefill(w) + np.arange(V) / V
        step = lambda t: fake.step(t) + np.arange(V) / V
        idx = np.ones((3, 2), dtype=np.int64)
        return generate_tokens(idx, 12, block_size, prefill, step, 1.0, None, seed)

    np.testing.assert_array_equal(run(0), run(0))
    assert not np.array_equal(run(0), run(1))


def test_context_window():
    idx = np.arange(10).reshape(1, 10)
    np.testing.assert_array_equal(context_window(idx, 4), [[6, 7, 8, 9]])
    np.testing.assert_array_equal(context_window(idx, 16), idx)


@pytest.mark.parametrize(
    "field, value",
    [
        ("beta1", 1.0),
        ("beta2", -0.1),
        ("eps", 0.0),
        ("weight_decay", -1.0),
        ("grad_clip", 0.0),
        ("beta1", float("nan")),
    ],
)
def test_adamw_settings_out_of_range(field, value):
    from shared.schedule import AdamWConfig

    with pytest.raises(ConfigError, match=rf"AdamW settings.*{field} is"):
        AdamWConfig(**{field: value})


@pytest.mark.parametrize("field", ["beta1", "beta2", "eps", "weight_decay", "grad_clip"])
@pytest.mark.parametrize("value", [True, False, "0.5", [0.5], float("inf"), float("-inf"), float("nan")])
def test_adamw_settings_not_finite_numbers(field, value):
    # SPEC.md "Limits": a bool is not a number here ("eps": true in a checkpoint was read as 1.0)
    from shared.schedule import AdamWConfig

    with pytest.raises(ConfigError, match=rf"^AdamW settings: {field} is .*, not a finite number"):
        AdamWConfig(**{field: value})


def test_adamw_settings_numpy_numbers_become_floats():
    from shared.schedule import AdamWConfig

    a = AdamWConfig(beta1=np.float32(0.5), eps=np.float64(1e-6), weight_decay=0, grad_clip=np.int64(2))
    assert all(type(getattr(a, f.name)) is float for f in dataclasses.fields(a))
