# The conformance cases and what is measured on them: each tier against the float64 reference, on fresh
# random weights written to a safetensors file and loaded back through the tier's own `load`.
# test_conformance.py asserts these measurements; `python -m conformance.summary` prints them.
import dataclasses
import functools
from pathlib import Path

import numpy as np

from conformance.compare import compare_dicts, max_abs, random_state_dict
from conformance.tiers import TIERS, load, load_reference
from shared.checkpoint import save_checkpoint
from shared.config import ABLATIONS, GPTConfig, get_config
from shared.schedule import AdamWConfig
from shared.tolerances import bounds_for, rel_l2

_ODD = GPTConfig(n_layer=3, n_head=3, n_embd=48, block_size=24, vocab_size=37)
# (config, B, T): odd sizes on purpose: 3 heads of 16, a vocabulary that is not a multiple of 8,
# T = 1, T = block_size, batch 1
CASES = {
    "tiny-B2-T16": (get_config("tiny"), 2, 16),
    "odd-B3-T7": (_ODD, 3, 7),
    "odd-B1-T1": (_ODD, 1, 1),
    "odd-B2-T24": (_ODD, 2, 24),
    # SPEC.md "Ablations": each piece taken out in turn, on the odd config with a batch of 2 and T = 7
    **{f"odd-no-{name}-B2-T7": (dataclasses.replace(_ODD, **{name: False}), 2, 7) for name in ABLATIONS},
}
N_STEPS = 3
LR = 1e-3
OPT_LR = 1e-2  # larger, so that float32 rounding of the parameters is small in units of lr
ADAMW = AdamWConfig(weight_decay=0.1, grad_clip=1.0)


def batch(config: GPTConfig, B: int, T: int, seed: int):
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, config.vocab_size, size=(B, T))
    targets = rng.integers(0, config.vocab_size, size=(B, T))
    if T > 2:
        targets[0, : T // 3] = -1  # ignored positions
    return idx, targets


@functools.cache
def case_data(case: str):
    config, B, T = CASES[case]
    return (config, *batch(config, B, T, seed=sum(map(ord, case))))


def write_checkpoint(case: str, folder) -> str:
    config, _, _ = case_data(case)
    path = Path(folder) / f"{case}.safetensors"
    save_checkpoint(path, config, random_state_dict(config, seed=len(case)))
    return str(path)


def optimizer_steps(model, opt_grads):
    """The optimizer alone: N_STEPS apply_grads on given gradients; the parameters and AdamW state after."""
    for g in opt_grads:
        model.apply_grads(g, OPT_LR)
    return model.state_dict(), model.optimizer_state()


def results(model, idx, targets, opt_grads=None) -> dict:
    """A model's loss, gradients and activations on one input, then its parameters and AdamW state after
    optimizer_steps on opt_grads: by default its own gradients, scaled by 50 (k + 1) at step k so that
    clipping engages and the steps differ in size (Adam's first step divides the scale out, all but eps,
    so a clip in the wrong place shows from the second step on)."""
    loss, grads = model.grads(idx, targets)
    out = {"loss": loss, "grads": grads, "acts": model.activations(idx)}
    if opt_grads is None:
        opt_grads = [{n: g * 50.0 * (k + 1) for n, g in grads.items()} for k in range(N_STEPS)]
    out["opt_grads"] = opt_grads
    out["opt_params"], out["opt_state"] = optimizer_steps(model, opt_grads)
    return out


@functools.cache
def reference(case: str, path: str) -> dict:
    """The float64 reference's results for one case, computed once and shared by every tier."""
    _, idx, targets = case_data(case)
    out = results(load_reference(path, adamw=ADAMW), idx, targets)
    out["logits"] = out["acts"]["logits"]
    # whole training steps, each tier on its own gradients
    ref = load_reference(path, adamw=ADAMW)
    out["train_losses"] = [ref.train_step(idx, targets, LR) for _ in range(N_STEPS)]
    out["train_params"] = ref.state_dict()
    return out


def relative(a: float, ref: float) -> float:
    return abs(a - ref) / abs(ref)


# Rows (tensor, error, bound) of one model against reference results `ref` (a dict with "logits",
# "loss", "grads"), shared with the golden file's checks (golden.py).
def forward_rows(model, idx, targets, ref: dict, b: dict):
    logits, loss = model.forward(idx, targets)
    return [
        ("logits", rel_l2(logits, ref["logits"]), b["logits"]),
        ("loss", relative(loss, ref["loss"]), b["loss"]),
    ]


def grads_rows(model, idx, targets, ref: dict, b: dict):
    loss, grads = model.grads(idx, targets)
    return compare_dicts(grads, ref["grads"], b["grads"]) + [("loss", relative(loss, ref["loss"]), b["loss"])]


def train_loss_rows(model, idx, targets, lr: float, ref_losses, b: dict):
    """len(ref_losses) train steps at a constant lr; each loss (before its step) against the reference's."""
    losses = [model.train_step(idx, targets, lr) for _ in ref_losses]
    return [
        (f"loss[{k}]", relative(a, r), b["train_loss"]) for k, (a, r) in enumerate(zip(losses, ref_losses))
    ]


def measure(quantity: str, tier: str, case: str, path: str):
    """Rows (tensor, error, bound) of one quantity for one tier on one case."""
    _, idx, targets = case_data(case)
    ref = reference(case, path)
    b = bounds_for(TIERS[tier][1])
    if quantity == "logits":
        return forward_rows(load(tier, path), idx, targets, ref, b)
    if quantity == "grads":
        return grads_rows(load(tier, path), idx, targets, ref, b)
    if quantity == "activations":
        acts = load(tier, path).activations(idx)
        assert list(acts) == list(ref["acts"]), "activations must come in the spec's forward order"
        return compare_dicts(acts, ref["acts"], b["activations"])
    if quantity == "decode":
        model = load(tier, path)
        return [
            (f"decode (prefill {n})", rel_l2(model.decode(idx, n), ref["logits"]), b["decode"])
            for n in sorted({1, max(1, idx.shape[1] // 2)})
        ]
    if quantity == "adamw":
        params, opt = optimizer_steps(load(tier, path, adamw=ADAMW), ref["opt_grads"])
        assert opt.step == N_STEPS
        rows = [
            (n, max_abs(params[n], p) / OPT_LR, b["adamw_params_lr"]) for n, p in ref["opt_params"].items()
        ]
        rows += [
            ("m." + n, e, bd) for n, e, bd in compare_dicts(opt.m, ref["opt_state"].m, b["adamw_moments"])
        ]
        rows += [
            ("v." + n, e, bd) for n, e, bd in compare_dicts(opt.v, ref["opt_state"].v, b["adamw_moments"])
        ]
        return rows
    if quantity == "train":
        model = load(tier, path, adamw=ADAMW)
        rows = train_loss_rows(model, idx, targets, LR, ref["train_losses"], b)
        params, bound = model.state_dict(), b["train_params_lr_per_step"] * N_STEPS
        return rows + [(n, max_abs(params[n], p) / LR, bound) for n, p in ref["train_params"].items()]
    raise ValueError(f"unknown quantity {quantity!r}")


QUANTITIES = ["logits", "grads", "activations", "decode", "adamw", "train"]
