# Grokking: `python transformer.py grok` trains the spec's GPT on modular addition, (a + b) mod p, from
# a fraction of all p * p pairs, full batch, with AdamW and a strong weight decay (Power et al. 2022,
# "Grokking"; Nanda et al. 2023, "Progress measures for grokking via mechanistic interpretability").
# The training accuracy reaches 99% early, by memorising; the validation accuracy follows much later,
# when weight decay has pushed the model to the general algorithm, which works in a few Fourier
# frequencies of the token embedding: the second figure shows them.
import json
import math
import os
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from shared.cli import at_least, check_writable_folder, fraction, positive
from shared.config import GPTConfig
from shared.errors import ConfigError
from shared.params import init_state_dict, num_params
from shared.schedule import AdamWConfig, lr_at

THRESHOLD = 0.99  # the accuracy that marks a phase: memorised (train) and generalised (val)
ANSWER = 2  # the position whose prediction is the answer: inputs "a b =", the target after "="


@dataclass(frozen=True)
class GrokSettings:
    # p = 97 with 30% of the pairs, measured with the C tier on 2 cores (README, "Grokking"): training
    # accuracy reaches 99% near step 80, validation accuracy near step 1,400, in about 6 minutes; 2,000
    # steps leave the generalised model time to settle. With 50% this model generalises as it memorises
    # (both near step 100: no grokking to see); Nanda et al.'s p = 113 with 30% takes ~8,000 epochs.
    p: int = 97
    train_frac: float = 0.3
    steps: int = 2000
    lr: float = 1e-3  # Nanda et al.: constant after a short linear warmup
    warmup_steps: int = 10
    weight_decay: float = 1.0
    n_layer: int = 1
    n_head: int = 4
    n_embd: int = 128
    eval_interval: int = 10
    seed: int = 0

    def __post_init__(self):
        if self.p < 2 or not 0.0 < self.train_frac < 1.0 or self.steps < 1 or self.eval_interval < 1:
            raise ConfigError(f"grok settings out of range: {self} (p >= 2, 0 < train_frac < 1, steps >= 1)")

    def config(self) -> GPTConfig:
        # tokens 0 .. p-1 are the numbers, token p is "="; a sequence is the three tokens "a b ="
        return GPTConfig(self.n_layer, self.n_head, self.n_embd, block_size=3, vocab_size=self.p + 1)

    def adamw(self) -> AdamWConfig:
        # Nanda et al.'s optimizer: betas (0.9, 0.98), weight decay 1.0, no gradient clipping
        return AdamWConfig(beta1=0.9, beta2=0.98, weight_decay=self.weight_decay, grad_clip=None)


def modular_addition(p: int, train_frac: float, seed: int):
    """Every pair (a, b) once, shuffled by seed and cut at train_frac: (x_train, y_train), (x_val, y_val).
    x is (N, 3) "a b =", y is (N, 3) with -1 everywhere but the answer position, so the loss is the
    answer's alone (SPEC.md "Loss": -1 is ignored)."""
    a, b = (g.ravel() for g in np.meshgrid(np.arange(p), np.arange(p), indexing="ij"))
    x = np.stack([a, b, np.full_like(a, p)], axis=1).astype(np.int64)  # (p*p, 3)
    y = np.full_like(x, -1)
    y[:, ANSWER] = (a + b) % p
    order = np.random.default_rng(seed).permutation(p * p)
    n_train = round(train_frac * p * p)
    if not 0 < n_train < p * p:
        raise ConfigError(f"train_frac {train_frac} of {p * p} pairs leaves a split empty")
    train, val = order[:n_train], order[n_train:]
    return (x[train], y[train]), (x[val], y[val])


def evaluate(model, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Loss and accuracy of the answer (the argmax over the whole vocabulary, "=" included)."""
    logits, loss = model.forward(x, y)  # (N, 3, V)
    acc = float(np.mean(logits[:, ANSWER].argmax(-1) == y[:, ANSWER]))
    return float(loss), acc


def first_step(history: dict, key: str, threshold: float = THRESHOLD) -> int | None:
    """The first evaluated step at which history[key] reaches the threshold."""
    return next((s for s, v in zip(history["step"], history[key]) if v >= threshold), None)


def fourier_norms(wte: np.ndarray, p: int) -> np.ndarray:
    """The norm of each frequency component of the number tokens' embeddings: the FFT of wte[0 .. p-1]
    along the token axis (one transform per channel), then the L2 norm over channels. Entry k is the
    frequency 2 pi k / p, k = 0 .. p // 2 (a real signal's other half mirrors this one)."""
    f = np.fft.rfft(wte[:p].astype(np.float64), axis=0) / math.sqrt(p)  # (p // 2 + 1, C), orthonormal
    return np.linalg.norm(f, axis=1)


def key_frequencies(norms: np.ndarray, share: float = 0.9) -> list[int]:
    """The fewest frequencies k >= 1 that hold `share` of the embedding's non-constant energy."""
    energy = norms[1:] ** 2
    order = np.argsort(energy)[::-1]
    n = int(np.searchsorted(np.cumsum(energy[order]) / energy.sum(), share)) + 1
    return sorted(int(k) + 1 for k in order[:n])


def train(tier, s: GrokSettings, log=print, progress=True, stop_after: int | None = None, dtype=np.float32):
    """Trains from the spec's init; returns the history (every eval_interval steps), the model, and the
    initial embedding. With stop_after, stops that many steps after validation accuracy first reaches
    the threshold (for sweeps)."""
    from tqdm import tqdm

    (x_train, y_train), (x_val, y_val) = modular_addition(s.p, s.train_frac, s.seed)
    config = s.config()
    state = init_state_dict(config, s.seed)
    wte_init = state["wte.weight"].copy()
    model = tier.from_state_dict(config, state, dtype=dtype, adamw=s.adamw())
    history = {k: [] for k in ("step", "train_loss", "train_acc", "val_loss", "val_acc", "time")}
    start = time.perf_counter()
    bar = tqdm(range(s.steps + 1), disable=not progress, unit="step")
    for step in bar:
        if step % s.eval_interval == 0 or step == s.steps:
            train_loss, train_acc = evaluate(model, x_train, y_train)
            val_loss, val_acc = evaluate(model, x_val, y_val)
            row = (step, train_loss, train_acc, val_loss, val_acc, time.perf_counter() - start)
            for key, value in zip(history, row):
                history[key].append(value)
            bar.set_postfix(
                train_acc=f"{train_acc:.3f}", val_acc=f"{val_acc:.3f}", val_loss=f"{val_loss:.3f}"
            )
            if step % (10 * s.eval_interval) == 0 or step == s.steps:
                log(
                    f"step {step:6d}: train loss {train_loss:.4f} acc {train_acc:.3f}, "
                    f"val loss {val_loss:.4f} acc {val_acc:.3f} ({row[-1]:.0f} s)"
                )
            grokked = first_step(history, "val_acc")
            if step == s.steps or (
                stop_after is not None and grokked is not None and step >= grokked + stop_after
            ):
                break
        loss = model.train_step(x_train, y_train, lr_at(step, s.lr, s.lr, s.warmup_steps, s.steps))
        if not math.isfinite(loss):
            raise FloatingPointError(f"loss is {loss} at step {step}; lower --lr")
    bar.close()
    return history, model, wte_init


def plot_curves(history: dict, metrics: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.array(history["step"])
    keep = steps > 0  # a log axis has no room for step 0
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(11, 4))
    for ax, kind in ((ax_acc, "acc"), (ax_loss, "loss")):
        for split, color in (("train", "tab:blue"), ("val", "tab:red")):
            ax.plot(steps[keep], np.array(history[f"{split}_{kind}"])[keep], color=color, label=split)
        marks = (("train_99_step", "tab:blue", "train 99%"), ("val_99_step", "tab:red", "val 99%"))
        for key, color, label in marks:
            if metrics[key] is not None:
                ax.axvline(metrics[key], color=color, ls="--", lw=1, label=f"{label} (step {metrics[key]})")
        ax.set_xscale("log")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_ylim(-0.02, 1.02)
    ax_acc.legend(loc="center left", fontsize=8)
    ax_loss.set_yscale("log")
    ax_loss.set_ylabel("cross-entropy loss (answer only)")
    ax_loss.legend(loc="lower left", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def plot_fourier(norms: np.ndarray, norms_init: np.ndarray, keys: list[int], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = np.arange(len(norms))
    fig, ax = plt.subplots(figsize=(11, 3.6))
    ax.bar(k, norms, color="tab:purple", label="trained")
    ax.plot(k, norms_init, color="grey", lw=1, label="at init")
    for f in sorted(keys, key=lambda f: -norms[f])[:10]:  # the strongest labelled, the rest in the JSON
        ax.annotate(str(f), (f, norms[f]), ha="center", va="bottom", fontsize=8)
    ax.set_xlabel("frequency k (the component cos / sin of 2 pi k n / p over the number tokens n)")
    ax.set_ylabel("norm of the component of wte")
    ax.set_xlim(-0.8, len(norms) - 0.2)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def run(
    tier, impl: str, s: GrokSettings, out, log=print, progress=True, stop_after=None, dtype=np.float32
) -> dict:
    """Trains, then writes grok-curves.png, grok-fourier.png and grok-metrics.json into out."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    log(f"model: {impl} tier, {s.config()}, {num_params(s.config()):,} parameters")
    log(f"data: (a + b) mod {s.p}, {s.train_frac:.0%} of {s.p * s.p} pairs for training")
    history, model, wte_init = train(tier, s, log, progress, stop_after, dtype)
    norms = fourier_norms(model.state_dict()["wte.weight"], s.p)
    keys = key_frequencies(norms)
    metrics = {
        "impl": impl,
        "settings": asdict(s),
        "train_99_step": first_step(history, "train_acc"),
        "val_99_step": first_step(history, "val_acc"),
        "final_train_acc": history["train_acc"][-1],
        "final_val_acc": history["val_acc"][-1],
        "steps": history["step"][-1],
        "wall_s": history["time"][-1],
        "key_frequencies": keys,  # the fewest frequencies holding 90% of the embedding's energy
        "fourier_norms": norms.tolist(),
        "history": history,
    }
    paths = {"curves": out / "grok-curves.png", "fourier": out / "grok-fourier.png"}
    title = f"(a + b) mod {s.p}, {s.train_frac:.0%} of pairs for training, {impl} tier"
    plot_curves(history, metrics, paths["curves"], title)
    fourier_title = (
        f"Fourier components of wte after {metrics['steps']} steps: 90% of the non-constant energy in "
        f"{len(keys)} of {s.p // 2} frequencies"
    )
    plot_fourier(norms, fourier_norms(wte_init, s.p), keys, paths["fourier"], fourier_title)
    paths["metrics"] = out / "grok-metrics.json"
    paths["metrics"].write_text(json.dumps(metrics, indent=1))
    return {"metrics": metrics, "paths": paths}


# ---- command line: `python transformer.py grok` ----


def add_arguments(g) -> None:
    d = GrokSettings()
    count, nonneg = at_least(1), at_least(0)
    g.add_argument("--p", type=at_least(2), default=d.p, help=f"the modulus (default {d.p})")
    g.add_argument(
        "--train-frac", type=fraction, default=d.train_frac, help="share of the p*p pairs trained on"
    )
    g.add_argument("--steps", type=count, default=d.steps, help=f"full-batch AdamW steps (default {d.steps})")
    g.add_argument("--lr", type=positive, default=d.lr, help=f"learning rate after warmup (default {d.lr})")
    g.add_argument("--warmup-steps", type=nonneg, default=d.warmup_steps, help="linear warmup steps")
    g.add_argument(
        "--weight-decay", type=at_least(0.0, float), default=d.weight_decay, help="AdamW weight decay"
    )
    g.add_argument("--n-layer", type=count, default=d.n_layer)
    g.add_argument("--n-head", type=count, default=d.n_head)
    g.add_argument("--n-embd", type=count, default=d.n_embd)
    g.add_argument("--eval-interval", type=count, default=d.eval_interval, help="steps between evaluations")
    g.add_argument("--seed", type=nonneg, default=d.seed, help="seed of the init and the split")
    g.add_argument(
        "--stop-after", type=nonneg, default=None, help="stop this many steps after val acc hits 99%%"
    )
    g.add_argument("--out", default="out/grok", help="folder for the figures and metrics (default out/grok/)")


def memory_needed(s: GrokSettings) -> int:
    """Bytes a full-batch step takes, roughly: every pair's logits, their gradient and the softmax
    (3 x (p*p, 3, V) floats) and about 30 activations of width C per layer and position, in float32."""
    pairs, V, C = s.p * s.p, s.p + 1, s.n_embd
    return 4 * pairs * 3 * (3 * V + 30 * C * s.n_layer)


def check_memory(s: GrokSettings) -> None:
    """Refuses a run that cannot fit in this machine's memory, before anything is allocated (a --p of
    10,000 asks for about 10^13 bytes: full batch means every pair at once)."""
    need = memory_needed(s)
    have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if need > have:
        raise ConfigError(
            f"--p {s.p} needs about {need / 2**30:,.1f} GiB for a full-batch step (all {s.p * s.p:,} pairs at "
            f"once); this machine has {have / 2**30:,.1f} GiB: choose a smaller --p or --n-embd"
        )


def main(args, tier) -> int:
    from tqdm import tqdm

    s = GrokSettings(**{f.name: getattr(args, f.name) for f in fields(GrokSettings)})
    s.config(), s.adamw()  # a config that does not divide (n_embd % n_head) is said before any work
    check_memory(s)
    check_writable_folder(args.out)
    result = run(tier, args.impl, s, args.out, tqdm.write, True, args.stop_after, np.dtype(args.dtype))
    m = result["metrics"]
    print(f"training accuracy first >= 99% at step {m['train_99_step']}")
    print(f"validation accuracy first >= 99% at step {m['val_99_step']}")
    print(
        f"final: train acc {m['final_train_acc']:.4f}, val acc {m['final_val_acc']:.4f} after {m['steps']} steps"
    )
    print(f"wall time {m['wall_s']:.0f} s; key frequencies of the embedding: {m['key_frequencies']}")
    for kind, path in result["paths"].items():
        print(f"{kind}: {path}")
    return 0
