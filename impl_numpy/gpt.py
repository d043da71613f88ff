# The numpy tier's model object: holds the weights and the AdamW state, and offers the spec's tier
# interface (shared/tier.py) over the functions in model.py.
import numpy as np

from impl_numpy.engine import Tensor
from impl_numpy.model import attention, block, cross_entropy, gpt, new_cache
from impl_numpy.optim import adamw_step, clip_grad_norm, grad_norm
from shared.checkpoint import OptimizerState, load_model, save_checkpoint
from shared.checks import (
    check_diverged,
    check_generate_args,
    check_grads,
    check_idx,
    check_lr,
    check_n_prefill,
    check_piece,
    check_step,
    check_targets,
)
from shared.config import GPTConfig
from shared.errors import InputError
from shared.params import check_state_dict, param_shapes
from shared.sampling import generate_tokens
from shared.schedule import AdamWConfig


class GPT:
    def __init__(self, config: GPTConfig, state: dict, dtype=np.float32, adamw: AdamWConfig | None = None):
        check_state_dict(config, state)
        if np.dtype(dtype) not in (np.float32, np.float64):
            raise InputError(f"the numpy tier computes in float32 or float64, not {dtype}")
        self.config = config
        self.dtype = np.dtype(dtype)
        self.adamw = adamw or AdamWConfig()
        # one array per canonical name, in canonical order
        self.params = {n: np.array(state[n], dtype=self.dtype) for n in param_shapes(config)}
        self.m = {n: np.zeros_like(p) for n, p in self.params.items()}
        self.v = {n: np.zeros_like(p) for n, p in self.params.items()}
        self.step = 0

    def _tensors(self, requires_grad: bool) -> dict[str, Tensor]:
        return {n: Tensor(p, requires_grad) for n, p in self.params.items()}

    def forward(self, idx, targets=None):
        idx = check_idx(idx, self.config)
        if targets is not None:
            targets = check_targets(targets, idx, self.config)
        logits = gpt(self._tensors(False), idx, self.config)
        loss = None if targets is None else float(cross_entropy(logits, targets).data)
        return logits.data, loss

    def grads(self, idx, targets):
        idx = check_idx(idx, self.config)
        targets = check_targets(targets, idx, self.config)
        params = self._tensors(True)
        loss = cross_entropy(gpt(params, idx, self.config), targets)
        loss.backward()
        # a parameter the loss does not read (wpe under the position_embedding ablation) has gradient 0
        return float(loss.data), {
            n: np.zeros_like(t.data) if t.grad is None else t.grad for n, t in params.items()
        }

    def backward(self, idx, targets):
        return self.grads(idx, targets)[0]  # the engine's gradients are fresh arrays: nothing to copy

    def train_step(self, idx, targets, lr):
        check_lr(lr)
        check_step(self.step)
        loss, grads = self.grads(idx, targets)  # fresh arrays in the model's dtype: ours to clip
        self._update(grads, lr, loss)
        return loss

    def apply_grads(self, grads, lr):
        check_grads(grads, self.config)
        check_lr(lr)
        check_step(self.step)
        self._update({n: np.array(grads[n], dtype=self.dtype) for n in self.params}, lr)

    def _update(self, grads, lr, loss=None):
        # SPEC.md "Limits": the norm, needed for clipping anyway, is computed always, and a step whose
        # loss or norm is not finite is refused before any weight, moment or the step changes
        norm = grad_norm(grads)
        check_diverged(self.step, loss, norm)
        if self.adamw.grad_clip is not None:
            clip_grad_norm(grads, self.adamw.grad_clip, norm)
        self.step += 1
        adamw_step(self.params, grads, self.m, self.v, self.step, lr, self.adamw)

    def state_dict(self):
        return {n: p.copy() for n, p in self.params.items()}

    def optimizer_state(self) -> OptimizerState:
        m = {n: a.copy() for n, a in self.m.items()}
        v = {n: a.copy() for n, a in self.v.items()}
        return OptimizerState(self.step, m, v, self.adamw)

    def load_optimizer_state(self, opt: OptimizerState):
        self.step = opt.step
        self.m = {n: np.array(opt.m[n], dtype=self.dtype) for n in self.params}
        self.v = {n: np.array(opt.v[n], dtype=self.dtype) for n in self.params}

    def save(self, path, metadata=None):
        opt = self.optimizer_state() if self.step > 0 else None
        save_checkpoint(path, self.config, self.params, opt, metadata)

    def activations(self, idx):
        idx = check_idx(idx, self.config)
        acts = {}
        gpt(self._tensors(False), idx, self.config, acts=acts)
        return acts

    # one piece of the forward on its own (the benchmarks time them)
    def attention_forward(self, x, layer=0):
        x = Tensor(check_piece(x, layer, self.config).astype(self.dtype))
        return attention(x, self._tensors(False), f"h.{layer}.", self.config).data

    def block_forward(self, x, layer=0):
        x = Tensor(check_piece(x, layer, self.config).astype(self.dtype))
        return block(x, self._tensors(False), layer, self.config).data

    def decode(self, idx, n_prefill=1):
        idx = check_idx(idx, self.config)
        check_n_prefill(n_prefill, idx.shape[1])
        params, cache = self._tensors(False), new_cache(self.config)
        logits = [gpt(params, idx[:, :n_prefill], self.config, cache).data]
        for t in range(n_prefill, idx.shape[1]):
            logits.append(gpt(params, idx[:, t : t + 1], self.config, cache).data)
        return np.concatenate(logits, axis=1)

    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, seed=0):
        idx = check_idx(idx, self.config)
        check_generate_args(max_new_tokens, temperature, top_k, self.config)
        params, cache = self._tensors(False), None

        def prefill(window):
            nonlocal cache
            cache = new_cache(self.config)
            return gpt(params, window, self.config, cache).data[:, -1]

        def step(tokens):
            return gpt(params, tokens[:, None], self.config, cache).data[:, -1]

        return generate_tokens(
            idx, max_new_tokens, self.config.block_size, prefill, step, temperature, top_k, seed
        )


def from_state_dict(config, state, dtype=np.float32, adamw=None) -> GPT:
    return GPT(config, state, dtype, adamw)


def load(path, dtype=np.float32, adamw=None) -> GPT:
    return load_model(GPT, path, dtype, adamw)
