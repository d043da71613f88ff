# Words, characters or BPE: `python transformer.py question words` trains the shakespeare preset on Tiny
# Shakespeare tokenized three ways, by character, by GPT-2's byte-level BPE learned from the text, and by
# word (the pieces of re.split(r"\b"), the curriculum's last exercise; shared/tokenizer.py), with the same
# init seed, steps, batch size and learning-rate schedule as the ablations (ablations.py), and compares
# them per character: a loss in nats per token times the tokens a character takes is the bits the model
# needs per character of text, whatever a token is. The curriculum asks for the complete works; they
# cannot be downloaded on these machines, so this is Tiny Shakespeare (1.1M characters).
#
# A word model's <unk> stands for every word outside its vocabulary, so its loss never pays for spelling
# a rare word, which the other two must do letter by letter or piece by piece. Its fair figure charges
# each <unk> the cost of spelling its word out under the training text's character frequencies and an
# end-of-word symbol (spelling_costs). The word model with this speller gives every text a probability,
# and those sum to at most 1 (what the speller puts on words the vocabulary has is wasted), so its bits
# are a code length for the text as the other two models' are: that figure is the one to compare.
import dataclasses
import json
import math
from collections import Counter
from pathlib import Path

import numpy as np

from experiments.ablations import AblationSettings, pyplot, save_figure, settings_from_args, train_variant
from shared.config import get_config
from shared.data import CharDataset, batch_rng, get_batch, shakespeare_path
from shared.params import num_params
from shared.tokenizer import BPETokenizer, CharTokenizer, WordTokenizer, word_pieces
from transformer import bits_per_char, read_text, sample_text

# BPE 1,024 (the README's run): the 256 bytes (65 of them in the text), <|endoftext|> and 767 merges,
# about 2.4 characters a token. The output layer (V x C) stays a seventh of the model's 0.93M parameters,
# and the median token still occurs 167 times in the training split; a much larger vocabulary learned
# from 1M characters would have many tokens seen a handful of times.
BPE_VOCAB = 1024
# 4,096 words: transformer.py's README run; about 94% of validation words are in it. None: every piece of
# the training text (12,671 and <unk>), so <unk> is left only for words training never had.
WORD_VOCABS = (4096, None)
PRESET = "shakespeare"  # the model every tokenizer trains, its vocab_size set by the tokenizer
T = get_config(PRESET).block_size  # 64 tokens of context
SAMPLE_CHARS = 200  # about this many characters of sample from each model
EVAL_BATCH = 16  # windows per forward when every validation token is scored (logits B x T x V in memory)


def make_tokenizers(text: str, train_chars: int) -> dict:
    """label -> tokenizer. The char one has every character of the text (as transformer.py's); the others
    are learned from the training part only, so the validation text stays unseen."""
    train = text[:train_chars]
    tokenizers = {
        "char": CharTokenizer.from_text(text),
        f"bpe {BPE_VOCAB}": BPETokenizer.train(train, BPE_VOCAB),
    }
    for size in WORD_VOCABS:
        tokenizer = WordTokenizer.train(train, size or len(train))  # never more pieces than characters
        tokenizers[f"word {tokenizer.vocab_size}" + (" (every training word)" if size is None else "")] = (
            tokenizer
        )
    return tokenizers


# ---- bits per character, and the <unk>'s spelling ----


def spelling_costs(train_text: str, alphabet: str) -> tuple[dict, float]:
    """A unigram speller: -ln q(c) for each character of alphabet, and -ln q(end), with q estimated from
    the training text's characters and one end-of-word symbol after each of its re.split(r"\\b") pieces,
    add-one smoothed over alphabet (a validation word may hold a character training never had)."""
    counts = Counter(train_text)
    ends = len(word_pieces(train_text))
    total = len(train_text) + len(alphabet) + ends
    return {c: -math.log((counts[c] + 1) / total) for c in alphabet}, -math.log(ends / total)


def spelling_cost(piece: str, costs: tuple[dict, float]) -> float:
    """Nats to spell piece out, character by character, then the end symbol."""
    chars, end = costs
    return sum(chars[c] for c in piece) + end


def split_loss(model, data: np.ndarray, batch_size: int = EVAL_BATCH) -> float:
    """The mean loss (nats) over every token of data but the first, each predicted once: the tokens cut
    into windows of T + 1 that overlap by one (the last one shorter), each token predicted from the ones
    before it in its window, as transformer.py's eval scores a text."""
    T = model.config.block_size
    data = np.asarray(data, dtype=np.int64)
    n = len(data) - 1  # tokens predicted
    full = n // T
    total = 0.0
    for first in range(0, full, batch_size):
        starts = range(first * T, min(first + batch_size, full) * T, T)
        x = np.stack([data[i : i + T] for i in starts])  # (B, T)
        y = np.stack([data[i + 1 : i + T + 1] for i in starts])
        total += model.forward(x, y)[1] * y.size  # the model's loss is the mean over the batch
    if n % T:  # the rest, fewer than T tokens, in one shorter window
        total += model.forward(data[None, full * T : n], data[None, full * T + 1 :])[1] * (n % T)
    return total / n


def unk_charges(tokenizer, data: np.ndarray, text: str, costs) -> np.ndarray:
    """For each token of data (text's ids): its spelling cost if it is a word tokenizer's <unk>, else 0."""
    charges = np.zeros(len(data))
    if tokenizer.kind != "word":
        return charges
    pieces = word_pieces(text)
    assert len(pieces) == len(data), "a word tokenizer gives one id per piece"
    for i in np.flatnonzero(np.asarray(data) == 0):
        charges[i] = spelling_cost(pieces[i], costs)
    return charges


# the seeds' offsets of the windows train_variant's estimate_loss scores on each split
EVAL_SEEDS = {"train": 1, "val": 2}


def window_charge(charges: np.ndarray, s: AblationSettings, T: int, split: str) -> float:
    """The mean charge over the targets of the windows estimate_loss scores on split during training
    (the same draws: get_batch on the positions instead of the ids)."""
    positions = np.arange(len(charges))
    rngs = [batch_rng(s.seed + EVAL_SEEDS[split], k) for k in range(s.eval_iters)]
    return float(np.mean([charges[get_batch(positions, s.batch_size, T, rng)[1]].mean() for rng in rngs]))


def measure(model, dataset: CharDataset, charges: np.ndarray) -> dict:
    """Scores every validation token; bits per character as the model's loss gives it, and with each
    <unk> charged its spelling (the charge does not depend on the model: its mean over the predicted
    tokens adds to the mean loss)."""
    chars, n = dataset.chars("val"), len(dataset.val) - 1  # the first token is never predicted
    loss, spelled = split_loss(model, dataset.val), charges[1:]
    return {
        "tokens_per_char": len(dataset.val) / chars,
        "context_chars": model.config.block_size * chars / len(dataset.val),
        "val_loss": loss,
        "bits_per_char": bits_per_char(loss, n, chars),
        "unk_share": float((spelled > 0).mean()),
        "unk_charge": float(spelled.mean()),
        "fair_bits_per_char": bits_per_char(loss + float(spelled.mean()), n, chars),
    }


# ---- the figure ----

# Okabe-Ito, colorblind-safe; the comparable figure solid, the word models' loss before the <unk> charge
# dashed
COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7")


def plot_words(runs: dict, s: AblationSettings, path: Path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(17, 5))
    for (label, run), color in zip(runs.items(), COLORS):
        c = run["curves"]
        steps = np.array(c["step"])
        word = run["kind"] == "word"
        for ax, x in zip(axes[:2], (steps, c["chars_read"])):
            ax.plot(x, c["fair_bpc"], color=color, label=label + (", <unk> spelled" if word else ""))
            if word:
                ax.plot(x, c["bpc"], color=color, ls="--", label=f"{label}, <unk> free (not comparable)")
        gap = np.array(c["fair_bpc"]) - np.array(c["fair_train_bpc"])
        axes[2].plot(steps, gap, color=color, label=label + (", <unk> spelled" if word else ""))
    for ax, xlabel in zip(axes, ("step", "training characters seen", "step")):
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("validation bits per character")
    batch = f"{s.batch_size} x {T} tokens"
    axes[0].set_title(f"per step (the same batches of {batch})")
    axes[1].set_title("per character of training text read")
    curves = [run["curves"][key] for run in runs.values() for key in ("bpc", "fair_bpc")]
    low, high = min(min(c) for c in curves), max(c[-1] for c in curves)
    for ax in axes[:2]:
        ax.set_ylim(low - 0.1, high + 1.5)  # step 0 is far above (ln V nats per token): cut off
        ax.legend(fontsize=8)
    axes[2].axhline(0, color="k", lw=0.8)
    axes[2].set_ylabel("validation minus training, bits per character")
    axes[2].set_title(
        f"validation minus training, {s.eval_iters} batches each\n(at step 0 the tokenizer's part alone)"
    )
    axes[2].legend(fontsize=8)
    fig.suptitle(
        f"The shakespeare preset on Tiny Shakespeare by character, BPE and word, {s.steps} steps each "
        f"(same init seed, batches of {batch}, lr schedule)"
    )
    save_figure(fig, path)


# ---- the question ----


def train_one(tier, label: str, dataset: CharDataset, texts: dict, costs, s, log) -> dict:
    """texts: "train" and "val", the text of each split."""
    tokenizer = dataset.tokenizer
    config = get_config(PRESET, vocab_size=tokenizer.vocab_size)
    history, model = train_variant(tier, config, dataset, s, label)
    charges = {k: unk_charges(tokenizer, dataset.split(k), texts[k], costs) for k in texts}
    window = {k: window_charge(charges[k], s, config.block_size, k) for k in charges}
    m = measure(model, dataset, charges["val"])
    tokens = round(SAMPLE_CHARS * m["tokens_per_char"])
    run = {
        "kind": tokenizer.kind,
        "vocab_size": tokenizer.vocab_size,
        "params": num_params(config),
        # the last estimates on both splits (train_variant: eval_iters batches each)
        "train_loss": history["train"][-1],
        "val_loss_estimate": history["val"][-1],
        **m,
        # a pass over the training split is len(train) tokens; a step reads batch_size x T of them
        "epochs": s.steps * s.batch_size * config.block_size / len(dataset.train),
        "median_count": float(np.median(np.bincount(dataset.train, minlength=tokenizer.vocab_size))),
        "unk_share_train": float((charges["train"] > 0).mean()),
        **unk_words(charges["val"], texts["val"]),
        "seconds": history["time"][-1],
        "ms_per_step": 1000 * history["time"][-1] / max(1, s.steps),
        "curves": curves(history, dataset, s.batch_size * config.block_size, window),
        "sample": sample_text(model, tokenizer, None, tokens, 0.8, None, s.seed),
    }
    log(
        f"{label:>32}: val loss {history['val'][0]:.3f} -> {history['val'][-1]:.3f} nats per token, "
        f"train {history['train'][-1]:.3f}; {m['bits_per_char']:.3f} bits per character"
        + (f", {m['fair_bits_per_char']:.3f} with <unk> spelled" if tokenizer.kind == "word" else "")
        + f" ({run['seconds']:.0f} s)"
    )
    return run


def curves(history: dict, dataset: CharDataset, tokens_per_step: int, charge: dict) -> dict:
    """The losses train_variant recorded, and in bits per character on each split, without and with the
    <unk> charge (charge: the mean over the windows they were measured on, by split); the characters of
    training text read by each step."""
    out = {"step": history["step"], "train": history["train"], "val": history["val"]}
    for split in ("train", "val"):
        per_char = len(dataset.split(split)) / dataset.chars(split) / math.log(2)
        prefix = "" if split == "val" else "train_"
        out[f"{prefix}bpc"] = [v * per_char for v in history[split]]
        out[f"fair_{prefix}bpc"] = [(v + charge[split]) * per_char for v in history[split]]
    chars_per_token = dataset.chars("train") / len(dataset.train)
    out["chars_read"] = [step * tokens_per_step * chars_per_token for step in history["step"]]
    return out


def unk_words(charges: np.ndarray, val_text: str) -> dict:
    """The predicted validation <unk>s' words: their mean length, mean charge (nats), and the charge per
    character of those words (bits)."""
    unk = np.flatnonzero(charges[1:] > 0) + 1  # positions in the validation tokens
    pieces = word_pieces(val_text) if len(unk) else []
    chars = sum(len(pieces[i]) for i in unk)
    return {
        "unk_mean_chars": chars / max(1, len(unk)),
        "unk_mean_nats": float(charges[unk].mean()) if len(unk) else 0.0,
        "unk_bits_per_char": float(charges[unk].sum()) / max(1, chars) / math.log(2),
    }


def report(runs: dict, costs, s: AblationSettings, log) -> None:
    log(
        f"\n{'model':>32} {'V':>6} {'params':>9} {'tok/char':>8} {f'chars/{T}':>8} {'train':>6} {'val':>6} "
        f"{'val all':>7} {'bpc':>6} {'<unk>':>6} {'bpc spelled':>11} {'ms/step':>7}"
    )
    for label, r in runs.items():
        word = r["kind"] == "word"
        log(
            f"{label:>32} {r['vocab_size']:>6} {r['params']:>9,} {r['tokens_per_char']:>8.4f} "
            f"{r['context_chars']:>8.1f} {r['train_loss']:>6.3f} {r['val_loss_estimate']:>6.3f} "
            f"{r['val_loss']:>7.4f} {r['bits_per_char']:>6.3f} "
            + (
                f"{100 * r['unk_share']:>5.2f}% {r['fair_bits_per_char']:>11.3f}"
                if word
                else f"{'-':>6} {'-':>11}"
            )
            + f" {r['ms_per_step']:>7.0f}"
        )
    log(
        f"\n{'model':>32} {'epochs':>6} {'median count':>12} {'<unk> train':>11} {'gap':>6} "
        f"{'<unk> chars':>11} {'nats':>5} {'bits/char':>9}"
    )
    for label, r in runs.items():
        unk = r["kind"] == "word"
        log(
            f"{label:>32} {r['epochs']:>6.2f} {r['median_count']:>12,.0f} "
            + (f"{100 * r['unk_share_train']:>10.2f}% " if unk else f"{'-':>11} ")
            + f"{r['curves']['fair_bpc'][-1] - r['curves']['fair_train_bpc'][-1]:>+6.3f} "
            + (
                f"{r['unk_mean_chars']:>11.2f} {r['unk_mean_nats']:>5.1f} {r['unk_bits_per_char']:>9.2f}"
                if unk
                else f"{'-':>11} {'-':>5} {'-':>9}"
            )
        )
    chars, end = costs
    log(
        f"train, val: loss in nats per token on {s.eval_iters} batches of {s.batch_size} x {T} (the same "
        "estimate for both splits); "
        "val all: on every validation token; bpc = val all x tok/char / ln 2"
    )
    log(
        f"<unk> spelled: each <unk> charged its word's spelling, the training text's character frequencies "
        f"and an end symbol (end {end:.2f} nats, 'e' {chars['e']:.2f}, 'z' {chars['z']:.2f}); the comparable "
        "figure for a word model"
    )
    log(
        "epochs: passes over the training split; median count: how often the median vocabulary entry "
        "occurs in it; <unk> train: the share of its tokens that are <unk>; gap: validation minus training "
        f"bits per character at the last step ({s.eval_iters} batches each, <unk> spelled); <unk> chars, "
        "nats, bits/char: a validation <unk>'s mean length, mean charge, and the charge per character of "
        "those words"
    )
    report_curves(runs, s, log)
    for label, r in runs.items():
        log(f"\n--- {label}: sample, temperature 0.8 ---\n{r['sample']}")


def report_curves(runs: dict, s: AblationSettings, log, every: int = 2) -> None:
    """The figure's curves at every `every`-th evaluation: validation bits per character (<unk> spelled)
    and the training characters read by then (millions)."""
    steps = next(iter(runs.values()))["curves"]["step"][::every]
    log(
        f"\nvalidation bits per character (<unk> spelled; {s.eval_iters} batches) / training characters read "
        "(millions)"
    )
    log(f"{'step':>32} " + " ".join(f"{step:>12}" for step in steps))
    for label, r in runs.items():
        c = r["curves"]
        cells = [
            f"{bpc:.3f} / {n / 1e6:.2f}" for bpc, n in zip(c["fair_bpc"][::every], c["chars_read"][::every])
        ]
        log(f"{label:>32} " + " ".join(f"{cell:>12}" for cell in cells))


def run_question(args, tier_module, out: Path, log=print) -> dict:
    s = settings_from_args(args)
    tier = tier_module(args.impl[0] if args.impl else "c")
    text = read_text(shakespeare_path(args.data))
    train_chars = int(0.9 * len(text))  # CharDataset's cut
    texts = {"train": text[:train_chars], "val": text[train_chars:]}
    costs = spelling_costs(text[:train_chars], CharTokenizer.from_text(text).chars)
    log(
        f"Tiny Shakespeare (the complete works cannot be downloaded here): {len(text):,} characters, "
        f"{train_chars:,} for training; shakespeare preset, {s.steps} steps of {s.batch_size} x {T} tokens"
    )
    runs = {}
    for label, tokenizer in make_tokenizers(text, train_chars).items():
        dataset = CharDataset(text, tokenizer)
        runs[label] = train_one(tier, label, dataset, texts, costs, s, log)
    report(runs, costs, s, log)
    figure, data = out / "questions-words.png", out / "questions-words.json"
    plot_words(runs, s, figure)
    data.write_text(json.dumps({"settings": dataclasses.asdict(s), "runs": runs}, indent=1))
    return {"runs": runs, "paths": {"figure": figure, "data": data}}
