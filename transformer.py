"""Train a GPT on Tiny Shakespeare with any tier, show that it learned, and sample from it; or run a
pretrained GPT-2 (a Hugging Face directory) in any tier.

python transformer.py                      # train the shakespeare config (C tier), then sample
python transformer.py --tokenizer bpe --vocab-size 1024   # the same on GPT-2's byte-level BPE
python transformer.py sample --ckpt out/shakespeare-c.safetensors --prompt "ROMEO:"
python transformer.py eval --ckpt out/shakespeare-c.safetensors
python transformer.py attention "ROMEO: But soft" --ckpt out/shakespeare-c.safetensors
python transformer.py sample --ckpt gpt2/ --prompt "Hello, I'm a language model,"   # GPT-2 itself
python transformer.py eval --ckpt gpt2/ --text some.txt   # perplexity of a text file
python transformer.py prepare --tokenizer bpe --vocab-size 4096 --data big.txt --out data/big
python transformer.py --tokens data/big    # train from token files of any size
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
from shared.cli import (
    CheckpointLock,
    Interrupt,
    Parser,
    at_least,
    check_output_file,
    check_writable_folder,
    positive,
)
from shared.config import PRESETS, get_config
from shared.data import (
    CharDataset,
    TokenDataset,
    batch_rng,
    estimate_loss,
    get_batch,
    prepare,
    shakespeare_path,
    token_counts,
)
from shared.errors import DivergenceError, GPTError
from shared.params import init_state_dict, num_params
from shared.schedule import AdamWConfig, lr_at
from shared.tokenizer import (
    KINDS,
    BPETokenizer,
    CharTokenizer,
    WordTokenizer,
    load_tokenizer,
    tokenizer_from_json,
)

# --impl name -> the tier's module (each offers load / from_state_dict, shared/tier.py)
TIERS = {"numpy": "impl_numpy", "c": "impl_c", "tinygrad": "impl_tinygrad"}
SUBCOMMANDS = ("train", "prepare", "sample", "eval", "attention", "grok", "question")


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
    def from_json(cls, s: str, adamw: AdamWConfig | None, source: str = "train_settings") -> "TrainSettings":
        """The settings a checkpoint stores, checked as the command line checks them (MINIMA)."""
        try:
            d = json.loads(s)
        except (json.JSONDecodeError, RecursionError) as e:
            raise GPTError(f"{source}: not valid JSON ({e})") from None
        names = [f.name for f in dataclasses.fields(cls) if f.name != "adamw"]
        if not isinstance(d, dict) or sorted(d) != sorted(names):
            raise GPTError(f"{source}: must be a JSON object with exactly the keys {', '.join(names)}")
        for name in names:
            value, low = d[name], MINIMA[name]
            number = int if isinstance(low, int) else (int, float)
            if isinstance(value, bool) or not isinstance(value, number):
                raise GPTError(
                    f"{source}: {name} must be {'an integer' if number is int else 'a number'}, got {value!r}"
                )
            if not (math.isfinite(value) and (value > low if name == "lr" else value >= low)):
                raise GPTError(
                    f"{source}: {name} {value} is out of range ({'above' if name == 'lr' else 'at least'} {low})"
                )
        return cls(**d, **({} if adamw is None else {"adamw": adamw}))


# the smallest value each setting takes, on the command line (train's options) and in a checkpoint's
# train_settings (lr: above it; the command line's `positive`)
MINIMA = {
    "steps": 1,
    "batch_size": 1,
    "lr": 0.0,
    "min_lr": 0.0,
    "warmup_steps": 0,
    "decay_steps": 0,
    "eval_interval": 1,
    "eval_iters": 1,
    "seed": 0,
}


def unigram_baseline(train: np.ndarray, val: np.ndarray, vocab_size: int) -> float:
    """Cross-entropy of the validation text under the training text's token frequencies (add-one
    smoothed): what a model learns with no context at all. Counted a chunk at a time, so that token
    files on disk (np.memmap) are never read into memory whole."""
    counts = token_counts(train, vocab_size) + 1.0
    logp = np.log(counts / counts.sum())
    return float(-(token_counts(val, vocab_size) * logp).sum() / len(val))


def make_tokenizer(kind: str, text: str, vocab_size: int | None):
    """The tokenizer --tokenizer names, learned from text: char takes every character it has; bpe and
    word learn a vocabulary of vocab_size tokens."""
    if kind == "char":
        if vocab_size is not None:
            raise GPTError("--vocab-size is for --tokenizer bpe or word; char has one token per character")
        return CharTokenizer.from_text(text)
    if vocab_size is None:
        raise GPTError(f"--tokenizer {kind} needs --vocab-size N (for example 1024)")
    if kind == "bpe":
        return BPETokenizer.train(text, vocab_size)
    return WordTokenizer.train(text, vocab_size)


def default_prompt(tokenizer, pretrained: bool) -> str:
    # GPT-2 samples unconditionally from <|endoftext|>, the token every document of its training ended
    # with; the models trained here never saw it (a Shakespeare BPE has it too) and start from a newline
    special = getattr(tokenizer, "special_tokens", [])
    return special[0] if pretrained and special else "\n"


def bits_per_char(loss: float, tokens: int, chars: int) -> float:
    """nats per token -> bits per character: the scale on which char, BPE and word models compare."""
    return loss * tokens / chars / math.log(2)


def train(
    model, dataset: CharDataset, s: TrainSettings, ckpt_path=None, log=print, progress=True, interrupt=None
):
    """Trains from model.step up to s.steps. Batches and the learning rate are pure functions of the
    step, so a run resumed from a checkpoint continues exactly as if it had not stopped. With ckpt_path,
    a training checkpoint is written (atomically) at every evaluation and at the end. With `interrupt`
    (shared.cli.Interrupt), a Ctrl-C stops the run after the step in progress, and the checkpoint of
    that step is written. A diverging step raises DivergenceError and writes nothing."""
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
                save(model, ckpt_path, metadata)
        lr = lr_at(step, s.lr, s.min_lr, s.warmup_steps, s.decay_steps)
        x, y = get_batch(dataset.train, s.batch_size, T, batch_rng(s.seed, step))
        loss = model.train_step(x, y, lr)  # every tier raises DivergenceError on a non-finite loss
        if not math.isfinite(loss):  # and this says so for any model that does not
            raise DivergenceError(f"step {step}: the loss is {loss}; the run diverged (try a lower --lr)")
        bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.1e}")
        if interrupt is not None and interrupt.requested:
            bar.close()
            if ckpt_path is not None:
                save(model, ckpt_path, metadata)
            history["interrupted"] = model.step
            return history
    bar.close()
    _evaluate(model, dataset, s, model.step, history, time.perf_counter() - start, log)
    if ckpt_path is not None:
        save(model, ckpt_path, metadata)
    return history


def save(model, path, metadata):
    """The tier's atomic save, a failure said in one line: the checkpoint already there stays whole."""
    try:
        model.save(path, metadata)
    except OSError as e:
        raise GPTError(
            f"{path}: cannot write the checkpoint ({e.strerror or e}); the file there is unchanged"
        ) from None


def _evaluate(model, dataset, s, step, history, elapsed, log):
    train_loss = estimate_loss(model, dataset.train, s.batch_size, s.eval_iters, s.seed + 1)
    val_loss = estimate_loss(model, dataset.val, s.batch_size, s.eval_iters, s.seed + 2)
    for key, value in (("step", step), ("train", train_loss), ("val", val_loss), ("time", elapsed)):
        history[key].append(value)
    log(f"step {step:5d}: train loss {train_loss:.4f}, val loss {val_loss:.4f} ({elapsed:.0f} s)")


def sample_text(
    model, tokenizer, prompt: str | None, tokens: int, temperature: float, top_k, seed: int, pretrained=False
):
    idx = tokenizer.encode(prompt or default_prompt(tokenizer, pretrained))[None, -model.config.block_size :]
    out = model.generate(idx, tokens, temperature=temperature, top_k=top_k, seed=seed)
    if prompt:
        return tokenizer.decode(out[0])
    return tokenizer.decode(out[0, idx.shape[1] :])  # not the <|endoftext|> or newline it started from


# ---- command line ----


def cmd_train(args):
    """Trains with each tier named by --impl in turn; with several, draws their loss curves together.
    Everything a run will need is checked first: the numbers as they are parsed, a --resume against the
    checkpoint's own settings, the output folder writable."""
    if getattr(args, "devices", None) is not None and args.impl != ["tinygrad"]:
        raise GPTError(
            f"--devices {args.devices}: data-parallel training is the tinygrad tier's only; "
            f"use it with --impl tinygrad, not --impl {' '.join(args.impl)}"
        )
    if getattr(args, "mixed_precision", None) is not None:
        if args.impl != ["tinygrad"]:
            raise GPTError(
                f"--mixed-precision {args.mixed_precision}: mixed precision is the tinygrad tier's only "
                f'(SPEC.md "Mixed precision"); use it with --impl tinygrad, not --impl {" ".join(args.impl)}'
            )
        if args.mixed_precision == "bfloat16":  # which needs clang 15 or later on the CPU
            from impl_tinygrad.gpt import check_compute_dtype, device_names

            check_compute_dtype(device_names(args.devices), args.mixed_precision)
    if args.resume:
        if len(args.impl) > 1:
            raise GPTError("--resume continues one run: name one --impl")
        plans = {args.impl[0]: plan_resume(args)}
    else:
        apply_defaults(args)
        check_writable_folder(args.out)
        plans = {
            impl: {"out": check_output_file(Path(args.out) / f"{args.config}-{impl}.safetensors")}
            for impl in args.impl
        }
    runs = {}
    with Interrupt() as interrupt:
        for impl, plan in plans.items():
            with CheckpointLock(plan["out"]) as lock:
                for stale in lock.removed:
                    print(f"removed {stale}, left by a run that was killed while saving")
                runs[impl] = train_one(args, impl, plan, interrupt)
            if interrupt.requested:
                step = runs[impl]["history"]["interrupted"]
                print(f"\nstopped at step {step}; checkpoint: {plan['out']}", file=sys.stderr)
                print(
                    f"resume with: python transformer.py train --impl {impl} --resume {plan['out']}",
                    file=sys.stderr,
                )
                return interrupt.exit_status
    if len(runs) > 1 or args.curves:
        path = Path(args.out or "out") / f"{args.config or 'shakespeare'}-curves.png"
        write_curves(runs, path)
        print(f"\nloss curves: {path} (data: {path.with_suffix('.json')})")
        for impl, r in runs.items():
            print(f"  {impl:9s} validation loss {r['val']:.4f}, {r['wall']:.0f} s")
    return 0


# the options a new run takes these values for; with --resume they come from the checkpoint
TRAIN_DEFAULTS = {
    "config": "shakespeare",
    "tokenizer": "char",
    "batch_size": 12,
    "lr": 3e-3,
    "eval_interval": 250,
    "eval_iters": 20,
    "seed": 1337,
    "out": "out",
}


def apply_defaults(args):
    for name, value in TRAIN_DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, value)


def plan_resume(args) -> dict:
    """A --resume run takes its model, tokenizer and settings from the checkpoint. An option given with
    it that says otherwise is refused rather than dropped; --steps extends the run; --out writes the
    continued run into another folder (same file name) and leaves the checkpoint as it is."""
    ckpt = load_checkpoint(args.resume)
    if "train_settings" not in ckpt.metadata or "tokenizer" not in ckpt.metadata or ckpt.optimizer is None:
        raise GPTError(f"{args.resume} is not a training checkpoint saved by transformer.py")
    s = TrainSettings.from_json(
        ckpt.metadata["train_settings"],
        ckpt.optimizer.adamw,
        f"{args.resume}: train_settings in the metadata",
    )
    tokenizer = tokenizer_from_json(ckpt.metadata["tokenizer"], f"{args.resume}: the tokenizer metadata")
    stored = {
        "batch_size": s.batch_size,
        "lr": s.lr,
        "eval_interval": s.eval_interval,
        "eval_iters": s.eval_iters,
        "seed": s.seed,
        "tokenizer": tokenizer.kind,
        "vocab_size": tokenizer.vocab_size if tokenizer.kind != "char" else None,
    }
    for name, value in stored.items():
        given = getattr(args, name)
        if given is not None and given != value:
            flag = "--" + name.replace("_", "-")
            raise GPTError(
                f"{flag} {given} differs from the checkpoint's {value}; --resume continues the run with its own settings (drop {flag})"
            )
    if args.config is not None and get_config(args.config, vocab_size=ckpt.config.vocab_size) != ckpt.config:
        raise GPTError(
            f"--config {args.config} differs from the checkpoint's model {ckpt.config}; drop --config to resume it"
        )
    step = ckpt.optimizer.step
    if args.steps is not None:
        if args.steps <= step:
            raise GPTError(
                f"--steps {args.steps}: {args.resume} is already at step {step}; give more steps to train further"
            )
        s = dataclasses.replace(s, steps=args.steps)
    elif step >= s.steps:
        raise GPTError(
            f"{args.resume} has finished its {s.steps} steps; give --steps N above {step} to train further"
        )
    out = check_output_file(Path(args.out) / Path(args.resume).name if args.out else args.resume)
    return {"out": out, "settings": s, "tokenizer": tokenizer}


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


def read_text(path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise GPTError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise GPTError(f"{path}: cannot read it ({e.strerror})") from None


def load_dataset(args, tokenizer=None):
    """What a run trains on: token files (--tokens FOLDER, written by `prepare`), else Tiny Shakespeare
    or --data tokenized in memory by `tokenizer` (a resumed run's), else by a new one of --tokenizer's
    kind learned from the training part of the text (the validation part stays unseen)."""
    if args.tokens:
        dataset = TokenDataset(args.tokens)
        if tokenizer is not None and dataset.tokenizer.to_json() != tokenizer.to_json():
            raise GPTError(f"{args.tokens}: its tokenizer is not the one the checkpoint was trained with")
        return dataset, f"{args.tokens} (token files)"
    text_path = shakespeare_path(args.data)
    text = read_text(text_path)
    if tokenizer is None:
        train_part = text if args.tokenizer == "char" else text[: int(0.9 * len(text))]
        tokenizer = make_tokenizer(args.tokenizer, train_part, args.vocab_size)
    return CharDataset(text, tokenizer), str(text_path)


def train_one(args, impl: str, plan: dict, interrupt=None) -> dict:
    tier = tier_module(impl)
    dtype = np.dtype(args.dtype)
    out = plan["out"]
    # the tinygrad tier's data parallelism and mixed precision, where asked for
    on = {k: getattr(args, k, None) for k in ("devices", "mixed_precision")}
    on = {k: v for k, v in on.items() if v is not None}
    if args.resume:
        s = plan["settings"]
        dataset, source = load_dataset(args, plan["tokenizer"])
        model = tier.load(args.resume, dtype=dtype, **on)
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
        dataset, source = load_dataset(args)
        config = get_config(args.config, vocab_size=dataset.tokenizer.vocab_size)
        state = init_state_dict(config, args.seed)
        model = tier.from_state_dict(config, state, dtype=dtype, adamw=s.adamw, **on)
    config = model.config
    kind = dataset.tokenizer.kind
    print(
        f"data: {source} ({len(dataset.train):,} train / {len(dataset.val):,} val tokens, {kind} tokenizer)"
    )
    print(f"model: {impl} tier, {dtype}, {config}, {num_params(config):,} parameters")
    if "devices" in on:
        print(f"data parallel: each batch split over {', '.join(model.devices)}")
    if "mixed_precision" in on:
        scaling = "" if model.loss_scale is None else f", loss scale {model.loss_scale:g} (dynamic)"
        print(f"mixed precision: the matrix products in {model.mixed_precision}, float32 weights{scaling}")
    if args.verbose:
        print(f"settings: {s}")
    start = time.perf_counter()
    from tqdm import tqdm

    history = train(model, dataset, s, out, log=tqdm.write, interrupt=interrupt)
    wall = time.perf_counter() - start
    if "interrupted" in history:
        return {"history": history, "wall": wall}
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
    bpc = bits_per_char(val, len(dataset.val), dataset.chars("val"))
    print(
        f"  {bpc:.4f} bits per character ({kind} tokenizer, {len(dataset.val) / dataset.chars('val'):.4f} tokens per character)"
    )
    if args.sample_tokens:
        print("\n--- sample ---")
        if "devices" in on:  # the tinygrad tier decodes on one device: the trained weights copied to one
            one = {k: v for k, v in on.items() if k != "devices"}
            model = tier.from_state_dict(config, model.state_dict(), dtype=dtype, adamw=s.adamw, **one)
        print(sample_text(model, dataset.tokenizer, None, args.sample_tokens, 0.8, None, s.seed))
    return {"history": history, "val": val, "bits_per_char": bpc, "wall": wall}


def _load_for_use(args):
    """The model and its tokenizer: from a checkpoint saved here (the tokenizer in its metadata), or
    from a Hugging Face directory (vocab.json + merges.txt or tokenizer.json beside the weights)."""
    ckpt = load_checkpoint(args.ckpt)
    if "tokenizer" in ckpt.metadata:
        tokenizer = tokenizer_from_json(ckpt.metadata["tokenizer"], f"{args.ckpt}: the tokenizer metadata")
    elif Path(args.ckpt).is_dir():
        tokenizer = load_tokenizer(args.ckpt)
    else:
        raise GPTError(f"{args.ckpt} has no tokenizer in its metadata; was it saved by transformer.py?")
    if tokenizer.vocab_size > ckpt.config.vocab_size:
        raise GPTError(
            f"{args.ckpt}: the tokenizer has {tokenizer.vocab_size} tokens, the model's vocab_size is only "
            f"{ckpt.config.vocab_size}"
        )
    model = tier_module(args.impl).from_state_dict(ckpt.config, ckpt.state, dtype=np.dtype(args.dtype))
    return model, tokenizer


def cmd_sample(args):
    model, tokenizer = _load_for_use(args)
    pretrained = Path(args.ckpt).is_dir()  # a Hugging Face folder: GPT-2 or a model like it
    s = sample_text(
        model, tokenizer, args.prompt, args.tokens, args.temperature, args.top_k, args.seed, pretrained
    )
    print(s)
    return 0


def cmd_eval(args):
    model, tokenizer = _load_for_use(args)
    if args.text:
        return eval_text(model, tokenizer, args.text, args.batch_size)
    dataset = CharDataset(read_text(shakespeare_path(args.data)), tokenizer)
    V = model.config.vocab_size
    for split in ("train", "val"):
        loss = estimate_loss(model, dataset.split(split), args.batch_size, args.iters, 1000)
        bpc = bits_per_char(loss, len(dataset.split(split)), dataset.chars(split))
        print(f"{split} loss {loss:.4f} ({bpc:.4f} bits per character)")
    print(
        f"uniform baseline {math.log(V):.4f}, unigram baseline {unigram_baseline(dataset.train, dataset.val, V):.4f}"
    )
    return 0


def eval_text(model, tokenizer, path, batch_size: int) -> int:
    """Perplexity of a whole text file: its tokens cut into windows of block_size + 1 (the last one
    shorter), each window's tokens predicted from the ones before them in it, every token but the first
    of each window counted once."""
    from tqdm import tqdm

    text = read_text(path)
    ids = tokenizer.encode(text)
    T = model.config.block_size
    if len(ids) < 2:
        raise GPTError(f"{path}: {len(ids)} tokens, at least 2 are needed to measure a prediction")
    starts = range(0, len(ids) - 1, T)
    total, counted = 0.0, 0
    for k in tqdm(range(0, len(starts), batch_size), unit="batch", desc="eval", leave=False):
        windows = [ids[i : i + T + 1] for i in starts[k : k + batch_size]]
        n = max(len(w) for w in windows) - 1
        x = np.zeros((len(windows), n), dtype=np.int64)
        y = np.full((len(windows), n), -1, dtype=np.int64)  # -1: padding, ignored by the loss
        for b, w in enumerate(windows):
            x[b, : len(w) - 1], y[b, : len(w) - 1] = w[:-1], w[1:]
        _, loss = model.forward(x, y)
        total, counted = total + loss * (y >= 0).sum(), counted + int((y >= 0).sum())
    loss = total / counted
    print(f"{path}: {len(text):,} characters, {len(ids):,} tokens, {counted:,} predicted")
    print(
        f"loss {loss:.4f} nats per token, perplexity {math.exp(loss):.2f}, {bits_per_char(loss, counted, len(text)):.4f} bits per character"
    )
    return 0


def cmd_prepare(args):
    """Token files for a corpus of any size: the tokenizer learned from the text's first --train-chars
    characters (or taken from --tokenizer-from), then the whole text tokenized a chunk at a time."""
    check_writable_folder(args.out)
    text_path = shakespeare_path(args.data)
    if args.tokenizer_from:
        tokenizer = load_tokenizer(args.tokenizer_from)
    elif args.tokenizer == "char":
        tokenizer = None  # prepare() collects the characters in a pass of its own
        if args.vocab_size is not None:
            raise GPTError("--vocab-size is for --tokenizer bpe or word; char has one token per character")
    else:
        try:
            with open(text_path, encoding="utf-8") as f:
                sample = f.read(args.train_chars)
        except UnicodeDecodeError as e:
            raise GPTError(
                f"{text_path}: not UTF-8 text ({e.reason} in the first {args.train_chars:,} characters)"
            ) from None
        except OSError as e:
            raise GPTError(f"{text_path}: cannot read it ({e.strerror})") from None
        tokenizer = make_tokenizer(args.tokenizer, sample, args.vocab_size)
    dataset = prepare(text_path, args.out, tokenizer)
    t = dataset.tokenizer
    print(f"{args.out}: {len(dataset.train):,} train / {len(dataset.val):,} val tokens")
    print(
        f"  {t.kind} tokenizer, vocab_size {t.vocab_size}; train with: python transformer.py --tokens {args.out}"
    )
    return 0


def cmd_attention(args):
    from viz.attention import write_attention

    check_writable_folder(args.out)
    model, tokenizer = _load_for_use(args)
    # with --compare, each named with its folder too: two runs' checkpoints often share a file name
    name = (lambda p: f"{Path(p).parent.name}/{Path(p).name}") if args.compare else (lambda p: Path(p).name)
    title = f"{name(args.ckpt)}, {args.impl} tier"
    compare = None
    if args.compare:
        other, _ = _load_for_use(argparse.Namespace(**{**vars(args), "ckpt": args.compare}))
        compare = (other, f"{name(args.compare)}, {args.impl} tier")
    paths = write_attention(
        model, tokenizer, args.sentence, args.out, args.layer, args.head, title, compare=compare
    )
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
    p = Parser(
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
    t.add_argument(
        "--devices",
        type=at_least(1),
        help="tinygrad only: split each batch across N instances of its default device (CPU:0 .. CPU:N-1)",
    )
    t.add_argument(
        "--mixed-precision",
        choices=["float16", "bfloat16"],
        help="tinygrad only: the matrix products in this dtype, the weights float32 (float16 with loss "
        'scaling; SPEC.md "Mixed precision")',
    )
    t.add_argument(
        "--config",
        choices=list(PRESETS),
        help="model size preset (default shakespeare; with --resume, its own)",
    )
    t.add_argument(
        "--data",
        help="path to tinyshakespeare.txt or a folder holding it (else $TINYSHAKESPEARE, the cache, a "
        "download), or any UTF-8 text file",
    )
    t.add_argument(
        "--tokens", metavar="FOLDER", help="train from token files written by `prepare` instead of text"
    )
    t.add_argument(
        "--tokenizer",
        choices=list(KINDS),
        help="char (default), bpe (GPT-2's byte-level BPE) or word, learned from the training text",
    )
    t.add_argument(
        "--vocab-size", type=at_least(2), default=None, help="tokens a bpe or word tokenizer learns"
    )
    t.add_argument(
        "--steps",
        type=at_least(MINIMA["steps"]),
        default=None,
        help="training steps (default 2000; with --resume, the run's own)",
    )
    t.add_argument(
        "--batch-size", type=at_least(MINIMA["batch_size"]), help="sequences per step (default 12)"
    )
    t.add_argument("--lr", type=positive, help="peak learning rate (default 3e-3); cosine decay to lr/10")
    t.add_argument(
        "--eval-interval",
        type=at_least(MINIMA["eval_interval"]),
        help="steps between evaluations (default 250)",
    )
    t.add_argument(
        "--eval-iters", type=at_least(MINIMA["eval_iters"]), help="batches per evaluation (default 20)"
    )
    t.add_argument(
        "--final-eval-iters", type=at_least(1), default=200, help="batches for the final validation loss"
    )
    t.add_argument(
        "--seed", type=at_least(MINIMA["seed"]), help="seed of the init and the batches (default 1337)"
    )
    t.add_argument(
        "--out",
        help="folder for the checkpoint (default out/; with --resume, the continued run goes there and the "
        "checkpoint resumed from stays as it is)",
    )
    t.add_argument(
        "--resume",
        help="training checkpoint to continue from, with its own settings (updated in place unless --out); "
        "an option that differs from them is refused",
    )
    t.add_argument(
        "--sample-tokens", type=at_least(0), default=500, help="tokens to sample at the end (0: none)"
    )
    t.set_defaults(func=cmd_train)

    s = sub.add_parser("sample", help="generate text from a checkpoint")
    common(s)
    s.add_argument(
        "--ckpt", required=True, help="checkpoint saved by `train`, or a Hugging Face GPT-2 folder"
    )
    s.add_argument(
        "--prompt", default=None, help="text to continue (default: a newline, or GPT-2's <|endoftext|>)"
    )
    s.add_argument("--tokens", type=at_least(0), default=500, help="tokens to generate")
    s.add_argument("--temperature", type=at_least(0.0, float), default=0.8, help="0 is greedy")
    s.add_argument("--top-k", type=at_least(1), default=None, help="sample among the k most likely only")
    s.add_argument("--seed", type=at_least(0), default=0)
    s.set_defaults(func=cmd_sample)

    e = sub.add_parser(
        "eval", help="train and validation loss of a checkpoint with the baselines, or a text's perplexity"
    )
    common(e)
    e.add_argument(
        "--ckpt", required=True, help="checkpoint saved by `train`, or a Hugging Face GPT-2 folder"
    )
    e.add_argument(
        "--data", help="path to tinyshakespeare.txt (else $TINYSHAKESPEARE, the cache, a download)"
    )
    e.add_argument("--text", help="a UTF-8 text file: its loss, perplexity and bits per character")
    e.add_argument("--iters", type=at_least(1), default=200, help="batches per split")
    e.add_argument("--batch-size", type=at_least(1), default=12)
    e.set_defaults(func=cmd_eval)

    pr = sub.add_parser(
        "prepare", help="token files (train.bin, val.bin, the tokenizer) for a text of any size"
    )
    pr.add_argument("--tokenizer", choices=list(KINDS), default="char", help="char (default), bpe or word")
    pr.add_argument(
        "--vocab-size", type=at_least(2), default=None, help="tokens a bpe or word tokenizer learns"
    )
    pr.add_argument(
        "--tokenizer-from", metavar="FOLDER", help="use the tokenizer in this folder (e.g. GPT-2's) instead"
    )
    pr.add_argument(
        "--train-chars",
        type=at_least(1),
        default=10_000_000,
        help="learn the tokenizer from the text's first N characters (default 10,000,000)",
    )
    pr.add_argument(
        "--data", help="the text (default Tiny Shakespeare: $TINYSHAKESPEARE, the cache, a download)"
    )
    pr.add_argument("--out", required=True, help="folder for train.bin, val.bin and the tokenizer")
    pr.set_defaults(func=cmd_prepare)

    a = sub.add_parser("attention", help="pictures of every head's attention over a sentence (PNG, HTML)")
    common(a, impl="c")  # the fastest tier
    a.add_argument("sentence", help="the text to look at (its last block_size tokens when longer)")
    a.add_argument(
        "--ckpt", required=True, help="checkpoint saved by `train`, or a Hugging Face GPT-2 folder"
    )
    a.add_argument("--out", default="out/attention", help="folder for the files (default out/attention/)")
    a.add_argument("--layer", type=int, default=None, help="the head shown alone: its layer (default: last)")
    a.add_argument("--head", type=int, default=0, help="the head shown alone (default 0)")
    a.add_argument(
        "--compare",
        metavar="CKPT",
        help="a second checkpoint of the same shape (e.g. step 0 against the trained model): the page shows "
        "either, and the difference",
    )
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
        # a diverging run is said once, by the step that diverged (DivergenceError), not by numpy's
        # overflow warnings before it
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return args.func(args)
    except GPTError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the system refused a read or a write: a full disk, a file removed meanwhile
        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{e.strerror or e}", file=sys.stderr)
        return 1
    except MemoryError:
        print(
            f"error: out of memory running {args.command or 'train'} (try a smaller model or batch)",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:  # outside training (which saves first), or a second Ctrl-C while saving
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
