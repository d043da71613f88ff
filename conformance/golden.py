# The outside truth: Hugging Face transformers' GPT2LMHeadModel (and torch.optim.AdamW), run once by
# make_golden.py and committed, so that the suite checks every tier, the float64 numpy tier included,
# against an implementation this project did not write (SPEC.md "Tolerances"). Reading it and measuring
# a tier against it needs numpy and safetensors only: no torch, no transformers.
#
# Two files: cases.safetensors holds the truth of every conformance case (cases.py: `truth(case)`,
# `adamw_truth(variant)`); tiny.safetensors holds the `tiny` preset with transformers' own float32 run
# and greedy generations through its KV cache (`read_golden`), beside the directory transformers saved.
import dataclasses
import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file

from conformance.cases import ADAMW_CASES, CASES, WEIGHTS, forward_rows, grads_rows, train_loss_rows
from conformance.tiers import TIERS, load
from shared.activations import activation_names
from shared.checkpoint import save_checkpoint
from shared.config import GPTConfig
from shared.params import param_shapes
from shared.schedule import AdamWConfig
from shared.tolerances import FLOAT32, bounds_for, rel_l2

GOLDEN_DIR = Path(__file__).parent / "golden"
GOLDEN_FILE = GOLDEN_DIR / "tiny.safetensors"
HF_DIR = GOLDEN_DIR / "hf-tiny"  # written by transformers' save_pretrained
# a GPT-2-shaped folder with a BPE tokenizer and what transformers generated from it (make_golden_bpe.py)
BPE_DIR = GOLDEN_DIR / "hf-bpe"
BPE_REFERENCE_JSON = BPE_DIR / "reference.json"
BPE_REFERENCE_TENSORS = BPE_DIR / "reference.safetensors"
FORMAT = "gpt-tiers-golden/1"
CASES_FILE = GOLDEN_DIR / "cases.safetensors"
CASES_FORMAT = "gpt-tiers-golden-cases/1"
DTYPES = ("float64", "float32")  # the reference's runs; tiers are held to the float64 one

# The near-tie guard for greedy generation. A tier within the logits bound tol of the reference moves a
# row z of logits by about tol * ||z|| (L2; the bound holds for the whole tensor, not row by row, hence
# "about"), so the difference of two entries by about sqrt(2) tol ||z||: the argmax cannot change while
# the top-2 margin exceeds that. The golden prompts are chosen so that every generated step's margin is
# at least MARGIN_FACTOR float32 logits bounds, relative to ||z||: far from any tie, so that identical
# tokens are a fair demand of every float32 tier.
MARGIN_FACTOR = 100.0


def top2_margins(logits: np.ndarray) -> np.ndarray:
    """(..., V) -> (...): the largest logit minus the second largest."""
    top2 = np.sort(np.asarray(logits, dtype=np.float64), axis=-1)[..., -2:]
    return top2[..., 1] - top2[..., 0]


def clear_of_ties(logits: np.ndarray, tol: float = FLOAT32["logits"]) -> bool:
    """True when every row's top-2 margin is at least MARGIN_FACTOR * tol * ||row||: greedy decoding
    picks the same token in every tier within tol of these logits."""
    logits = np.asarray(logits, dtype=np.float64)
    return bool(np.all(top2_margins(logits) >= MARGIN_FACTOR * tol * np.linalg.norm(logits, axis=-1)))


@dataclass(frozen=True)
class Generation:
    prompt: np.ndarray  # (1, P) int64
    tokens: np.ndarray  # (1, P + N): the prompt and N greedy tokens
    logits: np.ndarray  # (N, V) float64: the logits each token was the argmax of
    margins: np.ndarray  # (N,) their top-2 margins


@dataclass(frozen=True)
class Golden:
    config: GPTConfig
    weights: dict[str, np.ndarray]  # canonical names, float32 (the float64 runs hold the same numbers)
    idx: np.ndarray  # (B, T) int64
    targets: np.ndarray  # (B, T) int64, some -1
    lr: float  # constant learning rate of the AdamW steps
    adamw: AdamWConfig
    # per dtype: "logits", "loss", "grads" (canonical name -> gradient), "train_losses" (loss before
    # each AdamW step): the form cases.py's reference results take
    runs: dict[str, dict]
    generations: list[Generation]
    metadata: dict[str, str]  # versions, settings and how the file was made


UNSCALED = "unscaled-float64"  # the run with scale_attn_weights=False (SPEC.md "Ablations")


def case_table() -> dict:
    """Everything the truth was computed from (cases.py), as JSON: make_golden stores it in the file,
    and the tests ask that cases.py still says the same, so that a changed case cannot be checked
    against a stale truth."""
    weights = {
        name: {"config": w.config.to_dict(), "seed": w.seed, "scales": [list(s) for s in w.scales]}
        for name, w in WEIGHTS.items()
    }
    cases = {
        name: {"config": c.config.to_dict(), "B": c.B, "T": c.T, "weights": c.weights, "regime": c.regime}
        for name, c in CASES.items()
    }
    adamw = {
        name: {"case": a.case, "norms": list(a.norms), "adamw": dataclasses.asdict(a.adamw)}
        for name, a in ADAMW_CASES.items()
    }
    return {"weights": weights, "cases": cases, "adamw": adamw}


def _read(path, fmt: str) -> tuple[dict, dict]:
    """A golden file's tensors, read-only (shared by every test: a tier must not write into its
    inputs), and its metadata, which must name the format."""
    tensors = load_file(path)
    for t in tensors.values():
        t.flags.writeable = False
    with safe_open(path, framework="np") as f:
        metadata = f.metadata()
    if metadata.get("format") != fmt:
        raise ValueError(f"{path}: not a golden file of format {fmt}")
    return tensors, metadata


@functools.cache
def _cases_file():
    return _read(CASES_FILE, CASES_FORMAT)


def cases_metadata() -> dict[str, str]:
    return _cases_file()[1]


@functools.cache
def truth(case: str) -> dict:
    """The truth of one case: weights (float32, canonical names), idx, targets, logits, loss, grads,
    acts (forward order), train_losses and train_params, all float64 but the weights and the batch."""
    tensors, _ = _cases_file()
    config = CASES[case].config
    names, p = list(param_shapes(config)), f"case.{case}."
    weights = CASES[case].weights
    return {
        "weights": {n: tensors[f"weights.{weights}.{n}"] for n in names},
        "idx": tensors[p + "idx"],
        "targets": tensors[p + "targets"],
        "logits": tensors[p + "logits"],
        "loss": float(tensors[p + "loss"]),
        "grads": {n: tensors[f"{p}grads.{n}"] for n in names},
        "acts": {n: tensors[f"{p}acts.{n}"] for n in activation_names(config)},
        "train_losses": [float(x) for x in tensors[p + "train_losses"]],
        "train_params": {n: tensors[f"{p}train_params.{n}"] for n in names},
    }


@functools.cache
def adamw_truth(variant: str) -> dict:
    """An optimizer case's inputs (opt_grads: its case's true gradients times the step's scale) and
    the parameters, m and v after them."""
    tensors, _ = _cases_file()
    case = ADAMW_CASES[variant].case
    grads, p = truth(case)["grads"], f"adamw.{variant}."
    scales = [float(s) for s in tensors[p + "scales"]]
    return {
        "scales": scales,
        "opt_grads": [{n: g * s for n, g in grads.items()} for s in scales],
        **{k: {n: tensors[f"{p}{k}.{n}"] for n in grads} for k in ("params", "m", "v")},
    }


@functools.cache
def read_golden(path=GOLDEN_FILE) -> Golden:
    tensors, metadata = _read(path, FORMAT)
    config = GPTConfig.from_dict(json.loads(metadata["config"]))
    runs = {
        dtype: {
            "logits": tensors[f"{dtype}.logits"],
            "loss": float(tensors[f"{dtype}.loss"]),
            "grads": {n: tensors[f"{dtype}.grads.{n}"] for n in param_shapes(config)},
            "train_losses": [float(x) for x in tensors[f"{dtype}.train_losses"]],
        }
        for dtype in DTYPES
    }
    runs[UNSCALED] = {
        "logits": tensors[f"{UNSCALED}.logits"],
        "loss": float(tensors[f"{UNSCALED}.loss"]),
        "grads": {n: tensors[f"{UNSCALED}.grads.{n}"] for n in param_shapes(config)},
    }
    generations = [
        Generation(*(tensors[f"generate.{i}.{k}"] for k in ("prompt", "tokens", "logits", "margins")))
        for i in range(int(metadata["generations"]))
    ]
    return Golden(
        config=config,
        weights={n: tensors["weights." + n] for n in param_shapes(config)},
        idx=tensors["idx"],
        targets=tensors["targets"],
        lr=float(metadata["lr"]),
        adamw=AdamWConfig(**json.loads(metadata["adamw"])),
        runs=runs,
        generations=generations,
        metadata=metadata,
    )


def write_checkpoint(folder) -> str:
    """The golden weights as one of our checkpoints, so that every tier reads them through its own load;
    beside it the same weights under the config without the attention scale (unscaled_path)."""
    golden = read_golden()
    path = Path(folder) / "golden-weights.safetensors"
    save_checkpoint(path, golden.config, golden.weights)
    save_checkpoint(
        unscaled_path(path), dataclasses.replace(golden.config, scale_attn_weights=False), golden.weights
    )
    return str(path)


def unscaled_path(path) -> Path:
    return Path(path).with_name("golden-weights-unscaled.safetensors")


def generate_rows(model, b: dict):
    """Rows (tensor, error, bound) of the logits a model's KV cache gives at every generated step of the
    golden generations, against the reference's; and the model's greedy tokens for each prompt, which
    must be the golden tokens exactly."""
    rows, tokens = [], []
    for i, gen in enumerate(read_golden().generations):
        P, N = gen.prompt.shape[1], gen.logits.shape[0]
        tokens.append(model.generate(gen.prompt, N, temperature=0.0))
        # what generate computes: the prompt in one call, then one token per call through the cache
        logits = model.decode(gen.tokens[:, :-1], n_prefill=P)[0, P - 1 :]
        rows.append((f"generate.{i}.logits", rel_l2(logits, gen.logits), b["decode"]))
    return rows, tokens


# transformers' own float32 run, measured like a tier: an implementation this project did not write,
# held to the same float32 bounds (a check of the bounds as much as of anything else)
OUTSIDE_FLOAT32 = "transformers-float32"
OUTSIDE_QUANTITIES = ["logits", "grads", "train"]


class Recorded:
    """A run stored in the golden file, replayed through the Model methods that measure() calls."""

    def __init__(self, run: dict):
        self.run, self.steps = run, 0

    def forward(self, idx, targets=None):
        return self.run["logits"], self.run["loss"]

    def grads(self, idx, targets):
        return self.run["loss"], self.run["grads"]

    def train_step(self, idx, targets, lr):
        self.steps += 1
        return self.run["train_losses"][self.steps - 1]


def _model(tier: str, path, adamw=None):
    if tier == OUTSIDE_FLOAT32:
        return Recorded(read_golden().runs["float32"])
    return load(tier, path, adamw=adamw)


def measure(quantity: str, tier: str, path: str):
    """Rows (tensor, error, bound) of one quantity for one tier (or OUTSIDE_FLOAT32) against the golden
    float64 results; `path` holds the golden weights (write_checkpoint)."""
    golden = read_golden()
    ref = golden.runs["float64"]
    b = bounds_for(np.float32 if tier == OUTSIDE_FLOAT32 else TIERS[tier][1])
    idx, targets = golden.idx, golden.targets
    if quantity == "logits":
        return forward_rows(_model(tier, path), idx, targets, ref, b)
    if quantity == "grads":
        return grads_rows(_model(tier, path), idx, targets, ref, b)
    if quantity == "train":
        model = _model(tier, path, adamw=golden.adamw)
        return train_loss_rows(model, idx, targets, golden.lr, ref["train_losses"], b)
    if quantity in ("unscaled-logits", "unscaled-grads"):
        rows = (forward_rows if quantity == "unscaled-logits" else grads_rows)(
            load(tier, unscaled_path(path)), idx, targets, golden.runs[UNSCALED], b
        )
        return [(f"{n} (scale_attn_weights=False)", e, bd) for n, e, bd in rows]
    if quantity == "hf-dir":
        rows = forward_rows(load(tier, HF_DIR), idx, targets, ref, b)
        return [(f"{n} (from {HF_DIR.name}/)", e, bd) for n, e, bd in rows]
    raise ValueError(f"unknown quantity {quantity!r}")


QUANTITIES = [
    "logits",
    "grads",
    "train",
    "hf-dir",
    "unscaled-logits",
    "unscaled-grads",
]  # and generation: generate_rows
