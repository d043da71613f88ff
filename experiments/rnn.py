# `python transformer.py question rnn`: how a transformer and a recurrent network handle time. An LSTM,
# written here on the numpy tier's autograd engine, against the spec's GPT on the same engine with the
# same number of parameters:
#   Part A  both trained on the same Tiny Shakespeare batches with the same AdamW and lr schedule:
#           validation loss against step and against wall time, and the steps each must take one
#           after the other per sequence (the LSTM: T; the GPT: n_layer, whatever T)
#   Part B  a task that needs memory at a distance: random tokens, the target at position t is the
#           token at t - d; accuracy against d for both, and the gradient of the last position's loss
#           with respect to the input embedding k positions back, at init and after training
# The LSTM lives here, not in shared/SPEC.md and the tiers: it is a baseline to measure the GPT
# against, not the model the tiers implement, so it needs one careful implementation and its own
# gradient check (tests/test_rnn.py), not three conformant ones.
import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np

from impl_numpy.engine import Tensor, concat, take_rows
from impl_numpy.model import block, cross_entropy, layernorm  # the LSTM's loss is the GPT's
from impl_numpy.optim import adamw_step, clip_grad_norm, grad_norm
from shared.checks import check_diverged
from shared.config import GPTConfig, get_config
from shared.data import CharDataset, batch_rng, get_batch, shakespeare_path
from shared.errors import ConfigError
from shared.params import init_state_dict, num_params
from shared.schedule import AdamWConfig, lr_at

# ---- the LSTM, as functions over the engine's primitives ----


def lstm_param_shapes(vocab_size: int, n_hidden: int) -> dict[str, tuple[int, ...]]:
    """Name -> shape, in the GPT's vocabulary where a piece has a GPT counterpart: wte is the token
    embedding, weights are (in, out) so that y = x @ W + b. The four gates' columns are side by side in
    the order i, f, o, g: the three sigmoid gates first, so one tanh pass covers them."""
    V, H = vocab_size, n_hidden
    return {
        "wte.weight": (V, H),
        "lstm.weight_ih": (H, 4 * H),
        "lstm.weight_hh": (H, 4 * H),
        "lstm.bias": (4 * H,),
        "lm_head.weight": (H, V),  # not tied to wte: the GPT's tie is part of its spec, not the LSTM's
        "lm_head.bias": (V,),
    }


def lstm_num_params(vocab_size: int, n_hidden: int) -> int:
    # V H + 2 (4 H^2) + 4 H + H V + V = 8 H^2 + (2 V + 4) H + V
    return sum(math.prod(s) for s in lstm_param_shapes(vocab_size, n_hidden).values())


def lstm_hidden_for(n_params: int, vocab_size: int) -> int:
    """The hidden size whose LSTM has the parameter count nearest n_params."""
    V = vocab_size
    H = int((-(2 * V + 4) + math.sqrt((2 * V + 4) ** 2 + 32 * (n_params - V))) / 16)  # 8H^2 + ... = n
    return min((H, H + 1), key=lambda h: abs(lstm_num_params(V, h) - n_params))


def lstm_init(vocab_size: int, n_hidden: int, seed: int = 0, dtype=np.float32) -> dict[str, np.ndarray]:
    """PyTorch's init for nn.Embedding (N(0, 1)), nn.LSTM and nn.Linear (U(-1/sqrt(H), 1/sqrt(H))), drawn
    in the order of lstm_param_shapes from one Generator in float64 and then cast, as the spec's init is
    (shared/params.py). The forget gate's bias starts at 1 (Gers et al. 2000, Jozefowicz et al. 2015) so
    that the cell keeps most of its state from step to step at init instead of halving it."""
    rng = np.random.default_rng(seed)
    bound = 1.0 / math.sqrt(n_hidden)
    params = {}
    for name, shape in lstm_param_shapes(vocab_size, n_hidden).items():
        if name == "wte.weight":
            w = rng.normal(0.0, 1.0, size=shape)
        else:
            w = rng.uniform(-bound, bound, size=shape)
        if name == "lstm.bias":
            w[n_hidden : 2 * n_hidden] = 1.0  # f, the second of i, f, o, g
        params[name] = w.astype(dtype)
    return params


def sigmoid(x):
    # the engine has tanh but no sigmoid, and sigmoid(x) = (1 + tanh(x / 2)) / 2 exactly
    return 0.5 + 0.5 * (x * 0.5).tanh()


def lstm(x, params):
    # x: (B, T, H) -> (B, T, H), the hidden state after each step. The input's part of the gates is one
    # matmul over all T positions; only h @ W_hh waits for the previous step: T dependent steps
    B, T, H = x.shape
    xw = x @ params["lstm.weight_ih"] + params["lstm.bias"]  # (B, T, 4H)
    h = Tensor(np.zeros((B, H), dtype=x.dtype))  # the state before the first token
    c = Tensor(np.zeros((B, H), dtype=x.dtype))
    hs = []
    for t in range(T):
        z = xw[:, t] + h @ params["lstm.weight_hh"]  # (B, 4H)
        ifo = sigmoid(z[:, : 3 * H])  # (B, 3H): input, forget and output gates, each in (0, 1)
        g = z[:, 3 * H :].tanh()  # (B, H): the candidate written into the cell
        i, f, o = ifo[:, :H], ifo[:, H : 2 * H], ifo[:, 2 * H :]
        c = f * c + i * g  # (B, H): the cell, kept by f, written through i
        h = o * c.tanh()
        hs.append(h.reshape(B, 1, H))
    return concat(hs, axis=1)  # (B, T, H)


def lstm_forward(params, idx):
    # idx: (B, T) int -> logits (B, T, V)
    x = take_rows(params["wte.weight"], idx)  # (B, T, H)
    return lstm_head(lstm(x, params), params)


def lstm_head(h, params):
    # h: (B, T, H) -> logits (B, T, V)
    return h @ params["lm_head.weight"] + params["lm_head.bias"]


def lstm_loss(params: dict, idx, targets) -> float:
    return float(cross_entropy(lstm_forward(as_tensors(params), idx), targets).data)


def lstm_grads(params: dict, idx, targets) -> tuple[float, dict]:
    tensors = as_tensors(params, requires_grad=True)
    loss = cross_entropy(lstm_forward(tensors, idx), targets)
    loss.backward()
    return float(loss.data), {n: t.grad for n, t in tensors.items()}


def new_adamw_state(params: dict) -> dict:
    return {
        "m": {n: np.zeros_like(p) for n, p in params.items()},
        "v": {n: np.zeros_like(p) for n, p in params.items()},
        "step": 0,
    }


def lstm_train_step(params: dict, opt: dict, idx, targets, lr: float, adamw) -> float:
    """One step of the spec's AdamW (SPEC.md "AdamW": clipping at the global norm, decay on 2-D
    weights), the numpy tier's own functions, on the LSTM's parameters in place."""
    loss, grads = lstm_grads(params, idx, targets)
    grads = {n: np.array(g, dtype=params[n].dtype) for n, g in grads.items()}  # ours to clip in place
    norm = grad_norm(grads)
    check_diverged(opt["step"], loss, norm)  # as the tiers do: a diverged step is refused, not taken
    if adamw.grad_clip is not None:
        clip_grad_norm(grads, adamw.grad_clip, norm)
    opt["step"] += 1
    adamw_step(params, grads, opt["m"], opt["v"], opt["step"], lr, adamw)
    return loss


# ---- settings ----


@dataclasses.dataclass(frozen=True)
class RNNSettings:
    # Part A: transformer.py's default run (batch 12, peak lr 3e-3, cosine to 3e-4) on the shakespeare
    # preset, 1,000 steps: about 45 ms a step for either model on the numpy tier on 2 idle cores
    steps: int = 1000
    batch_size: int = 12
    lr: float = 3e-3
    eval_interval: int = 100
    eval_iters: int = 10
    seed: int = 1337
    # Part B: a 1-layer GPT (one attention hop) on 8 symbols in windows of 64, and an LSTM of its size;
    # 300 steps of 32 fresh sequences take the GPT to 100% at every d
    alphabet: int = 8
    distances: tuple = (1, 2, 4, 8, 16, 32, 48)
    memory_steps: int = 300
    memory_batch_size: int = 32
    memory_lr: float = 3e-3
    memory_val_size: int = 256  # held-out sequences per d, from a generator of their own
    memory_n_layer: int = 1
    memory_n_head: int = 2
    memory_n_embd: int = 32
    memory_block_size: int = 64

    def __post_init__(self):
        ok = (
            min(self.steps, self.batch_size, self.eval_interval, self.eval_iters) >= 1
            and min(self.memory_steps, self.memory_batch_size, self.memory_val_size) >= 1
            and self.lr > 0.0
            and self.memory_lr > 0.0
            and self.alphabet >= 2
            and all(1 <= d < self.memory_block_size for d in self.distances)
        )
        if not ok:
            raise ConfigError(
                f"rnn settings out of range: {self} (counts >= 1, lr > 0, alphabet >= 2, "
                f"1 <= d < memory_block_size)"
            )

    def memory_config(self) -> GPTConfig:
        return GPTConfig(
            self.memory_n_layer,
            self.memory_n_head,
            self.memory_n_embd,
            block_size=self.memory_block_size,
            vocab_size=self.alphabet,
        )


def settings_from_args(args) -> RNNSettings:
    # --steps and --lr set every run of both parts
    s = RNNSettings()
    if args.steps is not None:
        s = dataclasses.replace(s, steps=args.steps, memory_steps=args.steps)
    if args.lr is not None:
        s = dataclasses.replace(s, lr=args.lr, memory_lr=args.lr)
    return s


# ---- the two models behind the same functions: a training step, the logits, the loss, the gradient
# with respect to the embedded input, the depth of the graph ----


def gpt_model(tier, config: GPTConfig, seed: int) -> dict:
    model = tier.from_state_dict(config, init_state_dict(config, seed), adamw=AdamWConfig(beta2=0.99))
    return {
        "n_params": num_params(config),
        "train_step": model.train_step,
        "logits": lambda idx: model.forward(idx)[0],
        "loss": lambda idx, targets: model.forward(idx, targets)[1],
        "embedding_grad": lambda idx, targets: embedding_grad(
            gpt_embed(model.state_dict(), idx), gpt_from_embedding(model.state_dict(), config), targets
        ),
        "depth": lambda idx: graph_depth(gpt_graph(model.state_dict(), config, idx)),
    }


def lstm_model(vocab_size: int, n_hidden: int, seed: int) -> dict:
    params = lstm_init(vocab_size, n_hidden, seed)
    opt, adamw = new_adamw_state(params), AdamWConfig(beta2=0.99)
    return {
        "n_params": lstm_num_params(vocab_size, n_hidden),
        "train_step": lambda idx, targets, lr: lstm_train_step(params, opt, idx, targets, lr, adamw),
        "logits": lambda idx: lstm_forward(as_tensors(params), idx).data,
        "loss": lambda idx, targets: lstm_loss(params, idx, targets),
        "embedding_grad": lambda idx, targets: embedding_grad(
            params["wte.weight"][idx],
            lambda x: lstm_head(lstm(x, as_tensors(params)), as_tensors(params)),
            targets,
        ),
        "depth": lambda idx: graph_depth(lstm_forward(as_tensors(params, True), idx)),
    }


def as_tensors(params: dict, requires_grad: bool = False) -> dict:
    return {n: Tensor(p, requires_grad) for n, p in params.items()}


def gpt_embed(params: dict, idx) -> np.ndarray:
    # idx: (B, T) -> (B, T, C), wte[idx] + wpe[pos]: the numpy tier's embedding (impl_numpy/model.py)
    return params["wte.weight"][idx] + params["wpe.weight"][: idx.shape[1]]


def gpt_from_embedding(params: dict, config: GPTConfig):
    """The numpy tier's gpt() after its first line: the blocks, ln_f and the tied head, as a function of
    the embedded input, so that the input can be a leaf whose gradient is kept (tests/test_rnn.py checks
    that it gives the tier's logits)."""
    p = as_tensors(params)

    def forward(x):
        # x: (B, T, C) -> logits (B, T, V)
        for i in range(config.n_layer):
            x = block(x, p, i, config)
        x = layernorm(x, p["ln_f.weight"], p["ln_f.bias"])
        return x @ p["wte.weight"].transpose(1, 0)

    return forward


def gpt_graph(params: dict, config: GPTConfig, idx) -> Tensor:
    x = Tensor(gpt_embed(params, idx), requires_grad=True)
    return gpt_from_embedding(params, config)(x)


# ---- measurements ----


def graph_depth(out: Tensor) -> int:
    """The longest chain of primitives from a leaf to `out` in the engine's graph: the operations that
    must run one after another whatever hardware runs them, each waiting for the one before."""
    depth, stack = {}, [(out, False)]
    while stack:  # iterative post-order: the LSTM's graph is deeper than Python's recursion limit
        node, expanded = stack.pop()
        if expanded:
            depth[id(node)] = 1 + max((depth[id(p)] for p in node._parents), default=-1)
        elif id(node) not in depth:
            stack.append((node, True))
            stack.extend((p, False) for p in node._parents if id(p) not in depth)
    return depth[id(out)]


def embedding_grad(x: np.ndarray, forward, targets: np.ndarray) -> np.ndarray:
    """x: (B, T, C) the embedded input, forward: x -> logits (B, T, V), targets: (B,) the token asked for
    at the last position. The loss at the last position alone, summed over the B sequences (each
    sequence's gradient its own); returns, for k = 0 .. T-1, the mean over B of the norm of its gradient
    with respect to the input embedding k positions back, (T,)."""
    B, T, _ = x.shape
    x = Tensor(np.array(x), requires_grad=True)
    y = np.full((B, T), -1, dtype=np.int64)
    y[:, -1] = targets
    (cross_entropy(forward(x), y) * float(B)).backward()
    norms = np.sqrt((x.grad.astype(np.float64) ** 2).sum(-1))  # (B, T)
    return norms.mean(0)[::-1].copy()  # index k: position T-1-k


def mean_loss(model: dict, data: np.ndarray, T: int, batch_size: int, iters: int, seed: int) -> float:
    # shared.data.estimate_loss's windows (the same Generator per batch), for either model
    losses = [model["loss"](*get_batch(data, batch_size, T, batch_rng(seed, k))) for k in range(iters)]
    return float(np.mean(losses))


def train(
    models: dict, batch, evaluate, steps: int, lr: float, eval_interval: int, label: str, progress=True
):
    """Trains the models side by side, one step of each in turn on the same batch(step) -> (x, y), so that
    the machine's load, whatever it does meanwhile, falls on both alike. The schedule of transformer.py
    (warmup over a tenth of the steps, at most 100, then cosine to lr / 10). evaluate(model) at step 0,
    every eval_interval steps and at the end (where evaluate is None, only the step and the time).
    "time" is each model's training time: its own steps, not the evaluations. Returns name -> history."""
    from tqdm import tqdm

    histories = {name: {"step": [], "val": [], "time": []} for name in models}
    elapsed, warmup = dict.fromkeys(models, 0.0), min(100, steps // 10)
    for step in tqdm(range(steps + 1), desc=label, disable=not progress, unit="step", leave=False):
        if step % eval_interval == 0 or step == steps:
            for name, model in models.items():
                histories[name]["step"].append(step)
                if evaluate is not None:
                    histories[name]["val"].append(evaluate(model))
                histories[name]["time"].append(elapsed[name])
        if step == steps:
            break
        x, y = batch(step)
        rate = lr_at(step, lr, lr / 10, warmup, steps)
        for name, model in models.items():
            start = time.perf_counter()
            model["train_step"](x, y, rate)  # a diverged step raises (SPEC.md "Limits")
            elapsed[name] += time.perf_counter() - start
    return histories


# ---- Part A: Tiny Shakespeare ----


def run_shakespeare(tier, dataset: CharDataset, s: RNNSettings, log=print, progress=True) -> dict:
    config = get_config("shakespeare", vocab_size=dataset.tokenizer.vocab_size)
    V, T = config.vocab_size, config.block_size
    n_hidden = lstm_hidden_for(num_params(config), V)
    models = {
        "GPT": gpt_model(tier, config, s.seed),
        "LSTM": lstm_model(V, n_hidden, s.seed),
    }
    log(
        f"GPT: the shakespeare preset ({config.n_layer} layers, n_embd {config.n_embd}), "
        f"{models['GPT']['n_params']:,} parameters; LSTM: hidden size {n_hidden}, "
        f"{models['LSTM']['n_params']:,} parameters "
        f"({models['LSTM']['n_params'] / models['GPT']['n_params'] - 1:+.2%})"
    )

    def batch(step):
        return get_batch(dataset.train, s.batch_size, T, batch_rng(s.seed, step))

    def evaluate(model):
        return mean_loss(model, dataset.val, T, s.batch_size, s.eval_iters, s.seed + 2)

    histories = train(models, batch, evaluate, s.steps, s.lr, s.eval_interval, "GPT and LSTM", progress)
    one = np.zeros((1, T), dtype=np.int64)
    runs = {
        name: {
            "n_params": model["n_params"],
            "history": histories[name],
            "graph_depth": {t: model["depth"](one[:, :t]) for t in (T // 4, T // 2, T)},
        }
        for name, model in models.items()
    }
    runs["LSTM"]["n_hidden"] = n_hidden
    runs["GPT"]["config"] = config.to_dict()
    log_shakespeare(runs, s, T, log)
    return runs


def log_shakespeare(runs: dict, s: RNNSettings, T: int, log=print) -> None:
    gpt, rnn = runs["GPT"], runs["LSTM"]
    log(
        f"{s.steps} steps of {s.batch_size} windows of {T} characters, the same batches for both; "
        f"validation loss on {s.eval_iters} batches; time: the training steps alone, evaluations left out"
    )
    log(f"{'step':>5} {'GPT val':>8} {'time':>7} {'LSTM val':>9} {'time':>7}")
    for i, step in enumerate(gpt["history"]["step"]):
        g, r = gpt["history"], rnn["history"]
        log(f"{step:>5} {g['val'][i]:>8.3f} {g['time'][i]:>6.1f}s {r['val'][i]:>9.3f} {r['time'][i]:>6.1f}s")
    log(
        f"ms per training step: GPT {1000 * gpt['history']['time'][-1] / s.steps:.1f}, "
        f"LSTM {1000 * rnn['history']['time'][-1] / s.steps:.1f}"
    )
    log(
        f"sequential steps per sequence: LSTM {T} (one cell update per position, each waiting for the one "
        f"before); GPT {gpt['config']['n_layer']} (one per block, each computing all {T} positions at once)"
    )
    log(
        "the longest chain of the engine's primitives from the input to the logits (operations that must "
        "run one after another): "
        + "; ".join(
            f"T = {t}: GPT {gpt['graph_depth'][t]}, LSTM {rnn['graph_depth'][t]}" for t in gpt["graph_depth"]
        )
    )


# ---- Part B: memory at a distance ----


def shift_task(rng, count: int, T: int, alphabet: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    """count sequences of T tokens uniform over 0 .. alphabet-1, and the targets: at position t the token
    at t - d, for t >= d; -1 (not counted) before, where there is nothing d back."""
    x = rng.integers(0, alphabet, size=(count, T))
    y = np.full_like(x, -1)
    y[:, d:] = x[:, :-d]
    return x, y


def loss_and_accuracy(logits: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """The mean cross-entropy and the accuracy (argmax) over the counted positions (y != -1)."""
    counted = y != -1
    z = logits[counted].astype(np.float64)  # (N, V)
    z = z - z.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    nll = -np.take_along_axis(logp, y[counted][:, None], axis=-1)
    return float(nll.mean()), float((z.argmax(-1) == y[counted]).mean())


def run_memory(tier, s: RNNSettings, log=print, progress=True) -> dict:
    config = s.memory_config()
    A, T = s.alphabet, s.memory_block_size
    n_hidden = lstm_hidden_for(num_params(config), A)
    n_gpt, n_lstm = num_params(config), lstm_num_params(A, n_hidden)
    log(
        f"memory at a distance: {A} symbols, windows of {T}, the target at t is the token at t - d; "
        f"GPT {config.n_layer} layer, {config.n_head} heads, n_embd {config.n_embd}: {n_gpt:,} parameters; "
        f"LSTM hidden size {n_hidden}: {n_lstm:,} ({n_lstm / n_gpt - 1:+.2%}); "
        f"{s.memory_steps} steps of {s.memory_batch_size} fresh sequences, {s.memory_val_size} held out"
    )
    probe = np.random.default_rng([s.seed, 2]).integers(0, A, size=(64, T))  # for the gradient profile
    # at init nothing has been learned about d: one profile for every d, the last position asked for the
    # first token (any token would do, the untrained model's output does not favour one)
    init = {
        "GPT": gpt_model(tier, config, s.seed)["embedding_grad"](probe, probe[:, 0]),
        "LSTM": lstm_model(A, n_hidden, s.seed)["embedding_grad"](probe, probe[:, 0]),
    }
    rows = []
    for d in s.distances:
        models = {"GPT": gpt_model(tier, config, s.seed), "LSTM": lstm_model(A, n_hidden, s.seed)}
        row = {"d": d, **train_memory(models, s, d, probe, progress)}
        rows.append(row)
        log(
            f"d {d:>2}: accuracy GPT {row['GPT']['accuracy']:.3f}, LSTM {row['LSTM']['accuracy']:.3f}; "
            f"val loss GPT {row['GPT']['val_loss']:.3f}, LSTM {row['LSTM']['val_loss']:.3f}"
        )
    log_memory(rows, init, s, log)
    return {
        "config": config.to_dict(),
        "n_hidden": n_hidden,
        "n_params": {"GPT": n_gpt, "LSTM": n_lstm},
        "rows": rows,
        "init_grad_profile": {name: g.tolist() for name, g in init.items()},
    }


def train_memory(models: dict, s: RNNSettings, d: int, probe: np.ndarray, progress=True) -> dict:
    """Trains the models side by side on fresh sequences for distance d, then measures each one's held-out
    accuracy and the gradient of its last position's loss. Returns name -> measurements."""
    T, A = s.memory_block_size, s.alphabet
    x_val, y_val = shift_task(np.random.default_rng([s.seed, d, 1]), s.memory_val_size, T, A, d)

    def batch(step):
        return shift_task(np.random.default_rng([s.seed, d, 0, step]), s.memory_batch_size, T, A, d)

    before = {name: loss_and_accuracy(model["logits"](x_val), y_val)[0] for name, model in models.items()}
    # evaluated at the start and the end only, here: a forward over the held-out set costs a few steps
    histories = train(models, batch, None, s.memory_steps, s.memory_lr, s.memory_steps, f"d={d}", progress)
    rows = {}
    for name, model in models.items():
        loss, acc = loss_and_accuracy(model["logits"](x_val), y_val)
        # the last position asks for the token d back: how strongly does its loss reach that input?
        grad = model["embedding_grad"](probe, probe[:, T - 1 - d])
        rows[name] = {
            "accuracy": acc,
            "val_loss": loss,
            "val_loss_at_init": before[name],
            "train_time": histories[name]["time"][-1],
            "grad_at_d": float(grad[d]),
            # the typical input elsewhere: k = 0 (the current token, read directly) and k = d left out
            "grad_elsewhere": float(np.median(np.delete(grad, [0, d]))),
            "grad_profile": grad.tolist(),
        }
    return rows


def log_memory(rows: list, init: dict, s: RNNSettings, log=print) -> None:
    log(
        f"after {s.memory_steps} steps (chance {1 / s.alphabet:.3f}, loss log {s.alphabet} = "
        f"{math.log(s.alphabet):.3f}); |dL/dx|: the gradient of the last position's loss with respect to "
        "the input embedding d positions back, mean over 64 sequences; elsewhere: its median over the other "
        "inputs k = 1 .. 63 back"
    )
    log(
        f"{'d':>3} {'acc GPT':>8} {'acc LSTM':>8} {'loss GPT':>8} {'loss LSTM':>9} "
        f"{'|dL/dx| GPT':>11} {'LSTM':>8} {'elsewhere GPT':>13} {'LSTM':>8} {'at init GPT':>11} {'LSTM':>8}"
    )
    for r in rows:
        d, g, l = r["d"], r["GPT"], r["LSTM"]
        log(
            f"{d:>3} {g['accuracy']:>8.3f} {l['accuracy']:>8.3f} {g['val_loss']:>8.3f} {l['val_loss']:>9.3f} "
            f"{g['grad_at_d']:>11.2e} {l['grad_at_d']:>8.2e} {g['grad_elsewhere']:>13.2e} "
            f"{l['grad_elsewhere']:>8.2e} {init['GPT'][d]:>11.2e} {init['LSTM'][d]:>8.2e}"
        )


# ---- the figure ----

# Okabe-Ito, colorblind-safe: the GPT (the model the tiers implement) solid, the LSTM dashed
BLUE, VERMILION = "#0072B2", "#D55E00"
STYLE = {"GPT": {"color": BLUE, "ls": "-"}, "LSTM": {"color": VERMILION, "ls": "--"}}
MARKER = {"GPT": "o", "LSTM": "s"}


def plot(shakespeare: dict, memory: dict, s: RNNSettings, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    (ax_step, ax_time), (ax_acc, ax_grad) = axes
    for name, run in shakespeare.items():
        h = run["history"]
        T = max(run["graph_depth"])
        label = f"{name}, {run['n_params']:,} parameters, {run['graph_depth'][T]} ops in a chain at T = {T}"
        ax_step.plot(h["step"], h["val"], label=label, **STYLE[name])
        ax_time.plot(h["time"], h["val"], marker=".", label=label, **STYLE[name])
    ax_step.set_xlabel("step")
    ax_time.set_xlabel("training time (s, numpy tier, the evaluations left out)")
    for ax, title in ((ax_step, "against step"), (ax_time, "against wall time")):
        ax.set_ylabel("validation loss (nats)")
        ax.set_title(f"Tiny Shakespeare, same batches and schedule: {title}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)

    ds = [r["d"] for r in memory["rows"]]
    for name in ("GPT", "LSTM"):
        acc = [r[name]["accuracy"] for r in memory["rows"]]
        ax_acc.plot(
            ds, acc, marker="o", label=f"{name}, {memory['n_params'][name]:,} parameters", **STYLE[name]
        )
    ax_acc.axhline(1 / s.alphabet, color="k", ls=":", label=f"chance, 1/{s.alphabet}")
    ax_acc.set_xlabel("d: the target at position t is the token at t - d")
    ax_acc.set_ylabel(f"held-out accuracy after {s.memory_steps} steps")
    ax_acc.set_ylim(0, 1.05)
    ax_acc.set_xscale("log", base=2)
    ax_acc.set_xticks(ds, [str(d) for d in ds])
    ax_acc.set_title("recall the token d positions back")
    ax_acc.grid(alpha=0.3)
    ax_acc.legend(fontsize=8)

    k = np.arange(len(memory["init_grad_profile"]["GPT"]))
    for name in ("GPT", "LSTM"):
        ax_grad.plot(
            k, memory["init_grad_profile"][name], lw=1, label=f"{name} at init, every k", **STYLE[name]
        )
        trained = [r[name]["grad_at_d"] for r in memory["rows"]]
        ax_grad.plot(
            ds,
            trained,
            marker=MARKER[name],
            lw=0,
            color=STYLE[name]["color"],
            label=f"{name} trained at d, at k = d",
        )
    ax_grad.set_yscale("log")
    ax_grad.set_xlabel("k: how far back the input is from the last position")
    ax_grad.set_ylabel("|d loss(last position) / d embedding(T-1-k)|")
    ax_grad.set_title("the gradient's path: one attention hop against k recurrent steps")
    ax_grad.grid(alpha=0.3, which="both")
    ax_grad.legend(fontsize=8)
    fig.suptitle("A transformer and an LSTM of equal size on the numpy tier: how each handles time")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ---- the command ----


def run_question(args, tier_module, out: Path, log=print, progress=True) -> dict:
    if args.impl is not None and args.impl != ["numpy"]:
        raise ConfigError(
            f"question rnn runs both models on the numpy tier's engine (--impl numpy); got --impl {args.impl[0]}"
        )
    s = settings_from_args(args)
    tier = tier_module("numpy")
    dataset = CharDataset.from_file(shakespeare_path(args.data))
    shakespeare = run_shakespeare(tier, dataset, s, log, progress)
    memory = run_memory(tier, s, log, progress)
    path, data = out / "questions-rnn.png", out / "questions-rnn.json"
    plot(shakespeare, memory, s, path)
    data.write_text(
        json.dumps(
            {"settings": dataclasses.asdict(s), "shakespeare": shakespeare, "memory": memory}, indent=1
        )
    )
    return {"shakespeare": shakespeare, "memory": memory, "paths": {"figure": path, "data": data}}
