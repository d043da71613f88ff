# Every tier against the float64 reference at the spec's tolerances (SPEC.md "Tolerances"), on fresh
# random weights written to a safetensors file and loaded back through the tier's own `load`.
import functools

import numpy as np
import pytest

from conformance.compare import assert_within, compare_dicts, random_state_dict
from conformance.tiers import TIERS, load, load_reference
from shared.checkpoint import save_checkpoint
from shared.config import GPTConfig, get_config
from shared.schedule import AdamWConfig
from shared.tolerances import bounds_for, rel_l2

# (config, B, T): odd sizes on purpose: 3 heads of 16, a vocabulary that is not a multiple of 8,
# T = 1, T = block_size, batch 1
CASES = {
    "tiny-B2-T16": (get_config("tiny"), 2, 16),
    "odd-B3-T7": (GPTConfig(n_layer=3, n_head=3, n_embd=48, block_size=24, vocab_size=37), 3, 7),
    "odd-B1-T1": (GPTConfig(n_layer=3, n_head=3, n_embd=48, block_size=24, vocab_size=37), 1, 1),
    "odd-B2-T24": (GPTConfig(n_layer=3, n_head=3, n_embd=48, block_size=24, vocab_size=37), 2, 24),
}
N_STEPS = 3
LR = 1e-3
OPT_LR = 1e-2  # larger, so that float32 rounding of the parameters is small in units of lr
ADAMW = AdamWConfig(weight_decay=0.1, grad_clip=1.0)


@functools.cache
def case_data(case: str):
    config, B, T = CASES[case]
    rng = np.random.default_rng(sum(map(ord, case)))
    idx = rng.integers(0, config.vocab_size, size=(B, T))
    targets = rng.integers(0, config.vocab_size, size=(B, T))
    if T > 2:
        targets[0, : T // 3] = -1  # ignored positions
    return config, idx, targets


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("conformance")


@functools.cache
def _checkpoint(case: str, folder) -> str:
    config, _, _ = case_data(case)
    path = folder / f"{case}.safetensors"
    save_checkpoint(path, config, random_state_dict(config, seed=len(case)))
    return str(path)


@functools.cache
def reference(case: str, path: str):
    """The float64 reference's results for one case, computed once and shared by every tier."""
    config, idx, targets = case_data(case)
    ref = load_reference(path, adamw=ADAMW)
    logits, loss = ref.forward(idx, targets)
    _, grads = ref.grads(idx, targets)
    out = {"logits": logits, "loss": loss, "grads": grads, "acts": ref.activations(idx)}
    # the optimizer alone: the reference's gradients, scaled so that clipping engages, N times
    opt_grads = [{n: g * 50.0 * (k + 1) for n, g in grads.items()} for k in range(N_STEPS)]
    for g in opt_grads:
        ref.apply_grads(g, OPT_LR)
    out["opt_grads"] = opt_grads
    out["opt_params"] = ref.state_dict()
    out["opt_state"] = ref.optimizer_state()
    # whole training steps, each tier on its own gradients
    ref = load_reference(path, adamw=ADAMW)
    out["train_losses"] = [ref.train_step(idx, targets, LR) for _ in range(N_STEPS)]
    out["train_params"] = ref.state_dict()
    return out


@pytest.fixture(params=list(TIERS))
def tier(request):
    return request.param


@pytest.fixture(params=list(CASES))
def case(request, checkpoint_dir):
    return request.param, _checkpoint(request.param, checkpoint_dir)


def bounds(tier):
    return bounds_for(TIERS[tier][1])


def test_logits_and_loss(tier, case):
    case, path = case
    config, idx, targets = case_data(case)
    ref = reference(case, path)
    logits, loss = load(tier, path).forward(idx, targets)
    assert logits.shape == (idx.shape[0], idx.shape[1], config.vocab_size)
    b = bounds(tier)
    loss_err = abs(loss - ref["loss"]) / abs(ref["loss"])
    assert_within([("logits", rel_l2(logits, ref["logits"]), b["logits"]), ("loss", loss_err, b["loss"])], tier)


def test_gradients(tier, case):
    case, path = case
    config, idx, targets = case_data(case)
    ref = reference(case, path)
    loss, grads = load(tier, path).grads(idx, targets)
    for name, g in grads.items():
        assert g.shape == ref["grads"][name].shape, name
    b = bounds(tier)
    rows = compare_dicts(grads, ref["grads"], b["grads"])
    rows.append(("loss", abs(loss - ref["loss"]) / abs(ref["loss"]), b["loss"]))
    assert_within(rows, f"{tier} gradients")


def test_activations(tier, case):
    case, path = case
    _, idx, _ = case_data(case)
    ref = reference(case, path)
    acts = load(tier, path).activations(idx)
    assert list(acts) == list(ref["acts"]), "activations must come in the spec's forward order"
    assert_within(compare_dicts(acts, ref["acts"], bounds(tier)["activations"]), f"{tier} activations")


@pytest.mark.parametrize("prefill", ["one", "half"])
def test_kv_cache_decode(tier, case, prefill):
    case, path = case
    _, idx, _ = case_data(case)
    ref = reference(case, path)
    n_prefill = 1 if prefill == "one" else max(1, idx.shape[1] // 2)
    logits = load(tier, path).decode(idx, n_prefill)
    assert_within([("decode", rel_l2(logits, ref["logits"]), bounds(tier)["decode"])], f"{tier} KV cache")


def test_adamw_on_reference_gradients(tier, case):
    case, path = case
    ref = reference(case, path)
    model = load(tier, path, adamw=ADAMW)
    for g in ref["opt_grads"]:
        model.apply_grads(g, OPT_LR)
    b = bounds(tier)
    params = model.state_dict()
    rows = [(n, float(np.abs(params[n] - p).max()) / OPT_LR, b["adamw_params_lr"]) for n, p in ref["opt_params"].items()]
    opt = model.optimizer_state()
    assert opt.step == N_STEPS
    rows += [("m." + r[0], r[1], r[2]) for r in compare_dicts(opt.m, ref["opt_state"].m, b["adamw_moments"])]
    rows += [("v." + r[0], r[1], r[2]) for r in compare_dicts(opt.v, ref["opt_state"].v, b["adamw_moments"])]
    assert_within(rows, f"{tier} AdamW on the reference's gradients")


def test_training_steps(tier, case):
    case, path = case
    _, idx, targets = case_data(case)
    ref = reference(case, path)
    model = load(tier, path, adamw=ADAMW)
    losses = [model.train_step(idx, targets, LR) for _ in range(N_STEPS)]
    b = bounds(tier)
    rows = [(f"loss[{k}]", abs(a - r) / abs(r), b["train_loss"]) for k, (a, r) in enumerate(zip(losses, ref["train_losses"]))]
    params = model.state_dict()
    bound = b["train_params_lr_per_step"] * N_STEPS
    rows += [(n, float(np.abs(params[n] - p).max()) / LR, bound) for n, p in ref["train_params"].items()]
    assert_within(rows, f"{tier} parameters after {N_STEPS} train steps (in units of lr)")


def test_generate_greedy_matches_recompute(tier, case):
    # greedy decoding through the KV cache picks the argmax of the tier's own full-recompute logits
    case, path = case
    config, idx, _ = case_data(case)
    model = load(tier, path)
    prompt = idx[:, : max(1, idx.shape[1] // 2)]
    out = model.generate(prompt, max_new_tokens=config.block_size + 3, temperature=0.0)
    assert out.shape == (prompt.shape[0], prompt.shape[1] + config.block_size + 3)
    np.testing.assert_array_equal(out[:, : prompt.shape[1]], prompt)
    for t in range(prompt.shape[1], out.shape[1]):
        window = out[:, max(0, t - config.block_size) : t]
        logits, _ = model.forward(window)
        np.testing.assert_array_equal(out[:, t], np.argmax(logits[:, -1], axis=-1), err_msg=f"position {t}")
