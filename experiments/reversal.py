# Sequence reversal: `python transformer.py question reversal` trains the spec's GPT on sequences
# "a1 .. an | an .. a1" (n random tokens, a separator, the same tokens reversed) with next-token
# prediction at every position, then measures the validation loss at each position. Before the
# separator the next token is a fresh random draw: nothing in the context says which, so the best any
# model can do is the uniform distribution, loss log(alphabet). After it, each target is a copy of a
# token already in the context, at a position fixed by the target's own position, and the loss falls
# to near 0.
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from shared.config import GPTConfig
from shared.errors import ConfigError
from shared.params import init_state_dict, num_params
from shared.schedule import AdamWConfig, lr_at


@dataclass(frozen=True)
class ReversalSettings:
    # Measured with the C tier on 2 shared cores (docs/questions.md, "Does the model learn to reverse a
    # sequence?"): 71 s; the second half's validation loss is below 0.05 from step 180 and ends at 0.0011
    # (accuracy 100%), the first half's ends at 2.3030, log 10 = 2.3026.
    n: int = 8  # tokens before the separator (and after it)
    alphabet: int = 10  # tokens 0 .. alphabet-1 are the symbols, token `alphabet` is the separator
    steps: int = 1000
    batch_size: int = 64  # fresh every step, out of alphabet^n sequences: repeats are rare
    lr: float = 1e-3  # after a linear warmup, cosine down to lr / 10 at the last step
    warmup_steps: int = 50
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 64
    val_size: int = 2000  # held-out sequences, drawn from their own generator
    eval_interval: int = 10
    seed: int = 0

    def __post_init__(self):
        ok = (
            self.n >= 2
            and self.alphabet >= 2
            and self.steps >= 1
            and self.batch_size >= 1
            and self.lr > 0.0
            and self.warmup_steps >= 0
            and self.val_size >= 1
            and self.eval_interval >= 1
        )
        if not ok:
            raise ConfigError(
                f"reversal settings out of range: {self} (n >= 2, alphabet >= 2, steps, batch_size, "
                f"val_size, eval_interval >= 1, lr > 0)"
            )

    @property
    def separator(self) -> int:
        return self.alphabet

    def config(self) -> GPTConfig:
        # a sequence has 2n + 1 tokens; the model reads the first 2n and predicts the last 2n
        return GPTConfig(
            self.n_layer, self.n_head, self.n_embd, block_size=2 * self.n, vocab_size=self.alphabet + 1
        )


def reversal_sequences(rng: np.random.Generator, count: int, n: int, alphabet: int) -> np.ndarray:
    """count sequences "a1 .. an | an .. a1", (count, 2n + 1), the a's uniform over 0 .. alphabet-1 and
    the separator the token `alphabet`."""
    a = rng.integers(0, alphabet, size=(count, n))
    sep = np.full((count, 1), alphabet)
    return np.concatenate([a, sep, a[:, ::-1]], axis=1).astype(np.int64)


def inputs_targets(seqs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Next-token prediction at every position: input position t is asked for token t + 1."""
    return seqs[:, :-1], seqs[:, 1:]


def target_names(n: int) -> list[str]:
    """What input position t = 0 .. 2n-1 is asked for: a2 .. an (random), the separator, an .. a1 (copies)."""
    return [f"a{t + 2}" for t in range(n - 1)] + ["|"] + [f"a{n - i}" for i in range(n)]


def halves(n: int) -> tuple[slice, int, slice]:
    """The input positions whose targets are random (the first half), the separator's, and those whose
    targets are copies (the second half)."""
    return slice(0, n - 1), n - 1, slice(n, 2 * n)


def per_position(model, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mean cross-entropy and the accuracy (argmax over the whole vocabulary) at each input position,
    from the logits: the model's own loss is the mean over all positions."""
    logits, _ = model.forward(x, y)  # (B, T, V)
    z = logits.astype(np.float64)
    z = z - z.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))  # (B, T, V)
    nll = -np.take_along_axis(logp, y[..., None], axis=-1)[..., 0]  # (B, T)
    return nll.mean(0), (logits.argmax(-1) == y).mean(0)


def train(tier, s: ReversalSettings, log=print, progress=True):
    """Trains from the spec's init on a fresh batch every step; every eval_interval steps, the validation
    loss and accuracy at each position. Returns the history and the model."""
    from tqdm import tqdm

    config = s.config()
    model = tier.from_state_dict(config, init_state_dict(config, s.seed), adamw=AdamWConfig())
    rng = np.random.default_rng(s.seed)
    # its own generator, so the validation set does not depend on steps or batch_size
    x_val, y_val = inputs_targets(
        reversal_sequences(np.random.default_rng([s.seed, 1]), s.val_size, s.n, s.alphabet)
    )
    first, sep, second = halves(s.n)
    keys = ("step", "train_loss", "first_loss", "sep_loss", "second_loss", "first_acc", "second_acc", "time")
    history = {k: [] for k in keys}
    history["per_position_loss"], history["per_position_acc"] = [], []
    train_loss = float("nan")
    start = time.perf_counter()
    bar = tqdm(range(s.steps + 1), disable=not progress, unit="step")
    for step in bar:
        if step % s.eval_interval == 0 or step == s.steps:
            loss, acc = per_position(model, x_val, y_val)
            row = (
                step,
                train_loss,
                float(loss[first].mean()),
                float(loss[sep]),
                float(loss[second].mean()),
                float(acc[first].mean()),
                float(acc[second].mean()),
                time.perf_counter() - start,
            )
            for key, value in zip(keys, row):
                history[key].append(value)
            history["per_position_loss"].append(loss.tolist())
            history["per_position_acc"].append(acc.tolist())
            bar.set_postfix(first=f"{row[2]:.3f}", second=f"{row[4]:.3f}")
            if step % (10 * s.eval_interval) == 0 or step == s.steps:
                log(
                    f"step {step:5d}: val loss first half {row[2]:.4f}, second half {row[4]:.4f} "
                    f"(acc {row[5]:.3f}, {row[6]:.3f}) ({row[-1]:.0f} s)"
                )
        if step == s.steps:
            break
        x, y = inputs_targets(reversal_sequences(rng, s.batch_size, s.n, s.alphabet))
        train_loss = model.train_step(x, y, lr_at(step, s.lr, s.lr / 10, s.warmup_steps, s.steps))
        if not math.isfinite(train_loss):
            raise FloatingPointError(f"loss is {train_loss} at step {step}; lower the learning rate")
    bar.close()
    return history, model


def plot_reversal(history: dict, s: ReversalSettings, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    n, uniform = s.n, math.log(s.alphabet)
    second = halves(n)[2]
    loss = np.array(history["per_position_loss"])  # (evals, 2n)
    steps = np.array(history["step"])
    t = np.arange(2 * n)
    colors = ["tab:red"] * (n - 1) + ["tab:grey"] + ["tab:blue"] * n
    fig, (ax_pos, ax_step) = plt.subplots(1, 2, figsize=(12, 4.8))

    # log y: the second half's loss is thousands of times below the first half's
    floor = 1e-7
    ax_pos.bar(t, np.maximum(loss[-1], floor), color=colors)
    for i, value in enumerate(loss[-1]):
        ax_pos.annotate(
            f"{value:.3f}" if value >= 0.01 else f"{value:.1e}",
            (i, max(value, floor) * 1.15),
            ha="center",
            va="bottom",
            fontsize=6,
            rotation=90,
        )
    ax_pos.axhline(uniform, color="k", ls=":")
    ax_pos.axvline(n - 0.5, color="k", lw=1)
    ax_pos.set_yscale("log")
    ax_pos.set_ylim(floor, 40)
    ax_pos.set_xticks(t, [f"{i}\n{name}" for i, name in zip(t, target_names(n))], fontsize=8)
    ax_pos.set_xlabel("input position t, and the token it is asked for (| the separator)")
    ax_pos.set_ylabel(f"validation loss at step {steps[-1]} (nats)")
    handles = [
        Patch(color="tab:red", label="a fresh random token (first half)"),
        Patch(color="tab:grey", label="the separator"),
        Patch(color="tab:blue", label="a copy of a token in context (second half)"),
        plt.Line2D(
            [], [], color="k", ls=":", label=f"uniform over the alphabet, log {s.alphabet} = {uniform:.3f}"
        ),
    ]
    ax_pos.legend(handles=handles, fontsize=7, loc="upper right")

    keep = steps > 0  # a log axis has no room for step 0
    shades = plt.cm.Blues(np.linspace(0.35, 0.95, n))
    for i, p in enumerate(range(second.start, second.stop)):
        ax_step.plot(steps[keep], loss[keep, p], color=shades[i], lw=0.8)
    ax_step.plot(
        [], [], color=shades[n // 2], lw=0.8, label=f"each second-half position (t {n} .. {2 * n - 1})"
    )
    ax_step.plot(
        steps[keep], np.array(history["first_loss"])[keep], color="tab:red", lw=2, label="first half, mean"
    )
    ax_step.plot(
        steps[keep], np.array(history["second_loss"])[keep], color="tab:blue", lw=2, label="second half, mean"
    )
    ax_step.axhline(uniform, color="k", ls=":", label=f"log {s.alphabet}")
    ax_step.set_xscale("log")
    ax_step.set_yscale("log")
    ax_step.set_xlabel("step")
    ax_step.set_ylabel("validation loss (nats)")
    ax_step.grid(alpha=0.3, which="both")
    ax_step.legend(fontsize=8, loc="lower left")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def run_reversal(
    tier, out: Path, settings: ReversalSettings = ReversalSettings(), log=print, progress=True
) -> dict:
    """Trains, logs the per-position table, writes questions-reversal.png into out."""
    s = settings
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    log(f"model: {s.config()}, {num_params(s.config()):,} parameters")
    log(
        f"data: {s.n} random tokens of {s.alphabet}, a separator, the same reversed; "
        f"{s.steps} steps of {s.batch_size} fresh sequences, {s.val_size} held out"
    )
    history, _ = train(tier, s, log, progress)
    loss, acc = history["per_position_loss"][-1], history["per_position_acc"][-1]
    uniform = math.log(s.alphabet)
    log(f"validation at step {history['step'][-1]}, per position (log {s.alphabet} = {uniform:.4f}):")
    log(f"{'t':>3} {'input':>5} {'target':>6} {'loss':>7} {'acc':>6}")
    inputs = [f"a{i + 1}" for i in range(s.n)] + ["|"] + [f"a{s.n - i}" for i in range(s.n - 1)]
    for t, (name_in, name_out) in enumerate(zip(inputs, target_names(s.n))):
        log(f"{t:>3} {name_in:>5} {name_out:>6} {loss[t]:>7.4f} {acc[t]:>6.3f}")
    log(
        f"first half (t 0..{s.n - 2}): loss {history['first_loss'][-1]:.4f}, "
        f"acc {history['first_acc'][-1]:.3f}; "
        f"second half (t {s.n}..{2 * s.n - 1}): loss {history['second_loss'][-1]:.4f}, "
        f"acc {history['second_acc'][-1]:.3f}"
    )
    path = out / "questions-reversal.png"
    title = (
        f"Reversing {s.n} random tokens of {s.alphabet}: the second half is learned, the first half stays at "
        f"log {s.alphabet}"
    )
    plot_reversal(history, s, path, title)
    return {
        "per_position_loss": loss,
        "per_position_acc": acc,
        "history": history,
        "settings": asdict(s),
        "wall_s": history["time"][-1],
        "paths": {"figure": path},
    }
