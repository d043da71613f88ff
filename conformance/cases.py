# The conformance cases and what is measured on them: each tier against the outside truth, values that
# Hugging Face transformers' GPT2LMHeadModel and torch.optim.AdamW computed in float64 for exactly these
# weights and batches (make_golden.py) and that are committed in conformance/golden/cases.safetensors.
# The weights are written to a safetensors file and loaded back through each tier's own `load`.
# test_conformance.py asserts these measurements; `python -m conformance.summary` prints them.
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from conformance.compare import compare_dicts, max_abs, random_state_dict
from conformance.tiers import bounds, load
from shared.checkpoint import save_checkpoint
from shared.config import ABLATIONS, GPTConfig, get_config
from shared.schedule import AdamWConfig
from shared.tolerances import flat_gradient, rel_l2


@dataclass(frozen=True)
class Weights:
    """A set of random weights (compare.random_state_dict), some tensors scaled up; the cases of one
    shape share one set (an ablation changes no shape)."""

    config: GPTConfig
    seed: int
    scales: tuple[tuple[str, float], ...] = ()  # (suffix of a canonical name, factor)

    def state_dict(self) -> dict[str, np.ndarray]:
        state = random_state_dict(self.config, self.seed)
        for name in state:
            for suffix, factor in self.scales:
                if name.endswith(suffix):
                    state[name] = (state[name] * np.float32(factor)).astype(np.float32)
        return state


@dataclass(frozen=True)
class Case:
    config: GPTConfig
    B: int
    T: int
    weights: str  # a key of WEIGHTS
    regime: str = "default"  # its tolerances (shared/tolerances.py REGIMES)


_TINY = get_config("tiny")
# odd sizes on purpose: 3 heads of 7, and C, 3C, 4C and V no multiples of 8 (every vector loop of a
# tier has a remainder); small, so that the truth's float64 tensors stay small files
_ODD = GPTConfig(n_layer=2, n_head=3, n_embd=21, block_size=20, vocab_size=37)
# a long sequence at the full block size (the softmax and the reductions over T grow the rounding),
# wide enough that the C tier's matmuls split across threads
_LONG = GPTConfig(n_layer=1, n_head=2, n_embd=24, block_size=128, vocab_size=37)

WEIGHTS = {
    "tiny": Weights(_TINY, seed=16),
    "odd": Weights(_ODD, seed=9),
    # attention scores and logits in the hundreds (without the 1/sqrt(HS) scale): exp overflows in
    # float32 beyond 88, so a softmax or log-sum-exp without its max shift is NaN or inf here
    "large": Weights(_ODD, seed=10, scales=(("attn.c_attn.weight", 5.0), ("ln_f.weight", 40.0))),
    "long": Weights(_LONG, seed=12),
}

# (config, B, T): T = 1, T = block_size, batch 1; when T > 2 the first T // 3 targets of row 0 are -1
CASES = {
    "tiny-B2-T16": Case(_TINY, 2, 16, "tiny"),
    "odd-B3-T7": Case(_ODD, 3, 7, "odd"),
    "odd-B1-T1": Case(_ODD, 1, 1, "odd"),
    "odd-B2-T20": Case(_ODD, 2, 20, "odd"),
    # SPEC.md "Ablations": each piece taken out in turn, on the odd config with a batch of 2 and T = 7
    **{
        f"odd-no-{name}-B2-T7": Case(dataclasses.replace(_ODD, **{name: False}), 2, 7, "odd")
        for name in ABLATIONS
    },
    "large-no-scale_attn_weights-B2-T20": Case(
        dataclasses.replace(_ODD, scale_attn_weights=False), 2, 20, "large", regime="large"
    ),
    "long-B1-T128": Case(_LONG, 1, 128, "long"),
}
N_STEPS = 3
LR = 1e-3
OPT_LR = 1e-2  # larger, so that float32 rounding of the parameters is small in units of lr
ADAMW = AdamWConfig(weight_decay=0.1, grad_clip=1.0)


@dataclass(frozen=True)
class AdamWCase:
    """The optimizer alone: N_STEPS apply_grads at OPT_LR on the truth's gradients of `case`, scaled at
    step k so that their global norm is norms[k] times grad_clip (a norm of None: scaled by 50 (k + 1),
    far above it), with clipping on or off."""

    case: str
    norms: tuple[float | None, ...]
    clip: bool = True

    @property
    def adamw(self) -> AdamWConfig:
        return ADAMW if self.clip else dataclasses.replace(ADAMW, grad_clip=None)

    def scales(self, norm: float) -> list[float]:
        # the steps differ in size: Adam's first step divides the scale out (all but eps), so a clip
        # in the wrong place, or one that scales a small gradient up, shows from the second step on
        # and in the moments from the first
        return [50.0 * (k + 1) if r is None else r * ADAMW.grad_clip / norm for k, r in enumerate(self.norms)]


ADAMW_CASES = {
    "clip-above": AdamWCase("tiny-B2-T16", (None, None, None)),
    "clip-below": AdamWCase("tiny-B2-T16", (0.25, 0.5, 0.75)),
    "clip-at": AdamWCase("tiny-B2-T16", (1.0, 1.0, 1.0)),
    "clip-off": AdamWCase("tiny-B2-T16", (None, None, None), clip=False),
}


def batch(config: GPTConfig, B: int, T: int, seed: int):
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, config.vocab_size, size=(B, T))
    targets = rng.integers(0, config.vocab_size, size=(B, T))
    if T > 2:
        targets[0, : T // 3] = -1  # ignored positions
    return idx, targets


def case_batch(case: str):
    c = CASES[case]
    return batch(c.config, c.B, c.T, seed=sum(map(ord, case)))


def write_checkpoint(case: str, folder) -> str:
    """The case's weights (those the truth was computed on, read from the golden file) as one of our
    checkpoints, under the case's config."""
    from conformance.golden import truth  # the golden file reads the case table: imported late

    path = Path(folder) / f"{case}.safetensors"
    save_checkpoint(path, CASES[case].config, truth(case)["weights"])
    return str(path)


def optimizer_steps(model, opt_grads):
    """The optimizer alone: apply_grads on each of the given gradients; the parameters and AdamW state
    after."""
    for g in opt_grads:
        model.apply_grads(g, OPT_LR)
    return model.state_dict(), model.optimizer_state()


def relative(a: float, ref: float) -> float:
    return abs(a - ref) / abs(ref)


# Rows (tensor, error, bound) of one model against the truth `ref` (a dict with "logits", "loss",
# "grads", ...), shared with the tiny golden file's checks (golden.py) and the property tests.
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
    """len(ref_losses) train steps at a constant lr; each loss (before its step) against the truth's."""
    losses = [model.train_step(idx, targets, lr) for _ in ref_losses]
    return [
        (f"loss[{k}]", relative(a, r), b["train_loss"]) for k, (a, r) in enumerate(zip(losses, ref_losses))
    ]


def train_param_rows(params: dict, ref: dict, config: GPTConfig, lr: float, b: dict):
    """max |p - p_ref| / lr per parameter after the train steps, in two rows: the elements whose step
    rounding can turn around, where the true gradient is zero (the keys' bias) or nearly so (SPEC.md
    "Tolerances", the Adam sqrt(v) issue), with their own bound; and all the others."""
    rows = []
    for name, want in ref["train_params"].items():
        got = np.asarray(params[name], dtype=np.float64)
        if got.shape != want.shape:
            rows.append((name, float("inf"), b["train_params_lr"]))
            continue
        flat = flat_gradient(name, ref["grads"][name], config)
        rows.append((name, max_abs(got[~flat], want[~flat]) / lr, b["train_params_lr"]))
        if flat.any():
            rows.append(
                (f"{name} ({int(flat.sum())} flat)", max_abs(got[flat], want[flat]) / lr, b["train_flat_lr"])
            )
    return rows


def adamw_rows(model, variant: str, b: dict):
    """A model's parameters, m and v after the AdamW case's steps against the truth's."""
    from conformance.golden import adamw_truth

    ref = adamw_truth(variant)
    params, opt = optimizer_steps(model, ref["opt_grads"])
    assert opt.step == N_STEPS
    rows = [(n, max_abs(params[n], p) / OPT_LR, b["adamw_params_lr"]) for n, p in ref["params"].items()]
    rows += [("m." + n, e, bd) for n, e, bd in compare_dicts(opt.m, ref["m"], b["adamw_moments"])]
    rows += [("v." + n, e, bd) for n, e, bd in compare_dicts(opt.v, ref["v"], b["adamw_moments"])]
    return rows


def measure_optimizer(tier: str, variant: str, path: str):
    """Rows (tensor, error, bound) of one tier on one optimizer case (ADAMW_CASES); `path` holds the
    weights of the variant's case."""
    model = load(tier, path, adamw=ADAMW_CASES[variant].adamw)
    return adamw_rows(model, variant, bounds(tier))


def measure(quantity: str, tier: str, case: str, path: str):
    """Rows (tensor, error, bound) of one quantity for one tier on one case, against the truth."""
    from conformance.golden import truth

    ref = truth(case)
    idx, targets = ref["idx"], ref["targets"]
    b = bounds(tier, CASES[case].regime)
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
    if quantity == "train":
        model = load(tier, path, adamw=ADAMW)
        rows = train_loss_rows(model, idx, targets, LR, ref["train_losses"], b)
        return rows + train_param_rows(model.state_dict(), ref, CASES[case].config, LR, b)
    raise ValueError(f"unknown quantity {quantity!r}")


QUANTITIES = ["logits", "grads", "activations", "decode", "train"]
