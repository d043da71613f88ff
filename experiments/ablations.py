# Three of the curriculum's questions, each answered by training the shakespeare preset with one piece
# of the model taken out (SPEC.md "Ablations") next to the same model with it in:
#   scale-training  attention scores with and without the 1/sqrt(d_k) scale, at two head sizes
#   residual        with and without the residual connections, at two depths; gradient norms by layer
#   positions       with and without the position embedding; how much the prediction depends on order
# Every run uses the same init seed, the same batches and the same learning-rate schedule as
# `python transformer.py train`, so the curves differ only by the piece taken out.
import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shared.config import get_config
from shared.data import CharDataset, batch_rng, estimate_loss, get_batch
from shared.params import init_state_dict
from shared.schedule import AdamWConfig, lr_at


@dataclass(frozen=True)
class AblationSettings:
    # 1,000 steps of transformer.py's default run (batch 12, peak lr 3e-3, cosine to 3e-4): about 30 s a
    # run for the C tier at 4 layers on 2 cores, long enough for the curves to separate
    steps: int = 1000
    batch_size: int = 12
    lr: float = 3e-3
    eval_interval: int = 100
    eval_iters: int = 10
    grad_norm_interval: int = 20  # steps between the recorded gradient norms by layer
    seed: int = 1337


def layer_of(name: str) -> str:
    """The group a parameter's gradient norm is reported in: "emb", "h.0" .. "h.{L-1}", or "ln_f"."""
    if name.startswith("h."):
        return ".".join(name.split(".")[:2])
    return "emb" if name.startswith(("wte", "wpe")) else "ln_f"


def grad_norms_by_layer(grads: dict) -> dict[str, float]:
    norms: dict[str, float] = {}
    for name, g in grads.items():
        key = layer_of(name)
        norms[key] = norms.get(key, 0.0) + float(np.vdot(g, g))
    return {k: math.sqrt(v) for k, v in norms.items()}


def attention_entropy(model, idx) -> float:
    """Mean entropy (nats) of the attention rows over every layer and head, on one batch."""
    acts = model.activations(idx)
    rows = [acts[n] for n in acts if n.endswith("attn.att")]
    entropies = [-(a * np.log(np.where(a > 0, a, 1.0))).sum(-1) for a in rows]  # masked weights are 0
    return float(np.mean([e.mean() for e in entropies]))


def train_variant(
    tier, config, dataset: CharDataset, s: AblationSettings, label: str, progress=True
) -> tuple:
    """Trains one variant from the spec's init; returns its history and the trained model. Each step
    takes the gradients, records their norms by layer every grad_norm_interval steps (before clipping),
    and applies them with AdamW (clipped at 1, as in training)."""
    from tqdm import tqdm

    model = tier.from_state_dict(config, init_state_dict(config, s.seed), adamw=AdamWConfig(beta2=0.99))
    T = config.block_size
    probe = get_batch(dataset.val, 4, T, batch_rng(s.seed + 4, 0))[0]
    history = {
        "step": [],
        "train": [],
        "val": [],
        "entropy": [],
        "time": [],
        "norm_step": [],
        "grad_norms": [],
    }
    start = time.perf_counter()
    warmup = min(100, s.steps // 10)
    for step in tqdm(range(s.steps + 1), desc=label, disable=not progress, unit="step", leave=False):
        if step % s.eval_interval == 0 or step == s.steps:
            history["step"].append(step)
            history["train"].append(
                estimate_loss(model, dataset.train, s.batch_size, s.eval_iters, s.seed + 1)
            )
            history["val"].append(estimate_loss(model, dataset.val, s.batch_size, s.eval_iters, s.seed + 2))
            history["entropy"].append(attention_entropy(model, probe))
            history["time"].append(time.perf_counter() - start)
        if step == s.steps:
            break
        x, y = get_batch(dataset.train, s.batch_size, T, batch_rng(s.seed, step))
        loss, grads = model.grads(x, y)
        if not math.isfinite(loss):
            raise FloatingPointError(f"{label}: loss is {loss} at step {step}")
        if step % s.grad_norm_interval == 0:
            history["norm_step"].append(step)
            history["grad_norms"].append(grad_norms_by_layer(grads))
        model.apply_grads(grads, lr_at(step, s.lr, s.lr / 10, warmup, s.steps))
    return history, model


def run_variants(tier, dataset, variants: dict, s: AblationSettings, log=print, progress=True) -> dict:
    """variants: label -> GPTConfig. Trains each in turn; logs its final losses."""
    runs = {}
    for label, config in variants.items():
        history, model = train_variant(tier, config, dataset, s, label, progress)
        runs[label] = {"config": config, "history": history, "model": model}
        log(
            f"{label:>34}: val loss {history['val'][0]:.3f} -> {history['val'][-1]:.3f}, "
            f"train {history['train'][-1]:.3f}, attention entropy {history['entropy'][-1]:.2f} nats "
            f"({history['time'][-1]:.0f} s)"
        )
    return runs


def plot_losses(ax, runs: dict, styles: dict, title: str) -> None:
    for label, run in runs.items():
        h = run["history"]
        ax.plot(h["step"], h["val"], label=label, **styles[label])
    ax.set_xlabel("step")
    ax.set_ylabel("validation loss (nats)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


# Okabe-Ito, colorblind-safe: the model as published solid, the ablation dashed
BLUE, VERMILION = "#0072B2", "#D55E00"


def _finish(fig, what: str, path: Path) -> None:
    fig.suptitle(f"training with and without {what} (shakespeare preset, same init and batches)")
    save_figure(fig, path)


def save_figure(fig, path: Path) -> None:
    plt = pyplot()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ---- sqrt(d_k) ----


def variant_pairs(vocab_size: int, ablation: str, size: str, values, label) -> dict:
    """For each value of the GPTConfig field `size`: the shakespeare preset as published, then without
    `ablation`; label(config, on) names each run."""
    variants = {}
    for value in values:
        for on in (True, False):
            config = get_config("shakespeare", vocab_size=vocab_size, **{size: value, ablation: on})
            variants[label(config, on)] = config
    return variants


def scale_variants(vocab_size: int, head_counts=(4, 1)) -> dict:
    """n_embd 128 with head size 32 (4 heads) and 128 (1 head), each with and without the scale."""
    return variant_pairs(
        vocab_size,
        "scale_attn_weights",
        "n_head",
        head_counts,
        lambda c, on: f"d_k {c.head_size}, {'scaled' if on else 'unscaled'}",
    )


def plot_scale_training(runs: dict, path: Path) -> None:
    """runs: label -> {"history": ...}, as trained or as read back from the JSON."""
    plt = pyplot()
    styles = _styles(runs)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    plot_losses(axes[0], runs, styles, "validation loss")
    for label, run in runs.items():
        axes[1].plot(run["history"]["step"], run["history"]["entropy"], label=label, **styles[label])
    axes[1].set_xlabel("step")
    axes[1].set_ylabel("mean attention entropy (nats)")
    axes[1].set_title("how spread the attention rows are (all layers and heads)")
    axes[1].grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    _finish(fig, "the 1/sqrt(d_k) scale", path)


# ---- residual connections ----


def residual_variants(vocab_size: int, depths=(4, 8)) -> dict:
    return variant_pairs(
        vocab_size,
        "residual",
        "n_layer",
        depths,
        lambda c, on: f"{c.n_layer} layers, {'with' if on else 'without'} residual",
    )


def input_dependence(model, data: np.ndarray, windows: int = 16, seed: int = 5) -> list[float]:
    """For each block's output (h.{i}.res_2) over `windows` validation windows: the RMS distance of a
    position's vector from the mean vector over all positions and windows, relative to that mean's norm.
    Near 0, the block outputs the same vector whatever the input: the model has forgotten it."""
    x, _ = get_batch(data, windows, model.config.block_size, np.random.default_rng(seed))
    acts = model.activations(x)
    ratios = []
    for i in range(model.config.n_layer):
        a = acts[f"h.{i}.res_2"].reshape(-1, model.config.n_embd).astype(np.float64)
        mean = a.mean(0)
        ratios.append(float(np.sqrt(((a - mean) ** 2).sum(1).mean()) / np.linalg.norm(mean)))
    return ratios


def block_norms(norms: list[dict]) -> list[float]:
    """The mean over the recorded steps `norms` of each block's gradient norm, block 0 first."""
    blocks = sorted((k for k in norms[0] if k.startswith("h.")), key=lambda k: int(k[2:]))
    return [float(np.mean([n[k] for n in norms])) for k in blocks]


def plot_residual(runs: dict, path: Path) -> None:
    plt = pyplot()
    styles = _styles(runs)
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    axes = axes.ravel()
    plot_losses(axes[0], runs, styles, "validation loss")
    for label, run in runs.items():
        dep = run["input_dependence"]
        axes[3].semilogy(range(len(dep)), dep, marker="o", label=label, **styles[label])
    axes[3].set_xlabel("block (0 = next to the input)")
    axes[3].set_ylabel("spread over inputs / |mean|")
    axes[3].set_title("how much each block's output depends on the input (after training)")
    axes[3].grid(alpha=0.3, which="both")
    axes[3].legend(fontsize=8)
    for ax, title, first in zip(axes[1:3], ("at init (step 0)", "mean over the run"), (1, None)):
        for label, run in runs.items():
            norms = block_norms(run["history"]["grad_norms"][:first])
            ax.semilogy(range(len(norms)), norms, marker="o", label=label, **styles[label])
        ax.set_xlabel("block (0 = next to the input)")
        ax.set_ylabel("gradient norm of the block's parameters")
        ax.set_title(f"gradient norm by layer, {title}")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    _finish(fig, "the residual connections", path)


# ---- position embeddings ----


def position_variants(vocab_size: int, depths=(1, 4)) -> dict:
    return variant_pairs(
        vocab_size,
        "position_embedding",
        "n_layer",
        depths,
        lambda c, on: f"{c.n_layer} layer{'s' * (c.n_layer > 1)}, {'with' if on else 'without'} wpe",
    )


def order_sensitivity(model, data: np.ndarray, windows: int = 200, seed: int = 7) -> dict:
    """Shuffles the first T-1 tokens of `windows` validation windows, keeps the last, and compares the
    prediction at the last position with the unshuffled one: the mean KL divergence (nats) between the
    two next-token distributions, and the largest logit difference."""
    T = model.config.block_size
    rng = np.random.default_rng(seed)
    x, _ = get_batch(data, windows, T, rng)
    shuffled = x.copy()
    for row in shuffled:
        row[:-1] = rng.permutation(row[:-1])
    a = model.forward(x)[0][:, -1].astype(np.float64)
    b = model.forward(shuffled)[0][:, -1].astype(np.float64)
    la = a - np.logaddexp.reduce(a, axis=-1, keepdims=True)
    lb = b - np.logaddexp.reduce(b, axis=-1, keepdims=True)
    kl = (np.exp(la) * (la - lb)).sum(-1)
    return {"mean_kl": float(kl.mean()), "max_logit_diff": float(np.abs(a - b).max())}


def plot_positions(runs: dict, path: Path) -> None:
    plt = pyplot()
    styles = _styles(runs)
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5), gridspec_kw={"width_ratios": [1, 1.15]})
    plot_losses(axes[0], runs, styles, "validation loss")
    labels = list(runs)
    floor = 1e-16  # a KL of exactly 0 still gets a bar
    kls = [max(runs[k]["order"]["mean_kl"], floor) for k in labels]
    bars = axes[1].barh(range(len(labels)), kls, left=floor, color=[styles[k]["color"] for k in labels])
    for bar, label, kl in zip(bars, labels, kls):
        if styles[label]["ls"] == "--":
            bar.set_hatch("//")
            bar.set_facecolor("white")
            bar.set_edgecolor(styles[label]["color"])
        axes[1].text(kl * 3, bar.get_y() + bar.get_height() / 2, f"{kl:.1e}", va="center", fontsize=9)
    axes[1].set_xscale("log")
    axes[1].set_xlim(floor, 1e3)
    axes[1].set_yticks(range(len(labels)), labels)
    axes[1].invert_yaxis()
    axes[1].set_xlabel("mean KL between the two predictions (nats)")
    axes[1].set_title("the last prediction, before and after shuffling the 63 tokens before it")
    axes[1].grid(alpha=0.3, axis="x")
    _finish(fig, "the position embedding", path)


def measure_residual(runs: dict, dataset, log=print) -> None:
    log("gradient norm of each block's parameters at init (step 0), before clipping, block 0 first:")
    for label, run in runs.items():
        log(f"{label:>34}: " + " ".join(f"{v:.1e}" for v in block_norms(run["history"]["grad_norms"][:1])))
    log("how much each block's output still depends on the input after training (spread / |mean|):")
    for label, run in runs.items():
        run["input_dependence"] = input_dependence(run["model"], dataset.val)
        log(f"{label:>34}: " + " ".join(f"{v:.1e}" for v in run["input_dependence"]))


def measure_positions(runs: dict, dataset, log=print) -> None:
    log("the prediction at the last of 64 positions when the 63 before it are shuffled (200 windows):")
    for label, run in runs.items():
        run["order"] = o = order_sensitivity(run["model"], dataset.val)
        log(f"{label:>34}: mean KL {o['mean_kl']:.2e} nats, largest logit change {o['max_logit_diff']:.2e}")


# question -> (the variants it trains, what it measures on the trained models, its figure)
QUESTIONS = {
    "scale-training": (scale_variants, None, plot_scale_training),
    "residual": (residual_variants, measure_residual, plot_residual),
    "positions": (position_variants, measure_positions, plot_positions),
}


def run(name: str, tier, dataset, out: Path, s=AblationSettings(), log=print, progress=True) -> dict:
    """Trains the question's variants, measures them, writes out/questions-NAME.png and .json."""
    variants, measure, plot = QUESTIONS[name]
    runs = run_variants(tier, dataset, variants(dataset.tokenizer.vocab_size), s, log, progress)
    if measure is not None:
        measure(runs, dataset, log)
    path = out / f"questions-{name}.png"
    plot(runs, path)
    return summarize(runs, path, out / f"questions-{name}.json")


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _styles(runs: dict) -> dict:
    """Runs come in pairs (the model as published, then the ablation): one color per pair, the ablation
    dashed."""
    colors = [BLUE, VERMILION]
    return {
        label: {"color": colors[i // 2 % 2], "ls": "-" if i % 2 == 0 else "--"}
        for i, label in enumerate(runs)
    }


def summarize(runs: dict, figure: Path, json_path: Path) -> dict:
    rows = {
        label: {
            "config": run["config"].to_dict(),
            "final_val": run["history"]["val"][-1],
            "final_train": run["history"]["train"][-1],
            "history": run["history"],
            **{key: value for key, value in run.items() if key not in ("config", "history", "model")},
        }
        for label, run in runs.items()
    }
    json_path.write_text(json.dumps(rows, indent=1))
    return {"runs": rows, "paths": {"figure": figure, "data": json_path}}


def settings_from_args(args) -> AblationSettings:
    given = {"steps": args.steps, "lr": args.lr}
    return dataclasses.replace(AblationSettings(), **{k: v for k, v in given.items() if v is not None})
