# The curriculum's questions (docs/questions.md): `python transformer.py question NAME` answers one
# with numbers printed to the console and a figure written to --out.
#   params  the parameter count as a function of n_layer and n_embd, checked against every tier
#   scale   why attention scores are divided by sqrt(d_k): the variance of q.k and the softmax it feeds
#   scale-training, residual, positions   training with one piece of the model taken out (ablations.py)
#   reversal   a sequence-reversal task: the second half is predictable, the first is not (reversal.py)
#   rnn, qkv, shared-weights, words   each in a module of its own (MODULES below)
import dataclasses
import importlib
from pathlib import Path

import numpy as np

from shared.cli import at_least, check_writable_folder, positive
from shared.config import GPTConfig
from shared.errors import ConfigError
from shared.params import init_state_dict, num_params

# the questions whose experiment is a module of its own, each with
# run_question(args, tier_module, out, log) -> {"paths": {kind: path}, ...}
MODULES = {
    "rnn": "experiments.rnn",  # the transformer against an LSTM of equal size
    "qkv": "experiments.qkv",  # Q, K, V's shapes, and other scoring functions than q . k
    "shared-weights": "experiments.shared_weights",  # one set of block weights for every layer
    "words": "experiments.words",  # word-level tokens against characters and BPE
}
QUESTIONS = ("params", "scale", "scale-training", "residual", "positions", "reversal", *MODULES)
TRAINING = ("scale-training", "residual", "positions", "reversal", *MODULES)  # these train models

# the shakespeare preset's vocabulary and context: the sizes the plotted counts use
V, T = 65, 64
CHECK_LAYERS = (1, 2, 4)
CHECK_EMBD = (16, 32, 64)
PLOT_LAYERS = (1, 2, 4, 8, 12)
PLOT_EMBD = (16, 32, 64, 128, 256, 512, 768, 1024)


def closed_form(vocab_size: int, block_size: int, n_layer: int, n_embd: int) -> int:
    """SPEC.md "Parameters", summed by hand from shared/params.py's shapes:
    wte V*C + wpe T*C; per block ln_1 and ln_2 2C each, c_attn C*3C + 3C, attn.c_proj C*C + C,
    mlp.c_fc C*4C + 4C, mlp.c_proj 4C*C + C, which is 12 C^2 + 13 C; and ln_f 2C."""
    C = n_embd
    return vocab_size * C + block_size * C + n_layer * (12 * C * C + 13 * C) + 2 * C


def tier_count(tier, config: GPTConfig) -> int:
    """The parameters a tier actually holds: the sizes of its state_dict after loading the spec's init."""
    model = tier.from_state_dict(config, init_state_dict(config))
    return sum(int(a.size) for a in model.state_dict().values())


def check_params(tiers: dict) -> list[dict]:
    """One row per config of the check grid: the closed form, shared/params.py's count, each tier's."""
    rows = []
    for n_layer in CHECK_LAYERS:
        for n_embd in CHECK_EMBD:
            config = GPTConfig(n_layer=n_layer, n_head=4, n_embd=n_embd, block_size=T, vocab_size=V)
            row = {"n_layer": n_layer, "n_embd": n_embd, "closed_form": closed_form(V, T, n_layer, n_embd)}
            row["shared"] = num_params(config)
            row.update({name: tier_count(tier, config) for name, tier in tiers.items()})
            rows.append(row)
    return rows


def plot_params(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5))
    embd = np.array(PLOT_EMBD)
    for n_layer in PLOT_LAYERS:
        counts = [closed_form(V, T, n_layer, c) for c in PLOT_EMBD]
        ax.plot(embd, counts, marker=".", label=f"n_layer = {n_layer}")
    embeddings = (V + T) * embd  # what n_layer = 0 would leave: the two tables, linear in C
    ax.plot(embd, embeddings, "k:", label="wte + wpe alone, (V + T) C")
    checked = [
        (r["n_embd"], r["closed_form"])
        for r in rows
        if all(r[k] == r["closed_form"] for k in r if k not in ("n_layer", "n_embd"))
    ]
    if checked:
        ax.scatter(
            *zip(*checked),
            s=60,
            facecolors="none",
            edgecolors="k",
            zorder=3,
            label="every tier's count, checked",
        )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("n_embd (C)")
    ax.set_ylabel("parameters")
    ax.set_title(f"V*C + T*C + L*(12 C^2 + 13 C) + 2C   (V = {V}, T = {T})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def measure_scale(
    d_ks=tuple(2**i for i in range(11)), n_keys: int = T, pairs: int = 20000, trials: int = 256, seed: int = 0
) -> dict:
    """For q, k with unit-variance independent entries: var(q.k) with and without 1/sqrt(d_k), and the
    softmax over n_keys such scores (one query against n_keys keys, as a row of the attention matrix):
    its entropy, its largest weight, and the size of its Jacobian diag(p) - p p^T, through which every
    gradient to q and k passes."""
    rng = np.random.default_rng(seed)
    out = {"d_k": list(d_ks), "n_keys": n_keys}
    for scaled in (False, True):
        tag = "scaled" if scaled else "raw"
        var, entropy, max_w, jac = [], [], [], []
        for d_k in d_ks:
            s = 1 / np.sqrt(d_k) if scaled else 1.0
            q, k = rng.standard_normal((2, pairs, d_k))
            var.append(float(np.var(np.sum(q * k, axis=-1) * s)))
            q = rng.standard_normal((trials, 1, d_k))
            k = rng.standard_normal((trials, n_keys, d_k))
            att = np.sum(q * k, axis=-1) * s  # (trials, n_keys): one query's scores
            att = np.exp(att - att.max(-1, keepdims=True))
            p = att / att.sum(-1, keepdims=True)
            entropy.append(float(np.mean(-np.sum(p * np.log(np.maximum(p, 1e-300)), axis=-1))))
            max_w.append(float(np.mean(p.max(-1))))
            J = np.einsum("ti,ij->tij", p, np.eye(n_keys)) - p[:, :, None] * p[:, None, :]
            jac.append(float(np.mean(np.linalg.norm(J, axis=(1, 2)))))
        out[tag] = {"var": var, "entropy": entropy, "max_weight": max_w, "jacobian_norm": jac}
    return out


def plot_scale(m: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = np.array(m["d_k"])
    fig, axes = plt.subplots(2, 2, figsize=(10, 7.5))
    panels = [
        ("var", "var(q . k)", "log"),
        ("entropy", f"softmax entropy over {m['n_keys']} keys (nats)", "linear"),
        ("max_weight", "largest softmax weight", "linear"),
        ("jacobian_norm", "|| d softmax / d scores ||_F", "log"),
    ]
    for ax, (key, label, yscale) in zip(axes.ravel(), panels):
        ax.plot(d, m["raw"][key], "o-", color="tab:red", label="q . k")
        ax.plot(d, m["scaled"][key], "o-", color="tab:blue", label="q . k / sqrt(d_k)")
        ax.set_xscale("log", base=2)
        ax.set_yscale(yscale)
        ax.set_xlabel("d_k (head size)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    axes[0, 0].plot(d, d, "k:", label="d_k")
    axes[0, 1].axhline(np.log(m["n_keys"]), color="k", ls=":", label=f"uniform, log {m['n_keys']}")
    for ax in axes.ravel():
        ax.legend(fontsize=8)
    fig.suptitle("q, k with unit-variance entries: unscaled scores grow with d_k and the softmax saturates")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run_params(tiers: dict, out: Path, log=print) -> dict:
    rows = check_params(tiers)
    names = ["shared", *tiers]
    log(f"closed form: V*C + T*C + n_layer*(12*C^2 + 13*C) + 2*C, checked with V = {V}, T = {T}, n_head = 4")
    log(f"{'n_layer':>7} {'n_embd':>6} {'closed form':>12} " + " ".join(f"{n:>10}" for n in names))
    for r in rows:
        marks = " ".join(f"{r[n]:>10,}" for n in names)
        log(f"{r['n_layer']:>7} {r['n_embd']:>6} {r['closed_form']:>12,} {marks}")
    mismatches = [r for r in rows if any(r[n] != r["closed_form"] for n in names)]
    gpt2 = closed_form(50257, 1024, 12, 768)
    log(f"{len(rows) - len(mismatches)} of {len(rows)} configs: every count equals the closed form")
    log(f"GPT-2 small (V 50257, T 1024, 12 layers, C 768): {gpt2:,} parameters by the closed form")
    path = out / "questions-params.png"
    plot_params(rows, path)
    return {"rows": rows, "mismatches": mismatches, "gpt2_small": gpt2, "paths": {"figure": path}}


def run_scale(out: Path, log=print) -> dict:
    m = measure_scale()
    log(f"one query against {m['n_keys']} keys; q, k entries standard normal")
    log(
        f"{'d_k':>5} {'var raw':>9} {'var scaled':>10} {'H raw':>6} {'H scaled':>8} {'max raw':>7} {'max scaled':>10} {'|J| raw':>8} {'|J| scaled':>10}"
    )
    for i, d_k in enumerate(m["d_k"]):
        raw, sc = m["raw"], m["scaled"]
        log(
            f"{d_k:>5} {raw['var'][i]:>9.2f} {sc['var'][i]:>10.3f} {raw['entropy'][i]:>6.2f} "
            f"{sc['entropy'][i]:>8.2f} {raw['max_weight'][i]:>7.3f} {sc['max_weight'][i]:>10.3f} "
            f"{raw['jacobian_norm'][i]:>8.3f} {sc['jacobian_norm'][i]:>10.3f}"
        )
    path = out / "questions-scale.png"
    plot_scale(m, path)
    return {"measured": m, "paths": {"figure": path}}


def add_arguments(q) -> None:
    q.add_argument("name", choices=QUESTIONS, help="which question: " + ", ".join(QUESTIONS))
    q.add_argument(
        "--impl",
        nargs="+",
        choices=["numpy", "c", "tinygrad"],
        help="the tiers whose counts `params` checks (default: all three); the tier the training "
        "questions train with (default: c, the fastest; rnn and qkv: numpy only, the engine their LSTM and "
        "scores are written on)",
    )
    q.add_argument("--out", default="out/questions", help="folder for the figures (default out/questions/)")
    q.add_argument(
        "--steps",
        type=at_least(1),
        help="training steps of each run (training questions; default: documented)",
    )
    q.add_argument(
        "--lr",
        type=positive,
        help="peak learning rate of every run (the training questions but reversal; default 3e-3)",
    )
    q.add_argument(
        "--data",
        help="tinyshakespeare.txt or a folder holding it (else $TINYSHAKESPEARE, the cache, a download)",
    )


def main(args, tier_module) -> int:
    out = check_writable_folder(args.out)  # --steps and --lr were checked as they were parsed
    if args.name == "params":
        result = run_params(
            {name: tier_module(name) for name in args.impl or ["numpy", "c", "tinygrad"]}, out
        )
        if result["mismatches"]:
            print(f"error: {len(result['mismatches'])} configs where a count differs from the closed form")
            return 1
    elif args.name == "scale":
        result = run_scale(out)
    else:
        if args.impl is not None and len(args.impl) > 1:
            raise ConfigError(f"question {args.name} trains with one tier; got --impl {' '.join(args.impl)}")
        if args.name in MODULES:
            from tqdm import tqdm

            module = importlib.import_module(MODULES[args.name])
            result = module.run_question(args, tier_module, out, log=tqdm.write)
        else:
            result = run_training_question(args, tier_module(args.impl[0] if args.impl else "c"), out)
    for kind, path in result["paths"].items():
        print(f"{kind}: {path}")
    return 0


def run_training_question(args, tier, out: Path) -> dict:
    from tqdm import tqdm

    if args.name == "reversal":
        from experiments.reversal import ReversalSettings, run_reversal

        s = (
            ReversalSettings()
            if args.steps is None
            else dataclasses.replace(ReversalSettings(), steps=args.steps)
        )
        return run_reversal(tier, out, s, log=tqdm.write)
    from experiments import ablations
    from shared.data import CharDataset, shakespeare_path

    dataset = CharDataset.from_file(shakespeare_path(args.data))
    return ablations.run(args.name, tier, dataset, out, ablations.settings_from_args(args), log=tqdm.write)
