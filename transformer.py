"""Train a GPT on Tiny Shakespeare with any tier, show that it learned, and sample from it.

python transformer.py                      # train the shakespeare config (numpy tier), then sample
python transformer.py sample --ckpt out/shakespeare-numpy.safetensors --prompt "ROMEO:"
python transformer.py eval --ckpt out/shakespeare-numpy.safetensors
python transformer.py attention "ROMEO: But soft" --ckpt out/shakespeare-numpy.safetensors
python transformer.py grok                 # grokking on modular addition (C tier)
python transformer.py question params      # the curriculum's questions (docs/questions.md)
"""

import argparse
import dataclasses
import importlib
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from shared.checkpoint import load_checkpoint
from shared.config import PRESETS, get_config
from shared.data import CharDataset, batch_rng, estimate_loss, get_batch, shakespeare_path
from shared.errors import GPTError
from shared.params import init_state_dict, num_params
from shared.schedule import AdamWConfig, lr_at
from shared.tokenizer import CharTokenizer

# --impl name -> the tier's module (each offers load / from_state_dict, shared/tier.py)
TIERS = {"numpy": "impl_numpy", "c": "impl_c", "tinygrad": "impl_tinygrad"}
SUBCOMMANDS = ("train", "sample", "eval", "attention", "grok", "question")


def tier_module(name: str):
    return importlib.import_module(TIERS[name])


@dataclass
class TrainSettings:
    # nanoGPT's shakespeare_char CPU setting (README: batch 12, block 64, 4x4x128, 2000 iters), with a
    # peak lr of 3e-3 where nanoGPT has 1e-3: measured on the numpy tier, 1e-3 reaches val loss 1.897,
    # 2e-3 1.797 and 3e-3 1.766 (nanoGPT's published figure is 1.88)
    steps: int = 2000
    batch_size: int = 12
    lr: float = 3e-3
    min_lr: float = 3e-4
    warmup_steps: int = 100
    decay_steps: int = 2000
    eval_interval: int = 250
    eval_iters: int = 20
    seed: int = 1337
    adamw: AdamWConfig = field(default_factory=lambda: AdamWConfig(beta2=0.99))  # nanoGPT's for this run

    def to_json(self) -> str:
        d = dataclasses.asdict(self)
        d.pop("adamw")  # the optimizer state carries its own settings
        return json.dumps(d)

    @classmethod
    def from_json(cls, s: str, adamw: AdamWConfig | None) -> "TrainSettings":
        return cls(**json.loads(s), **({} if adamw is None else {"adamw": adamw}))


def unigram_baseline(train: np.ndarray, val: np.ndarray, vocab_size: int) -> float:
    """Cross-entropy of the validation text under the training text's character frequencies
    (add-one smoothed): what a model learns with no context at all."""
    counts = np.bincount(train, minlength=vocab_size) + 1.0
    logp = np.log(counts / counts.sum())
    return float(-logp[val].mean())


def train(model, dataset: CharDataset, s: TrainSettings, ckpt_path=None, log=print, progress=True):
    """Trains from model.step up to s.steps. Batches and the learning rate are pure functions of the
    step, so a run resumed from a checkpoint continues exactly as if it had not stopped. With ckpt_path,
    a training checkpoint is written (atomically) at every evaluation and at the end."""
    from tqdm import tqdm

    T = model.config.block_size
    history = {"step": [], "train": [], "val": [], "time": []}
    metadata = {"tokenizer": dataset.tokenizer.to_json(), "train_settings": s.to_json()}
    start = time.perf_counter()
    bar = tqdm(
        range(model.step, s.steps), initial=model.step, total=s.steps, disable=not progress, unit="step"
    )
    for step in bar:
        if step % s.eval_interval == 0:
            _evaluate(model, dataset, s, step, history, time.perf_counter() - start, log)
            if ckpt_path is not None and step > 0:
                model.save(ckpt_path, metadata)
        lr = lr_at(step, s.lr, s.min_lr, s.warmup_steps, s.decay_steps)
        x, y = get_batch(dataset.train, s.batch_size, T, batch_rng(s.seed, step))
        loss = model.train_step(x, y, lr)
        if not math.isfinite(loss):
            raise FloatingPointError(f"loss is {loss} at step {step}; lower --lr")
        bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.1e}")
    bar.close()
    _evaluate(model, dataset, s, model.step, history, time.perf_counter() - start, log)
    if ckpt_path is not None:
        model.save(ckpt_path, metadata)
    return history


def _evaluate(model, dataset, s, step, history, elapsed, log):
    train_loss = estimate_loss(model, dataset.train, s.batch_size, s.eval_iters, s.seed + 1)
    val_loss = estimate_loss(model, dataset.val, s.batch_size, s.eval_iters, s.seed + 2)
    for key, value in (("step", step), ("train", train_loss), ("val", val_loss), ("time", elapsed)):
        history[key].append(value)
    log(f"step {step:5d}: train loss {train_loss:.4f}, val loss {val_loss:.4f} ({elapsed:.0f} s)")


def sample_text(
    model, tokenizer: CharTokenizer, prompt: str, tokens: int, temperature: float, top_k, seed: int
):
    idx = tokenizer.encode(prompt or "\n")[None, -model.config.block_size :]
    out = model.generate(idx, tokens, temperature=temperature, top_k=top_k, seed=seed)
    return tokenizer.decode(out[0])


# ---- command line ----


def cmd_train(args):
    """Trains with each tier named by --impl in turn; with several, draws their loss curves together."""
    if args.resume and len(args.impl) > 1:
        raise GPTError("--resume continues one run: name one --impl")
    runs = {impl: train_one(args, impl) for impl in args.impl}
    if len(runs) > 1 or args.curves:
        path = Path(args.out) / f"{args.config}-curves.png"
        write_curves(runs, path)
        print(f"\nloss curves: {path} (data: {path.with_suffix('.json')})")
        for impl, r in runs.items():
            print(f"  {impl:9s} validation loss {r['val']:.4f}, {r['wall']:.0f} s")
    return 0


def write_curves(runs: dict, path: Path):
    """Training and validation loss of each run against step and against wall-clock time, one color per
    tier (train dashed, validation solid), as a PNG, and the numbers as JSON beside it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".json").write_text(json.dumps(runs, indent=1))
    colors = ["#0072B2", "#E69F00", "#009E73", "#CC79A7"]  # colorblind-safe (Okabe-Ito)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for (impl, r), color in zip(runs.items(), colors):
        h = r["history"]
        for ax, x in zip(axes, (h["step"], h["time"])):
            ax.plot(x, h["train"], "--", color=color, alpha=0.7)
            ax.plot(x, h["val"], "-", color=color, label=f"{impl} (val {r['val']:.3f}, {r['wall']:.0f} s)")
    axes[0].set_xlabel("step")
    axes[1].set_xlabel("wall-clock time (s)")
    axes[0].set_ylabel("loss (dashed: train, solid: validation)")
    axes[1].legend()
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle("Tiny Shakespeare, one line per tier")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def train_one(args, impl: str) -> dict:
    text_path = shakespeare_path(args.data)
    text = text_path.read_text(encoding="utf-8")
    tier = tier_module(impl)
    dtype = np.dtype(args.dtype)
    if args.resume:
        # the run's own settings, tokenizer and AdamW state come from the checkpoint; --steps may extend it
        ckpt = load_checkpoint(args.resume)
        if "train_settings" not in ckpt.metadata or ckpt.optimizer is None:
            raise GPTError(f"{args.resume} is not a training checkpoint saved by transformer.py")
        s = TrainSettings.from_json(ckpt.metadata["train_settings"], ckpt.optimizer.adamw)
        if args.steps is not None:
            s = dataclasses.replace(s, steps=args.steps)
        dataset = CharDataset(text, CharTokenizer.from_json(ckpt.metadata["tokenizer"]))
        model = tier.load(args.resume, dtype=dtype)
        out = Path(args.resume)
        print(f"resumed {args.resume} at step {model.step} of {s.steps}")
    else:
        steps = 2000 if args.steps is None else args.steps
        s = TrainSettings(
            steps=steps,
            batch_size=args.batch_size,
            lr=args.lr,
            min_lr=args.lr / 10,
            warmup_steps=min(100, steps // 10),
            decay_steps=steps,
            eval_interval=args.eval_interval,
            eval_iters=args.eval_iters,
            seed=args.seed,
        )
        dataset = CharDataset(text)
        config = get_config(args.config, vocab_size=dataset.tokenizer.vocab_size)
        model = tier.from_state_dict(config, init_state_dict(config, args.seed), dtype=dtype, adamw=s.adamw)
        out = Path(args.out) / f"{args.config}-{impl}.safetensors"
    config = model.config
    print(f"data: {text_path} ({len(dataset.train):,} train / {len(dataset.val):,} val characters)")
    print(f"model: {impl} tier, {dtype}, {config}, {num_params(config):,} parameters")
    if args.verbose:
        print(f"settings: {s}")
    start = time.perf_counter()
    from tqdm import tqdm

    history = train(model, dataset, s, out, log=tqdm.write)
    wall = time.perf_counter() - start
    V = config.vocab_size
    val = estimate_loss(model, dataset.val, s.batch_size, args.final_eval_iters, s.seed + 3)
    uniform, unigram = math.log(V), unigram_baseline(dataset.train, dataset.val, V)
    print(
        f"\ntrained {s.steps} steps in {wall:.0f} s ({1000 * wall / max(1, s.steps - history['step'][0]):.0f} ms/step)"
    )
    print(f"checkpoint: {out}")
    print(
        f"validation loss {val:.4f} ({args.final_eval_iters} batches of {s.batch_size}x{config.block_size})"
    )
    print(f"  uniform baseline ln(V) = {uniform:.4f}   unigram baseline = {unigram:.4f}")
    verdict = "learned" if val < unigram else "did NOT beat the unigram baseline"
    print(f"  {verdict}: {unigram - val:+.4f} nats below unigram, {uniform - val:+.4f} below uniform")
    if args.sample_tokens:
        print("\n--- sample ---")
        print(sample_text(model, dataset.tokenizer, "\n", args.sample_tokens, 0.8, None, args.seed))
    return {"history": history, "val": val, "wall": wall}


def _load_for_use(args):
    ckpt = load_checkpoint(args.ckpt)
    if "tokenizer" not in ckpt.metadata:
        raise GPTError(f"{args.ckpt} has no tokenizer in its metadata; was it saved by transformer.py?")
    tokenizer = CharTokenizer.from_json(ckpt.metadata["tokenizer"])
    model = tier_module(args.impl).from_state_dict(ckpt.config, ckpt.state, dtype=np.dtype(args.dtype))
    return model, tokenizer


def cmd_sample(args):
    model, tokenizer = _load_for_use(args)
    print(sample_text(model, tokenizer, args.prompt, args.tokens, args.temperature, args.top_k, args.seed))
    return 0


def cmd_eval(args):
    model, tokenizer = _load_for_use(args)
    dataset = CharDataset(shakespeare_path(args.data).read_text(encoding="utf-8"), tokenizer)
    V = model.config.vocab_size
    for split in ("train", "val"):
        loss = estimate_loss(model, dataset.split(split), args.batch_size, args.iters, 1000)
        print(f"{split} loss {loss:.4f}")
    print(
        f"uniform baseline {math.log(V):.4f}, unigram baseline {unigram_baseline(dataset.train, dataset.val, V):.4f}"
    )
    return 0


def cmd_attention(args):
    from viz.attention import write_attention

    model, tokenizer = _load_for_use(args)
    title = f"{Path(args.ckpt).name}, {args.impl} tier"
    paths = write_attention(model, tokenizer, args.sentence, args.out, args.layer, args.head, title)
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0


def cmd_grok(args):
    from experiments.grok import main

    return main(args, tier_module(args.impl))


def cmd_question(args):
    from experiments.questions import main

    return main(args, tier_module)


def build_parser():
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, prog="transformer.py"
    )
    sub = p.add_subparsers(dest="command")

    def common(q, impl="c"):
        q.add_argument(
            "--impl", choices=list(TIERS), default=impl, help=f"which tier computes (default: {impl})"
        )
        q.add_argument("--dtype", choices=["float32", "float64"], default="float32", help="parameter dtype")
        q.add_argument("-v", "--verbose", action="store_true", help="print more detail")

    t = sub.add_parser("train", help="train on Tiny Shakespeare (the default command)")
    t.add_argument(
        "--impl",
        nargs="+",
        choices=list(TIERS),
        default=["c"],
        help="the tier that trains (default: c, the fastest); several train in turn, and their loss curves "
        "are drawn together in OUT/CONFIG-curves.png",
    )
    t.add_argument("--dtype", choices=["float32", "float64"], default="float32", help="parameter dtype")
    t.add_argument("-v", "--verbose", action="store_true", help="print more detail")
    t.add_argument("--curves", action="store_true", help="draw the loss curves for a single tier too")
    t.add_argument("--config", choices=list(PRESETS), default="shakespeare", help="model size preset")
    t.add_argument(
        "--data",
        help="path to tinyshakespeare.txt or a folder holding it (else $TINYSHAKESPEARE, the cache, a download)",
    )
    t.add_argument(
        "--steps", type=int, default=None, help="training steps (default 2000; with --resume, the run's own)"
    )
    t.add_argument("--batch-size", type=int, default=12, help="sequences per step (default 12)")
    t.add_argument(
        "--lr", type=float, default=3e-3, help="peak learning rate (default 3e-3); cosine decay to lr/10"
    )
    t.add_argument("--eval-interval", type=int, default=250, help="steps between evaluations")
    t.add_argument("--eval-iters", type=int, default=20, help="batches per evaluation")
    t.add_argument("--final-eval-iters", type=int, default=200, help="batches for the final validation loss")
    t.add_argument("--seed", type=int, default=1337, help="seed of the init and the batches")
    t.add_argument("--out", default="out", help="folder for the checkpoint (default out/)")
    t.add_argument(
        "--resume", help="training checkpoint to continue from, with its own settings (updated in place)"
    )
    t.add_argument("--sample-tokens", type=int, default=500, help="characters to sample at the end (0: none)")
    t.set_defaults(func=cmd_train)

    s = sub.add_parser("sample", help="generate text from a checkpoint")
    common(s)
    s.add_argument("--ckpt", required=True, help="checkpoint saved by `train`")
    s.add_argument("--prompt", default="\n", help="text to continue")
    s.add_argument("--tokens", type=int, default=500, help="characters to generate")
    s.add_argument("--temperature", type=float, default=0.8, help="0 is greedy")
    s.add_argument("--top-k", type=int, default=None, help="sample among the k most likely only")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=cmd_sample)

    e = sub.add_parser("eval", help="train and validation loss of a checkpoint, with the baselines")
    common(e)
    e.add_argument("--ckpt", required=True, help="checkpoint saved by `train`")
    e.add_argument(
        "--data", help="path to tinyshakespeare.txt (else $TINYSHAKESPEARE, the cache, a download)"
    )
    e.add_argument("--iters", type=int, default=200, help="batches per split")
    e.add_argument("--batch-size", type=int, default=12)
    e.set_defaults(func=cmd_eval)

    a = sub.add_parser("attention", help="pictures of every head's attention over a sentence (PNG, HTML)")
    common(a, impl="c")  # the fastest tier
    a.add_argument("sentence", help="the text to look at (its last block_size tokens when longer)")
    a.add_argument("--ckpt", required=True, help="checkpoint saved by `train`")
    a.add_argument("--out", default="out/attention", help="folder for the files (default out/attention/)")
    a.add_argument("--layer", type=int, default=None, help="the head shown alone: its layer (default: last)")
    a.add_argument("--head", type=int, default=0, help="the head shown alone (default 0)")
    a.set_defaults(func=cmd_attention)

    from experiments.grok import add_arguments

    g = sub.add_parser("grok", help="grokking: modular addition, memorised first, generalised much later")
    common(g, impl="c")  # the fastest tier
    add_arguments(g)
    g.set_defaults(func=cmd_grok)

    from experiments.questions import add_arguments as add_question_arguments

    q = sub.add_parser("question", help="the curriculum's questions, each with numbers and a figure")
    add_question_arguments(q)
    q.set_defaults(func=cmd_question)
    return p


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in SUBCOMMANDS and argv[0] not in ("-h", "--help")):
        argv.insert(0, "train")  # `python transformer.py --steps 100` trains
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except GPTError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
