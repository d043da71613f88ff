# `python transformer.py question shared-weights`: does every block need weights of its own? GPT-2 gives
# each of its L blocks separate weights; ALBERT (Lan et al. 2019) uses one set for all of them, L times.
# The command trains the shakespeare preset both ways, at equal depth and at equal parameter count, on
# the batches and learning-rate schedule of experiments/ablations.py, then looks at what the separate
# model's blocks learned: how alike their weights are, and how alike they act on the same inputs.
#
# The sharing is done here, around any tier's Model API, without touching the model: every block starts
# from block 0's weights, and each step every block's gradient is replaced by the sum over the blocks of
# that tensor's gradients (the gradient of a weight used L times is the sum of its L uses). Every copy
# then receives the same update, AdamW's moments and weight decay act on every copy alike, and the copies
# stay bit-identical: L copies of one parameter, trained as one.
import dataclasses
import math
from pathlib import Path

import numpy as np

from experiments.ablations import (
    BLUE,
    VERMILION,
    plot_losses,
    pyplot,
    run_variants,
    save_figure,
    settings_from_args,
    summarize,
)
from impl_numpy.optim import clip_grad_norm, grad_norm
from shared.config import GPTConfig, get_config
from shared.data import CharDataset, estimate_loss, get_batch, shakespeare_path
from shared.params import init_state_dict, num_params, param_shapes
from shared.schedule import AdamWConfig

# the four matrices of a block; its LayerNorms and biases are vectors started at 1 or 0 in every block
WEIGHT_KINDS = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
# Okabe-Ito, colorblind-safe: the model as published solid blue; shared models dashed
SKY, GREEN = "#56B4E9", "#009E73"


def block_suffixes(config: GPTConfig) -> list[str]:
    """The names within a block, "ln_1.weight" .. "mlp.c_proj.bias", in canonical order."""
    return [n[len("h.0.") :] for n in param_shapes(config) if n.startswith("h.0.")]


def tie_state(state: dict, config: GPTConfig) -> dict:
    """The state with every block's tensors copies of block 0's."""
    tied = dict(state)
    for suffix in block_suffixes(config):
        for i in range(1, config.n_layer):
            tied[f"h.{i}.{suffix}"] = state[f"h.0.{suffix}"].copy()
    return tied


def sum_block_grads(grads: dict, config: GPTConfig) -> dict:
    """Every block's gradient replaced by the sum over the blocks of that tensor's gradients: the
    gradient of the one shared tensor. Every array is a new one: clipping scales them in place, and the
    caller's gradients stay as they were (SPEC.md "AdamW")."""
    summed = {name: g.copy() for name, g in grads.items()}
    for suffix in block_suffixes(config):
        total = sum(grads[f"h.{i}.{suffix}"] for i in range(config.n_layer))
        for i in range(config.n_layer):
            summed[f"h.{i}.{suffix}"] = total.copy()
    return summed


def tied_grad_norm(summed: dict, config: GPTConfig) -> float:
    """The global gradient norm of the tied model, whose parameters are the tensors outside the blocks
    and one block: the norm over all the tensors would count the shared gradient L times."""
    return grad_norm({n: g for n, g in summed.items() if not n.startswith("h.") or n.startswith("h.0.")})


def tied_params(config: GPTConfig) -> int:
    """The tied model's parameter count: one block's tensors, not L."""
    per_block = sum(math.prod(s) for n, s in param_shapes(config).items() if n.startswith("h.0."))
    return num_params(config) - (config.n_layer - 1) * per_block


class TiedModel:
    """A tier's model whose blocks share one set of weights; anything but a step is the model's own."""

    def __init__(self, model, grad_clip: float | None):
        self.model = model
        self.grad_clip = grad_clip

    def __getattr__(self, name):
        return getattr(self.model, name)

    def apply_grads(self, grads: dict, lr: float) -> None:
        summed = sum_block_grads(grads, self.model.config)
        # the tier itself clips by the norm over all its tensors (SPEC.md "AdamW"), which counts the
        # shared gradient L times: the model was built with grad_clip None and clips here by the norm of
        # the tied model's own gradient, with the spec's formula as impl_numpy/optim.py writes it (torch's
        # clip_grad_norm_), on numpy arrays whatever the tier
        if self.grad_clip is not None:
            clip_grad_norm(summed, self.grad_clip, tied_grad_norm(summed, self.model.config))
        self.model.apply_grads(summed, lr)

    def train_step(self, idx, targets, lr: float) -> float:
        loss, grads = self.model.grads(idx, targets)
        self.apply_grads(grads, lr)
        return loss


@dataclasses.dataclass(frozen=True)
class TiedTier:
    """A tier whose from_state_dict builds TiedModels: what train_variant takes in place of a tier."""

    tier: object

    def from_state_dict(self, config, state, dtype=np.float32, adamw: AdamWConfig | None = None):
        adamw = adamw or AdamWConfig()
        model = self.tier.from_state_dict(
            config, tie_state(state, config), dtype, dataclasses.replace(adamw, grad_clip=None)
        )
        return TiedModel(model, adamw.grad_clip)


def matched_width(config: GPTConfig, target: int) -> int:
    """The n_embd, a multiple of n_head, whose tied model at config's depth has the parameter count
    nearest to target."""
    widths = range(config.n_head, math.isqrt(target) + 1, config.n_head)  # the blocks alone hold 12 C^2
    return min(widths, key=lambda C: abs(tied_params(dataclasses.replace(config, n_embd=C)) - target))


def variants(vocab_size: int) -> dict:
    """label -> (config, shared): GPT-2's separate blocks, the shared model at equal depth, a separate
    model of the shared one's parameter count (1 layer), a shared model as large as the separate one."""
    base = get_config("shakespeare", vocab_size=vocab_size)
    one = dataclasses.replace(base, n_layer=1)
    wide = dataclasses.replace(base, n_embd=matched_width(base, num_params(base)))
    return {
        f"separate, {base.n_layer} layers C {base.n_embd}": (base, False),
        f"shared, {base.n_layer} layers C {base.n_embd}": (base, True),
        f"separate, 1 layer C {one.n_embd}": (one, False),
        f"shared, {wide.n_layer} layers C {wide.n_embd}": (wide, True),
    }


def param_count(config: GPTConfig, shared: bool) -> int:
    return tied_params(config) if shared else num_params(config)


# ---- what the separate model's blocks learned ----


def cosine_matrix(vectors: list[np.ndarray]) -> np.ndarray:
    """(L, L): the cosine similarity of every pair of the flattened arrays."""
    flat = np.stack([v.ravel().astype(np.float64) for v in vectors])
    flat /= np.linalg.norm(flat, axis=1, keepdims=True)
    return flat @ flat.T


def weight_similarity(state: dict, init: dict, config: GPTConfig) -> dict:
    """For each kind of matrix: the blocks' pairwise cosine similarity at init, after training, and of
    their change from init."""
    L = config.n_layer
    out = {}
    for kind in WEIGHT_KINDS:
        names = [f"h.{i}.{kind}.weight" for i in range(L)]
        out[kind] = {
            "init": cosine_matrix([init[n] for n in names]).tolist(),
            "trained": cosine_matrix([state[n] for n in names]).tolist(),
            "change": cosine_matrix([state[n] - init[n].astype(state[n].dtype) for n in names]).tolist(),
        }
    return out


def update_similarity(model, data: np.ndarray, windows: int = 8, seed: int = 11) -> dict:
    """How alike blocks i and k act on the same inputs, (L, L). The inputs are what every block really
    receives (the stream entering block j, for each j) on `windows` validation windows; a block's
    residual update is block_forward(x) - x. "raw": the cosine of the two updates at each position,
    averaged over the positions and over j. "centered": the same after taking from each update its mean
    over the positions, the constant vector a block adds whatever the input (its biases' share, mostly),
    so that only what depends on the input is compared."""
    L = model.config.n_layer
    x, _ = get_batch(data, windows, model.config.block_size, np.random.default_rng(seed))
    acts = model.activations(x)
    inputs = [acts["emb"]] + [acts[f"h.{j}.res_2"] for j in range(L - 1)]  # (B, T, C) each
    total = {"raw": np.zeros((L, L)), "centered": np.zeros((L, L))}
    for inp in inputs:
        u = np.stack([model.block_forward(inp, i) - inp for i in range(L)]).astype(np.float64)  # (L, B, T, C)
        for kind, v in (("raw", u), ("centered", u - u.mean(axis=(1, 2), keepdims=True))):
            v = v / np.linalg.norm(v, axis=-1, keepdims=True)
            total[kind] += np.einsum("ibtc,kbtc->ik", v, v) / (v.shape[1] * v.shape[2])
    return {kind: (m / L).tolist() for kind, m in total.items()}


def rearranged(state: dict, config: GPTConfig, order: list[int | None]) -> dict:
    """The state with block i holding block order[i]'s weights; None: block i does nothing (its two
    projections zeroed, so both halves add 0 to the stream)."""
    out = dict(state)
    for i, j in enumerate(order):
        for suffix in block_suffixes(config):
            name = f"h.{i}.{suffix}"
            if j is None:
                out[name] = np.zeros_like(state[name]) if ".c_proj." in name else state[name]
            else:
                out[name] = state[f"h.{j}.{suffix}"]
    return out


def rearranged_losses(tier, config: GPTConfig, state: dict, dataset, s) -> dict:
    """The validation loss (the history's batches) of the trained model with its blocks rearranged:
    two blocks swapped, every block replaced by one of them, one block removed."""
    L = config.n_layer
    orders = {"as trained": list(range(L))}
    for i in range(L):
        for k in range(i + 1, L):
            order = list(range(L))
            order[i], order[k] = k, i
            orders[f"swap {i} and {k}"] = order
    for i in range(L):
        orders[f"every block = block {i}"] = [i] * L
    for i in range(L):
        orders[f"block {i} removed"] = [None if j == i else j for j in range(L)]
    losses = {}
    for label, order in orders.items():
        model = tier.from_state_dict(config, rearranged(state, config, order))
        losses[label] = estimate_loss(model, dataset.val, s.batch_size, s.eval_iters, s.seed + 2)
    return losses


def pairs_text(m) -> str:
    L = len(m)
    return "  ".join(f"{m[i][k]:+.3f}" for i in range(L) for k in range(i + 1, L))


def measure_blocks(tier, run: dict, dataset, s, log=print) -> dict:
    """The separate model's blocks after training: weights, function, rearrangement."""
    config, model = run["config"], run["model"]
    init = init_state_dict(config, s.seed)
    state = model.state_dict()
    L = config.n_layer
    pairs = "  ".join(f"{i}-{k:<4}" for i in range(L) for k in range(i + 1, L))
    m = {"weights": weight_similarity(state, init, config)}
    log(f"cosine similarity of the blocks' weights, pair by pair (block i-k): {pairs}")
    for kind in WEIGHT_KINDS:
        for when in ("init", "trained", "change"):
            log(f"{kind + ' ' + when:>26}: {pairs_text(m['weights'][kind][when])}")
    init_model = tier.from_state_dict(config, init)
    m["updates_init"] = update_similarity(init_model, dataset.val)
    m["updates"] = update_similarity(model, dataset.val)
    log("cosine of the blocks' residual updates on the same inputs, averaged over positions and inputs:")
    for kind in ("raw", "centered"):
        log(f"{'at init, ' + kind:>26}: {pairs_text(m['updates_init'][kind])}")
        log(f"{'trained, ' + kind:>26}: {pairs_text(m['updates'][kind])}")
    m["rearranged"] = rearranged_losses(tier, config, state, dataset, s)
    log("validation loss of the trained model with its blocks rearranged:")
    for label, loss in m["rearranged"].items():
        log(f"{label:>26}: {loss:.3f}")
    return m


def check_tied(run: dict) -> float:
    """The largest difference between a shared model's block 0 and any other block (0 if tied)."""
    state, L = run["model"].state_dict(), run["config"].n_layer
    return max(
        float(np.abs(state[f"h.{i}.{n[4:]}"] - state[n]).max())
        for n in state
        if n.startswith("h.0.")
        for i in range(1, L)
    )


# ---- the figure ----


def plot_shared_weights(runs: dict, path: Path) -> None:
    plt = pyplot()
    colors = [BLUE, VERMILION, SKY, GREEN]
    styles = {
        label: {"color": colors[i % 4], "ls": "--" if run["shared"] else "-"}
        for i, (label, run) in enumerate(runs.items())
    }
    labelled = {f"{label} ({run['params']:,} params)": run for label, run in runs.items()}
    styles = {new: styles[old] for new, old in zip(labelled, runs)}
    m = next(run for run in runs.values() if "blocks" in run)["blocks"]
    L = len(m["updates"]["raw"])
    fig = plt.figure(figsize=(13, 10))
    grid = fig.add_gridspec(3, 4)
    plot_losses(
        fig.add_subplot(grid[0, :2]), labelled, styles, "validation loss (separate solid, shared dashed)"
    )
    _plot_difference(fig.add_subplot(grid[0, 2:]), labelled, styles)
    u = m["updates"]
    title = "residual updates on the same inputs:\nas they are (upper), centered (lower)"
    _heatmap(fig, fig.add_subplot(grid[1, 0]), u["raw"], u["centered"], title)
    _plot_rearranged(fig.add_subplot(grid[1, 1:]), m["rearranged"])
    for col, kind in enumerate(WEIGHT_KINDS):
        w = m["weights"][kind]
        title = f"{kind}.weight: trained (upper),\nchange from init (lower)"
        _heatmap(fig, fig.add_subplot(grid[2, col]), w["trained"], w["change"], title)
    fig.suptitle(
        f"one set of block weights for all {L} layers against separate ones (shakespeare preset, same batches)"
        f"\nrows 2 and 3: the separate {L}-layer model's blocks after training; the matrices: cosine similarity"
    )
    save_figure(fig, path)


def _plot_rearranged(ax, losses: dict) -> None:
    labels, values = list(losses), list(losses.values())
    ax.barh(range(len(labels)), values, color=BLUE)
    ax.axvline(values[0], color="k", lw=0.8, ls=":")
    for i, value in enumerate(values):
        ax.text(value, i, f" {value:.3f}", va="center", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(min(values) - 0.05, max(values) + 0.15)
    ax.set_xlabel("validation loss (nats)")
    ax.set_title(
        "the separate 4-layer model's blocks rearranged after training (dotted: as trained)", fontsize=10
    )
    ax.grid(alpha=0.3, axis="x")


def _plot_difference(ax, runs: dict, styles: dict) -> None:
    """Each run's validation loss minus the first run's (the model as published), from the first
    evaluation after step 0 on, where the differences are too small to see on the loss axis."""
    first = next(iter(runs.values()))["history"]
    for label, run in runs.items():
        h = run["history"]
        diff = np.array(h["val"][1:]) - np.array(first["val"][1:])
        ax.plot(h["step"][1:], diff, label=label, **styles[label])
    ax.set_xlabel("step")
    ax.set_ylabel("validation loss minus the first run's (nats)")
    ax.set_title("difference from GPT-2's separate blocks", fontsize=10)
    ax.grid(alpha=0.3)


def _heatmap(fig, ax, upper, lower, title: str) -> None:
    """Two (L, L) symmetric matrices in one: `upper` above the diagonal, `lower` below it."""
    L = len(upper)
    above = np.triu(np.ones((L, L), dtype=bool), 1)
    m = np.where(above, upper, lower)
    np.fill_diagonal(m, np.nan)  # 1 in both: left blank
    image = ax.imshow(m, cmap="RdBu_r", vmin=-1, vmax=1)  # diverging: 0 white, sign by hue
    for (i, k), value in np.ndenumerate(m):
        if i != k:
            color = "white" if abs(value) > 0.6 else "black"  # legible on the darkest cells
            ax.text(k, i, f"{value:.2f}", ha="center", va="center", fontsize=8, color=color)
    ax.set_xticks(range(L))
    ax.set_yticks(range(L))
    ax.set_xlabel("block")
    ax.set_ylabel("block")
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046)


# ---- the command ----


def run_question(args, tier_module, out: Path, log=print, progress=True) -> dict:
    tier = tier_module(args.impl[0] if args.impl else "c")
    dataset = CharDataset.from_file(shakespeare_path(args.data))
    s = settings_from_args(args)
    runs = {}
    for label, (config, shared) in variants(dataset.tokenizer.vocab_size).items():
        trained = run_variants(TiedTier(tier) if shared else tier, dataset, {label: config}, s, log, progress)
        runs[label] = {**trained[label], "shared": shared, "params": param_count(config, shared)}
    for label, run in runs.items():
        if run["shared"]:
            run["max_block_difference"] = check_tied(run)
            log(
                f"{label}: largest difference between block 0 and another block: {run['max_block_difference']}"
            )
    separate = next(iter(runs.values()))
    separate["blocks"] = measure_blocks(tier, separate, dataset, s, log)
    log_table(runs, log)
    path = out / "questions-shared-weights.png"
    plot_shared_weights(runs, path)
    return summarize(runs, path, out / "questions-shared-weights.json")


def log_table(runs: dict, log=print) -> None:
    steps = next(iter(runs.values()))["history"]["step"]
    shown = [k for k, step in enumerate(steps) if step in (steps[len(steps) // 5], steps[-1])]
    log(f"{'model':>26} {'parameters':>10} " + " ".join(f"{'val @ ' + str(steps[k]):>11}" for k in shown))
    for label, run in runs.items():
        values = " ".join(f"{run['history']['val'][k]:>11.3f}" for k in shown)
        log(f"{label:>26} {run['params']:>10,} {values}")
