# Q, K and V: `python transformer.py question qkv` prints the shapes of x, qkv, q, k, v, att and y from
# a real forward of the shakespeare preset, then trains one GPT six times, each with another function
# scoring a query against a key, and compares their validation loss, time per step and attention entropy:
#   dot       q . k / sqrt(HS), GPT-2's (SPEC.md "Architecture")
#   unscaled  q . k, where bilinear starts: it tells what learning W does from what dropping the scale does
#   bilinear  q W k^T, one (HS, HS) matrix W per head, without the scale
#   additive  v . tanh(q W + k U), Bahdanau et al. 2015's v^T tanh(W q + U k) on row vectors, per head
#   cosine    tau cos(q, k), one learned temperature tau per head
#   neg-dist  -|q - k|^2 / (2 sqrt(HS)), the negative squared distance
# The variants live here and nowhere else: they answer a question, GPT-2 has one scoring function, and
# the spec's tiers implement GPT-2 (a variant of the model belongs in the spec and every tier, as the
# ablations do, or in the experiment alone). So this file holds the numpy tier's forward
# (impl_numpy/model.py), its pieces imported, around an attention that takes the score; every score is
# composed from impl_numpy/engine.py's primitives, and "dot" reproduces the tier's logits bit for bit
# (tests/test_qkv.py).
import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from experiments.ablations import attention_entropy
from impl_numpy.engine import Tensor, where
from impl_numpy.model import cross_entropy, embedding, layernorm, linear, mlp, record, softmax
from impl_numpy.optim import adamw_step, clip_grad_norm, grad_norm
from shared.config import GPTConfig, get_config
from shared.data import CharDataset, batch_rng, estimate_loss, get_batch, shakespeare_path
from shared.errors import ConfigError
from shared.params import init_state_dict, num_params
from shared.schedule import AdamWConfig, lr_at

SCORES = ("dot", "unscaled", "bilinear", "additive", "cosine", "neg-dist")
COSINE_EPS = 1e-6  # under the square root of |q|^2: a zero query gets a zero score row, not a NaN


@dataclass(frozen=True)
class QKVSettings:
    # The shakespeare preset (4 layers, NH 4, HS 32, C 128, T 64) with transformer.py's batch 12 and
    # schedule (peak lr 3e-3, cosine to 3e-4), as the ablations train it, for 500 steps. On 2 idle cores
    # a numpy-engine step took about 55 ms with the dot product and 150 ms with the additive score, whose
    # (B, NH, T, T, HS) tensor is 6.3M numbers a layer. By those times the eight runs (six scores, and
    # the dot product from two more seeds, which gauge how much of a difference the seed alone makes)
    # take about 5 minutes there; 10 were measured on 2 cores shared with three other such jobs, with
    # one BLAS thread each
    steps: int = 500
    batch_size: int = 12
    lr: float = 3e-3
    eval_interval: int = 50
    eval_iters: int = 10  # validation batches per evaluation, the same windows every time
    noise_seeds: tuple[int, ...] = (1, 2)  # the dot product again from these seeds (variants)
    entropy_windows: int = 8  # validation windows the attention entropy is measured on
    seed: int = 1337

    def config(self, vocab_size: int) -> GPTConfig:
        return get_config("shakespeare", vocab_size=vocab_size)


# ---- the scores: q, k (B, NH, T, HS) and the score's own parameters -> att (B, NH, T, T), before the mask


def score_shapes(score: str, NH: int, HS: int) -> dict[str, tuple[int, ...]]:
    """The score's parameters in one block, named under "h.{i}.attn.score." (dot, unscaled and neg-dist
    have none); v is (NH, HS, 1) so that the last step of the additive score is one matmul per head."""
    return {
        "dot": {},
        "unscaled": {},
        "bilinear": {"W": (NH, HS, HS)},
        "additive": {"W": (NH, HS, HS), "U": (NH, HS, HS), "v": (NH, HS, 1)},
        "cosine": {"log_tau": (NH, 1, 1)},
        "neg-dist": {},
    }[score]


def init_score_params(config: GPTConfig, score: str, seed: int) -> dict[str, np.ndarray]:
    """The score's parameters for every block, float64 like shared.params.init_state_dict, from a
    generator of their own, so that every variant's GPT weights are the same draw.
      bilinear W = I: the score starts as the unscaled dot product q . k, so what differs from it is
        what learning W does (a W drawn near 0 would start every score at 0 instead)
      additive W, U, v ~ N(0, 1/HS) (Xavier's variance): q W has entries the size of q's, so tanh starts
        in its linear part, and v . tanh(...) has the spread of one of them
      cosine log tau = log sqrt(HS): tau cos(q, k) = q . k / sqrt(HS) when |q| = |k| = sqrt(HS), that is
        when q and k have entries of variance 1, the case the dot product's scale is designed for; tau
        is learned as its log so that it stays positive and AdamW's steps change it by a ratio"""
    NH, HS = config.n_head, config.head_size
    rng = np.random.default_rng([seed, 1])
    state = {}
    for i in range(config.n_layer):
        for name, shape in score_shapes(score, NH, HS).items():
            if name == "W" and score == "bilinear":
                w = np.broadcast_to(np.eye(HS), shape).copy()
            elif name == "log_tau":
                w = np.full(shape, 0.5 * math.log(HS))
            else:
                w = rng.normal(0.0, 1.0 / math.sqrt(HS), size=shape)
            state[f"h.{i}.attn.score.{name}"] = w
    return state


def scores(q, k, score: str, sp: dict, acts=None, p=""):
    # q, k: (B, NH, T, HS) -> (B, NH, T, T); sp: the block's score parameters by short name
    B, NH, T, HS = q.shape
    kT = k.transpose(0, 1, 3, 2)  # (B, NH, HS, T)
    if score == "dot":
        return (q @ kT) * (1.0 / math.sqrt(HS))  # as impl_numpy.model.attention, op for op
    if score == "unscaled":
        return q @ kT
    if score == "bilinear":
        return (q @ sp["W"]) @ kT  # (B, NH, T, HS) @ (NH, HS, HS): one W per head
    if score == "additive":
        # every (query, key) pair gets its own HS-vector: (B, NH, T, 1, HS) + (B, NH, 1, T, HS). This is
        # the tensor the dot product never builds, HS times the size of att
        h = ((q @ sp["W"]).reshape(B, NH, T, 1, HS) + (k @ sp["U"]).reshape(B, NH, 1, T, HS)).tanh()
        record(acts, p + "attn.score.hidden", h)  # (B, NH, T, T, HS)
        return (h.reshape(B, NH, T * T, HS) @ sp["v"]).reshape(B, NH, T, T)  # one matmul per head
    if score == "cosine":
        qn = q * ((q * q).sum(-1, keepdims=True) + COSINE_EPS) ** -0.5  # rows of length 1
        kn = k * ((k * k).sum(-1, keepdims=True) + COSINE_EPS) ** -0.5
        return (qn @ kn.transpose(0, 1, 3, 2)) * sp["log_tau"].exp()  # (NH, 1, 1): one tau per head
    if score == "neg-dist":
        # |q - k|^2 = |q|^2 + |k|^2 - 2 q . k without the (B, NH, T, T, HS) difference; halved and over
        # sqrt(HS), it is the dot product's score minus |q|^2 / (2 sqrt(HS)), the same for every key of a
        # query, which the softmax cancels, and minus |k|^2 / (2 sqrt(HS)), which penalises long keys
        qq = (q * q).sum(-1, keepdims=True)  # (B, NH, T, 1)
        kk = (k * k).sum(-1, keepdims=True).transpose(0, 1, 3, 2)  # (B, NH, 1, T)
        return (qq + kk - (q @ kT) * 2.0) * (-0.5 / math.sqrt(HS))
    raise ConfigError(f"unknown score {score!r}; scores: {', '.join(SCORES)}")


# ---- the numpy tier's forward with the score as an argument (impl_numpy/model.py) ----


def attention(x, params, p, config, score, acts=None):
    # x: (B, T, C) -> (B, T, C); p is the block's name prefix "h.{i}."
    B, T, C = x.shape
    NH, HS = config.n_head, config.head_size
    qkv = linear(x, params[p + "attn.c_attn.weight"], params[p + "attn.c_attn.bias"])  # (B, T, 3C)
    record(acts, p + "attn.qkv", qkv)
    q, k, v = qkv[:, :, :C], qkv[:, :, C : 2 * C], qkv[:, :, 2 * C :]
    q = q.reshape(B, T, NH, HS).transpose(0, 2, 1, 3)  # (B, NH, T, HS)
    k = k.reshape(B, T, NH, HS).transpose(0, 2, 1, 3)
    v = v.reshape(B, T, NH, HS).transpose(0, 2, 1, 3)
    for name, t in (("q", q), ("k", k), ("v", v)):
        record(acts, p + "attn." + name, t)
    sp = {name: params[p + "attn.score." + name] for name in score_shapes(score, NH, HS)}
    att = scores(q, k, score, sp, acts, p)  # (B, NH, T, T)
    allowed = np.arange(T)[None, :] <= np.arange(T)[:, None]  # query i sees keys 0 .. i
    att = softmax(where(allowed, att, -np.inf))
    record(acts, p + "attn.att", att)
    y = att @ v  # (B, NH, T, HS)
    record(acts, p + "attn.y_heads", y)
    y = y.transpose(0, 2, 1, 3).reshape(B, T, C)  # heads side by side again
    record(acts, p + "attn.y", y)
    return linear(y, params[p + "attn.c_proj.weight"], params[p + "attn.c_proj.bias"])


def block(x, params, i, config, score, acts=None):
    # x: (B, T, C) -> (B, T, C); pre-LayerNorm residual block
    p = f"h.{i}."
    h = layernorm(x, params[p + "ln_1.weight"], params[p + "ln_1.bias"])
    record(acts, p + "ln_1", h)
    x = x + attention(h, params, p, config, score, acts)
    h = layernorm(x, params[p + "ln_2.weight"], params[p + "ln_2.bias"])
    return x + mlp(h, params, p)


def gpt(params, idx, config, score, acts=None):
    # idx: (B, T) int -> logits (B, T, V)
    x = embedding(params["wte.weight"], params["wpe.weight"], idx)
    for i in range(config.n_layer):
        x = block(x, params, i, config, score, acts)
    x = layernorm(x, params["ln_f.weight"], params["ln_f.bias"])
    return x @ params["wte.weight"].transpose(1, 0)  # tied head: (B, T, C) @ (C, V)


class ScoredGPT:
    """One variant: the weights (the spec's GPT and the score's own), AdamW's moments, and forward and
    activations, which shared.data.estimate_loss and ablations.attention_entropy call."""

    def __init__(self, config: GPTConfig, score: str, seed: int, dtype=np.float32, adamw=None):
        self.config, self.score, self.dtype = config, score, np.dtype(dtype)
        self.adamw = adamw or AdamWConfig(beta2=0.99)  # as the ablations train
        gpt_state = init_state_dict(config, seed)  # the same draw for every variant
        self.params = {n: np.array(a, dtype=self.dtype) for n, a in gpt_state.items()}
        score_state = init_score_params(config, score, seed)
        self.score_names = list(score_state)
        self.params.update({n: a.astype(self.dtype) for n, a in score_state.items()})
        self.m = {n: np.zeros_like(a) for n, a in self.params.items()}
        self.v = {n: np.zeros_like(a) for n, a in self.params.items()}
        self.step = 0

    def _tensors(self, requires_grad: bool) -> dict[str, Tensor]:
        return {n: Tensor(a, requires_grad) for n, a in self.params.items()}

    def forward(self, idx, targets=None):
        logits = gpt(self._tensors(False), idx, self.config, self.score)
        loss = None if targets is None else float(cross_entropy(logits, targets).data)
        return logits.data, loss

    def activations(self, idx) -> dict[str, np.ndarray]:
        acts = {}
        gpt(self._tensors(False), idx, self.config, self.score, acts)
        return acts

    def grads(self, idx, targets) -> tuple[float, dict[str, np.ndarray]]:
        params = self._tensors(True)
        loss = cross_entropy(gpt(params, idx, self.config, self.score), targets)
        loss.backward()
        return float(loss.data), {n: t.grad for n, t in params.items()}

    def train_step(self, idx, targets, lr: float) -> float:
        # the numpy tier's update (impl_numpy/gpt.py): one global norm, clipped at 1, then AdamW. The
        # score's parameters are not decayed: decay would pull bilinear's W towards 0, not towards the
        # identity it starts at, and tau towards 1, a penalty the dot product does not pay
        loss, grads = self.grads(idx, targets)
        norm = grad_norm(grads)
        if not (math.isfinite(loss) and math.isfinite(norm)):
            raise FloatingPointError(f"{self.score}: loss {loss}, gradient norm {norm} at step {self.step}")
        clip_grad_norm(grads, self.adamw.grad_clip, norm)
        self.step += 1
        for names, adamw in (
            ([n for n in self.params if n not in self.score_names], self.adamw),
            (self.score_names, dataclasses.replace(self.adamw, weight_decay=0.0)),
        ):
            part = {n: self.params[n] for n in names}
            adamw_step(part, grads, self.m, self.v, self.step, lr, adamw)
        return loss


# ---- the dimensions ----


def dimensions(dataset: CharDataset, batch_size: int = 12, seed: int = 0) -> dict:
    """The shapes of one real forward of the shakespeare preset on a batch of validation text, for the
    dot product (every tensor of the tier's attention) and the additive score (its (B, NH, T, T, HS))."""
    config = get_config("shakespeare", vocab_size=dataset.tokenizer.vocab_size)
    x, _ = get_batch(dataset.val, batch_size, config.block_size, np.random.default_rng(seed))
    p = "h.0."
    acts = ScoredGPT(config, "dot", seed).activations(x)
    names = ("ln_1", "attn.qkv", "attn.q", "attn.k", "attn.v", "attn.att", "attn.y_heads", "attn.y")
    shapes = {name: list(acts[p + name].shape) for name in names}
    hidden = ScoredGPT(config, "additive", seed).activations(x)[p + "attn.score.hidden"]
    shapes["attn.score.hidden"] = list(hidden.shape)
    B, T, C, NH, HS = batch_size, config.block_size, config.n_embd, config.n_head, config.head_size
    return {
        "config": config.to_dict(),
        "letters": {"B": B, "T": T, "C": C, "NH": NH, "HS": HS},
        "shapes": shapes,
        "c_attn_params": C * 3 * C + 3 * C,  # (C, 3C) weight and 3C bias, whatever NH
        "att_entries": B * NH * T * T,
        "q_entries": B * NH * T * HS,
        "score_multiply_adds": B * NH * T * T * HS,  # q @ k^T, = B T^2 C
        "hidden_entries": int(hidden.size),
    }


# what each recorded tensor is, for the printed table: (name, letters, what)
DIMENSION_ROWS = [
    ("ln_1", "x", "(B, T, C)", "the block's input after ln_1"),
    ("attn.qkv", "qkv", "(B, T, 3C)", "x @ c_attn.weight (C, 3C) + c_attn.bias (3C)"),
    ("attn.q", "q", "(B, NH, T, HS)", "qkv[..., :C], split into NH heads of HS, heads moved before T"),
    ("attn.k", "k", "(B, NH, T, HS)", "qkv[..., C:2C], the same"),
    ("attn.v", "v", "(B, NH, T, HS)", "qkv[..., 2C:], the same"),
    ("attn.att", "att", "(B, NH, T, T)", "softmax(mask(q @ k^T / sqrt(HS))): row i, query i's weights"),
    ("attn.y_heads", "y", "(B, NH, T, HS)", "att @ v: each head's weighted sum of values"),
    ("attn.y", "y", "(B, T, C)", "heads joined side by side (then c_proj, (C, C))"),
    ("attn.score.hidden", "tanh(qW + kU)", "(B, NH, T, T, HS)", "the additive score only"),
]


def log_dimensions(d: dict, log=print) -> None:
    L = d["letters"]
    log(
        f"one forward of the shakespeare preset on validation text, block 0: B = {L['B']}, T = {L['T']}, "
        f"C = {L['C']}, NH = {L['NH']}, HS = C / NH = {L['HS']}"
    )
    log(f"{'tensor':>14} {'shape':>20} {'letters':>18}  what")
    for key, name, letters, what in DIMENSION_ROWS:
        log(f"{name:>14} {tuple(d['shapes'][key])!s:>20} {letters:>18}  {what}")
    C, NH, HS = L["C"], L["NH"], L["HS"]
    log(
        f"why: the heads split C, NH * HS = {NH} * {HS} = {C}, so c_attn is (C, 3C) whatever NH: "
        f"3C^2 + 3C = {d['c_attn_params']:,} parameters"
    )
    log(
        f"     att holds B*NH*T*T = {d['att_entries']:,} numbers per layer (grows with T^2 and NH), "
        f"q holds B*NH*T*HS = B*T*C = {d['q_entries']:,}"
    )
    log(
        f"     q @ k^T costs B*NH*T*T*HS = B*T*T*C = {d['score_multiply_adds']:,} multiply-adds whatever NH; "
        f"the additive score stores that many numbers ({d['hidden_entries'] // d['att_entries']}x att)"
    )


# ---- training ----


def variants(s: QKVSettings) -> dict[str, tuple[str, int]]:
    """label -> (score, seed): every score from the settings' seed, then the dot product again from each
    noise seed, whose spread says how much of a difference between scores the seed alone could make."""
    runs = {score: (score, s.seed) for score in SCORES}
    runs.update({f"dot, seed {seed}": ("dot", seed) for seed in s.noise_seeds})
    return runs


def train_variants(dataset: CharDataset, s: QKVSettings, log=print, progress=True) -> dict:
    """Trains every variant with the same schedule; those of one seed start from the same GPT weights and
    see the same batches. The variants take their steps in turn (step 0 of each, then step 1 of each,
    ...), so that a change in the machine's load touches every variant's step times alike: their ratios
    are what is compared. Every evaluation uses the same validation windows."""
    from tqdm import tqdm

    config = s.config(dataset.tokenizer.vocab_size)
    T = config.block_size
    labels = variants(s)
    models = {label: ScoredGPT(config, score, seed) for label, (score, seed) in labels.items()}
    probe = get_batch(dataset.val, s.entropy_windows, T, batch_rng(s.seed + 4, 0))[0]
    history = {label: {"step": [], "val": [], "entropy": [], "step_ms": []} for label in labels}
    warmup = min(100, s.steps // 10)
    for step in tqdm(range(s.steps + 1), desc="qkv", disable=not progress, unit="step", leave=False):
        if step % s.eval_interval == 0 or step == s.steps:
            for label, model in models.items():
                h = history[label]
                h["step"].append(step)
                h["val"].append(estimate_loss(model, dataset.val, s.batch_size, s.eval_iters, s.seed + 2))
                h["entropy"].append(attention_entropy(model, probe))
            losses = ", ".join(f"{label} {history[label]['val'][-1]:.3f}" for label in models)
            log(f"step {step:5d}: val loss {losses}")
        if step == s.steps:
            break
        lr = lr_at(step, s.lr, s.lr / 10, warmup, s.steps)
        batches = {
            seed: get_batch(dataset.train, s.batch_size, T, batch_rng(seed, step))
            for _, seed in labels.values()
        }
        for label, model in models.items():
            x, y = batches[labels[label][1]]
            start = time.perf_counter()
            model.train_step(x, y, lr)
            history[label]["step_ms"].append(1000 * (time.perf_counter() - start))
    runs = {}
    for label, model in models.items():
        score, seed = labels[label]
        runs[label] = {
            "score": score,
            "seed": seed,
            "history": history[label],
            "final_train": estimate_loss(model, dataset.train, s.batch_size, s.eval_iters, s.seed + 1),
            "median_ms": float(np.median(history[label]["step_ms"])),
            "score_params": sum(int(model.params[n].size) for n in model.score_names),
            "model": model,
        }
    return runs


def log_runs(runs: dict, config: GPTConfig, log=print) -> None:
    dot_ms = runs["dot"]["median_ms"]
    log(
        f"{'score':>11} {'seed':>5} {'+params':>8} {'val loss':>17} {'train':>6} {'ms/step':>8} "
        f"{'x dot':>6} {'entropy':>14}"
    )
    for label, run in runs.items():
        h = run["history"]
        log(
            f"{label:>11} {run['seed']:>5} {run['score_params']:>8,} {h['val'][0]:>7.3f} -> "
            f"{h['val'][-1]:.3f} {run['final_train']:>6.3f} {run['median_ms']:>8.1f} "
            f"{run['median_ms'] / dot_ms:>6.2f} {h['entropy'][0]:>5.2f} -> {h['entropy'][-1]:.2f}"
        )
    uniform = float(np.mean(np.log(np.arange(1, config.block_size + 1))))
    log(
        f"(+params: the score's parameters, on top of the GPT's {num_params(config):,}; val loss at step 0 "
        f"-> last; ms/step: median over the run, its ratio to dot; entropy (nats) of the attention rows, "
        f"mean over layers and heads at step 0 -> last; uniform over the causal prefix: {uniform:.2f})"
    )
    dots = [run for run in runs.values() if run["score"] == "dot"]
    if len(dots) > 1:
        val = [run["history"]["val"][-1] for run in dots]
        ent = [run["history"]["entropy"][-1] for run in dots]
        log(
            f"the dot product from {len(dots)} seeds (init and batches): val loss {min(val):.3f} .. "
            f"{max(val):.3f} (spread {max(val) - min(val):.3f}), entropy {min(ent):.2f} .. {max(ent):.2f}"
        )


def learned(runs: dict, config: GPTConfig) -> dict:
    """What the scores' own parameters became, per layer and head: bilinear's distance from the identity
    it started at, |W - I|_F / |I|_F, and cosine's temperature tau (it started at sqrt(HS))."""
    out = {}
    HS = config.head_size
    if "bilinear" in runs:
        p = runs["bilinear"]["model"].params
        W = [p[f"h.{i}.attn.score.W"].astype(np.float64) for i in range(config.n_layer)]
        out["bilinear_W_from_I"] = [
            (np.linalg.norm(w - np.eye(HS), axis=(1, 2)) / math.sqrt(HS)).tolist() for w in W
        ]
    if "cosine" in runs:
        p = runs["cosine"]["model"].params
        taus = [np.exp(p[f"h.{i}.attn.score.log_tau"].astype(np.float64)) for i in range(config.n_layer)]
        out["cosine_tau"] = [t.ravel().tolist() for t in taus]
    return out


def log_learned(m: dict, config: GPTConfig, log=print) -> None:
    for key, what in (
        ("bilinear_W_from_I", "bilinear's W after training, |W - I| / |I| for each head"),
        (
            "cosine_tau",
            f"cosine's tau after training for each head (it started at {config.head_size**0.5:.2f})",
        ),
    ):
        if key in m:
            log(what + ":")
            for i, row in enumerate(m[key]):
                log(f"  layer {i}: " + " ".join(f"{v:.2f}" for v in row))


# ---- the figure ----

# Okabe-Ito, colorblind-safe: the model as published (dot) solid blue, the other scores dashed
COLORS = {
    "dot": "#0072B2",
    "unscaled": "#56B4E9",
    "bilinear": "#D55E00",
    "additive": "#009E73",
    "cosine": "#E69F00",
    "neg-dist": "#CC79A7",
}


def plot(runs: dict, config: GPTConfig, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6), gridspec_kw={"width_ratios": [1.3, 1, 1]})
    seeds = [str(run["seed"]) for label, run in runs.items() if label != run["score"]]
    for label, run in runs.items():
        color, ls, _ = _style(label, run)
        if label != run["score"]:  # one legend entry for the dot product's other seeds
            label = f"dot, seeds {' and '.join(seeds)}" if str(run["seed"]) == seeds[0] else None
        axes[0].plot(run["history"]["step"], run["history"]["val"], ls=ls, color=color, label=label)
    # the axis from the second evaluation down: the first one (every run at about log V) would squeeze
    # the curves together
    vals = [v for run in runs.values() for v in run["history"]["val"]]
    start = runs["dot"]["history"]["val"][0]
    later = [run["history"]["val"][min(1, len(run["history"]["val"]) - 1)] for run in runs.values()]
    axes[0].set_ylim(min(vals) - 0.03, max(later) + 0.05)
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("validation loss (nats)")
    axes[0].set_title(f"validation loss (step 0: {start:.2f}, above the axis)")
    axes[0].grid(alpha=0.3)
    axes[0].legend(fontsize=8)

    labels = list(runs)
    ms = [runs[k]["median_ms"] for k in labels]
    _bars(axes[1], runs, ms, [f"{m:.0f} ms ({m / ms[0]:.1f}x)" for m in ms])
    axes[1].set_xlabel("time per training step, median (ms)")
    axes[1].set_title("speed (one run, the variants' steps taken in turn)")

    ent = [runs[k]["history"]["entropy"][-1] for k in labels]
    _bars(axes[2], runs, ent, [f"{e:.2f}" for e in ent])
    uniform = float(np.mean(np.log(np.arange(1, config.block_size + 1))))
    axes[2].axvline(uniform, color="k", ls=":")
    axes[2].text(
        uniform,
        0.98,
        f" uniform over the\n causal prefix, {uniform:.2f}",
        transform=axes[2].get_xaxis_transform(),
        va="top",
        fontsize=8,
    )
    axes[2].set_xlim(0, uniform * 1.35)
    axes[2].set_xlabel("mean over layers and heads (nats)")
    axes[2].set_title("attention entropy after training")
    fig.suptitle(
        f"six scores of (q, k), same init, batches and schedule; the dot product from other seeds dotted "
        f"({config.n_layer} layers, "
        f"NH {config.n_head}, HS {config.head_size}, C {config.n_embd}, T {config.block_size})"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _style(label: str, run: dict) -> tuple[str, str, str | None]:
    """(color, line style, bar hatch): the dot product as published solid, the other scores dashed, the
    dot product from the other seeds dotted black."""
    if label != run["score"]:
        return "#000000", ":", ".."
    return COLORS[label], "-" if label == "dot" else "--", None if label == "dot" else "//"


def _bars(ax, runs: dict, values, texts) -> None:
    labels = list(runs)
    styles = [_style(label, run) for label, run in runs.items()]
    bars = ax.barh(range(len(labels)), values, color=[color for color, _, _ in styles])
    for bar, (color, _, hatch) in zip(bars, styles):
        if hatch is not None:  # hatched, as the dashed and dotted lines
            bar.set_hatch(hatch)
            bar.set_facecolor("white")
            bar.set_edgecolor(color)
    for bar, text in zip(bars, texts):
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, " " + text, va="center", fontsize=8)
    ax.set_xlim(0, max(values) * 1.35)
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.grid(alpha=0.3, axis="x")


# ---- the command ----


def settings_from_args(args) -> QKVSettings:
    s = QKVSettings()
    if args.lr is not None:
        s = dataclasses.replace(s, lr=args.lr)
    if args.steps is not None:
        s = dataclasses.replace(s, steps=args.steps, eval_interval=min(s.eval_interval, args.steps))
    return s


def run_question(args, tier_module, out: Path, log=print, progress=True) -> dict:
    if args.impl is not None and args.impl != ["numpy"]:
        raise ConfigError(
            f"question qkv runs on the numpy tier's engine only (--impl numpy); got --impl {args.impl[0]}"
        )
    s = settings_from_args(args)
    dataset = CharDataset.from_file(shakespeare_path(args.data))
    d = dimensions(dataset)
    log_dimensions(d, log)
    config = s.config(dataset.tokenizer.vocab_size)
    log(
        f"training each score {s.steps} steps, and the dot product from seeds "
        f"{', '.join(map(str, s.noise_seeds))} too: {config.n_layer} layers, NH {config.n_head}, HS "
        f"{config.head_size}, C {config.n_embd}, T {config.block_size}, batch {s.batch_size}, peak lr "
        f"{s.lr:g}, {num_params(config):,} GPT parameters"
    )
    runs = train_variants(dataset, s, log, progress)
    log_runs(runs, config, log)
    m = learned(runs, config)
    log_learned(m, config, log)
    figure, data = out / "questions-qkv.png", out / "questions-qkv.json"
    plot(runs, config, figure)
    rows = {
        label: {
            "score": run["score"],
            "seed": run["seed"],
            "final_val": run["history"]["val"][-1],
            "final_train": run["final_train"],
            "median_ms": run["median_ms"],
            "score_params": run["score_params"],
            "history": run["history"],
        }
        for label, run in runs.items()
    }
    settings = dataclasses.asdict(s)
    data.write_text(json.dumps({"dimensions": d, "settings": settings, "runs": rows, "learned": m}, indent=1))
    return {"dimensions": d, "runs": rows, "paths": {"figure": figure, "data": data}}
