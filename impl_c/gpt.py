# The C tier's Python binding (ctypes): the spec's tier interface (shared/tier.py) over libgpt.so.
# Every input is checked here, with the shared checks, before anything reaches C; the C code checks
# again for the standalone program, but never sees an input the Python side would reject.
import ctypes
import dataclasses
import functools
import os
from ctypes import POINTER, c_char_p, c_float, c_int, c_int32, c_int64, c_size_t, c_void_p

import numpy as np

from impl_c.build import library_path
from shared.activations import LAYER_ACTIVATIONS, activation_names
from shared.checkpoint import OptimizerState, load_model, save_checkpoint
from shared.checks import (
    check_generate_args,
    check_grads,
    check_idx,
    check_lr,
    check_n_prefill,
    check_piece,
    check_targets,
)
from shared.config import ABLATIONS, GPTConfig
from shared.errors import DivergenceError, GPTError, InputError
from shared.params import check_state_dict, param_shapes
from shared.sampling import generate_tokens
from shared.schedule import AdamWConfig

ERR_LEN = 512
# gpt.h's error codes that map to a particular error class (the rest are GPTError)
ERR_INPUT, ERR_DIVERGED = 2, 9
MAX_STEP = 2**53  # SPEC.md "Limits": gpt.h's GPT_MAX_STEP
# gpt.h's ACT_* kinds, in the order of the enum
ACT_KINDS = ["emb", *LAYER_ACTIVATIONS, "ln_f", "logits"]


class CConfig(ctypes.Structure):
    # gpt.h's GPTConfig: shared/config.py's fields, same names and order, all int (the ablations 0 / 1)
    _fields_ = [(f.name, c_int) for f in dataclasses.fields(GPTConfig)]

    @classmethod
    def from_config(cls, config: GPTConfig) -> "CConfig":
        # every field, the ablations included: one left out would be 0, which switches it off
        return cls(**{f.name: int(getattr(config, f.name)) for f in dataclasses.fields(config)})

    def to_config(self) -> GPTConfig:
        values = {name: getattr(self, name) for name, _ in self._fields_}
        return GPTConfig(**{n: bool(v) if n in ABLATIONS else v for n, v in values.items()})


# OpenMP's threads wait for each other at the end of every parallel loop, and libgomp has them spin
# 300,000 turns before they sleep. When another process holds one of the cores, a spinning thread
# takes the time its partner needs, and a training step can take ten times as long (measured on 2 cores
# beside a busy process: medians of 90 ms to 1 s against 28 ms quiet). A spin of 10,000 turns costs
# nothing measurable on a quiet machine (shakespeare step 26-33 ms, the default 27-31 ms, PyTorch's
# unchanged) and collapses less. libgomp reads its settings once, when it is first loaded into the
# process (by this library, or earlier by another, PyTorch's included); set GOMP_SPINCOUNT or
# OMP_WAIT_POLICY yourself to choose otherwise (OMP_WAIT_POLICY=passive: steady under load, 15% slower
# on a quiet machine).
SHORT_SPIN = "10000"


@functools.cache
def library() -> ctypes.CDLL:
    chosen = "GOMP_SPINCOUNT" in os.environ or "OMP_WAIT_POLICY" in os.environ
    if not chosen:
        os.environ["GOMP_SPINCOUNT"] = SHORT_SPIN
    try:
        lib = ctypes.CDLL(str(library_path()))
    finally:
        if not chosen:
            del os.environ["GOMP_SPINCOUNT"]
    f = POINTER(c_float)
    signatures = {
        "gpt_create": (c_void_p, [CConfig, c_char_p, c_size_t]),
        "gpt_destroy": (None, [c_void_p]),
        "gpt_error": (c_char_p, [c_void_p]),
        "gpt_config": (CConfig, [c_void_p]),
        "gpt_num_params": (c_size_t, [CConfig]),
        "gpt_params": (f, [c_void_p]),
        "gpt_grads": (f, [c_void_p]),
        "gpt_adam_m": (f, [c_void_p]),
        "gpt_adam_v": (f, [c_void_p]),
        "gpt_get_step": (c_int64, [c_void_p]),
        "gpt_set_step": (c_int, [c_void_p, c_int64]),
        "gpt_forward": (c_int, [c_void_p, POINTER(c_int32), POINTER(c_int32), c_int, c_int, f]),
        "gpt_logits": (f, [c_void_p]),
        "gpt_zero_grad": (None, [c_void_p]),
        "gpt_backward": (c_int, [c_void_p]),
        "gpt_adamw_update": (c_int, [c_void_p, c_float, c_float, c_float, c_float, c_float, c_float, f]),
        "gpt_train_step": (
            c_int,
            [c_void_p, POINTER(c_int32), POINTER(c_int32), c_int, c_int, *[c_float] * 6, f, f],
        ),
        "gpt_activation": (f, [c_void_p, c_int, c_int]),
        "gpt_attention_forward": (c_int, [c_void_p, c_int, f, c_int, c_int, f]),
        "gpt_block_forward": (c_int, [c_void_p, c_int, f, c_int, c_int, f]),
        "gpt_cache_reset": (c_int, [c_void_p, c_int]),
        "gpt_cache_len": (c_int, [c_void_p]),
        "gpt_cache_forward": (c_int, [c_void_p, POINTER(c_int32), c_int, c_int, f]),
        "matmul_forward": (c_int, [f, f, f, f, c_int, c_int, c_int]),
        "gpt_set_num_threads": (None, [c_int]),
        "gpt_get_num_threads": (c_int, []),
        # the C reader and writer of checkpoints (safetensors.h), for the standalone program; the
        # binding itself reads and writes through shared/checkpoint.py, and the tests compare the two
        "st_read_config": (c_int, [c_char_p, POINTER(CConfig), POINTER(c_int), c_char_p, c_size_t]),
        "st_read_checkpoint": (
            c_int,
            [c_char_p, CConfig, f, f, f, POINTER(c_int64), c_char_p, c_size_t, c_char_p, c_size_t],
        ),
        "st_write_checkpoint": (
            c_int,
            [
                c_char_p,
                CConfig,
                f,
                f,
                f,
                c_int64,
                POINTER(c_char_p),
                POINTER(c_char_p),
                c_int,
                c_char_p,
                c_size_t,
            ],
        ),
    }
    for name, (restype, argtypes) in signatures.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes
    return lib


def set_num_threads(n: int) -> None:
    library().gpt_set_num_threads(n)


def matmul(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """x (N, C) @ w (C, OC) + b (OC) in float32 on the tier's fast matmul (the benchmarks time it)."""
    x, w = (np.ascontiguousarray(a, dtype=np.float32) for a in (x, w))
    bias = None if b is None else np.ascontiguousarray(b, dtype=np.float32)
    if (
        x.ndim != 2
        or w.ndim != 2
        or x.shape[1] != w.shape[0]
        or (bias is not None and bias.shape != w.shape[1:])
    ):
        shapes = ", ".join(str(np.shape(a)) for a in (x, w, b) if a is not None)
        raise InputError(f"matmul needs x (N, C), w (C, OC) and b (OC), got {shapes}")
    out = np.empty((x.shape[0], w.shape[1]), dtype=np.float32)
    f = POINTER(c_float)
    rc = library().matmul_forward(
        out.ctypes.data_as(f),
        x.ctypes.data_as(f),
        w.ctypes.data_as(f),
        None if bias is None else bias.ctypes.data_as(f),
        *x.shape,
        w.shape[1],
    )
    if rc != 0:
        raise GPTError("the C tier's matmul could not allocate its packing buffers")
    return out


def _ints(a: np.ndarray):
    # C takes int32 token ids; the shared checks already bounded them by the vocabulary
    a = np.ascontiguousarray(a, dtype=np.int32)
    return a, a.ctypes.data_as(POINTER(c_int32))


class GPT:
    def __init__(self, config: GPTConfig, state: dict, dtype=np.float32, adamw: AdamWConfig | None = None):
        check_state_dict(config, state)
        if np.dtype(dtype) != np.float32:
            raise InputError(f"the C tier computes in float32, not {np.dtype(dtype)}")
        self.config = config
        self.dtype = np.dtype(np.float32)
        self.adamw = adamw or AdamWConfig()
        self._lib = library()
        err = ctypes.create_string_buffer(ERR_LEN)
        self._ptr = self._lib.gpt_create(CConfig.from_config(config), err, ERR_LEN)
        if not self._ptr:
            raise GPTError(f"the C tier could not create the model: {err.value.decode()}")
        n = self._lib.gpt_num_params(CConfig.from_config(config))
        # numpy views of C's flat buffers (canonical order); they live as long as this object
        view = lambda p: np.ctypeslib.as_array(p, shape=(n,))
        self._params = view(self._lib.gpt_params(self._ptr))
        self._grads = view(self._lib.gpt_grads(self._ptr))
        self._m = view(self._lib.gpt_adam_m(self._ptr))
        self._v = view(self._lib.gpt_adam_v(self._ptr))
        self._shapes = param_shapes(config)
        self._params[:] = self._flat(state)

    def __del__(self):
        if getattr(self, "_ptr", None):
            self._lib.gpt_destroy(self._ptr)
            self._ptr = None

    # the flat buffer <-> canonical name -> array
    def _flat(self, tensors: dict) -> np.ndarray:
        return np.concatenate([np.asarray(tensors[n], dtype=np.float32).reshape(-1) for n in self._shapes])

    def _split(self, flat: np.ndarray) -> dict:
        out, offset = {}, 0
        for name, shape in self._shapes.items():
            size = int(np.prod(shape))
            out[name] = flat[offset : offset + size].reshape(shape).copy()
            offset += size
        return out

    def _check(self, rc: int):
        if rc == 0:
            return
        message = self._lib.gpt_error(self._ptr).decode()
        if rc == ERR_DIVERGED:  # "step K: the loss is nan; the run diverged ...", nothing changed
            raise DivergenceError(message)
        if rc == ERR_INPUT:
            raise InputError(message)
        raise GPTError(f"the C tier failed: {message}")

    @property
    def step(self) -> int:
        return self._lib.gpt_get_step(self._ptr)

    def _forward(self, idx, targets=None) -> float | None:
        B, T = idx.shape
        # the arrays must outlive the call: the pointers point into them
        _idx32, idx_p = _ints(idx)
        _tgt32, tgt_p = _ints(targets) if targets is not None else (None, None)
        loss = c_float(0.0)
        self._check(self._lib.gpt_forward(self._ptr, idx_p, tgt_p, B, T, ctypes.byref(loss)))
        return None if targets is None else float(loss.value)

    def forward(self, idx, targets=None):
        idx = check_idx(idx, self.config)
        if targets is not None:
            targets = check_targets(targets, idx, self.config)
        loss = self._forward(idx, targets)
        B, T = idx.shape
        logits = np.ctypeslib.as_array(self._lib.gpt_logits(self._ptr), shape=(B, T, self.config.vocab_size))
        return logits.copy(), loss

    def _backward(self, idx, targets) -> float:
        loss = self._forward(idx, targets)
        self._lib.gpt_zero_grad(self._ptr)
        self._check(self._lib.gpt_backward(self._ptr))
        return loss

    def backward(self, idx, targets):
        idx = check_idx(idx, self.config)
        targets = check_targets(targets, idx, self.config)
        return self._backward(idx, targets)

    def grads(self, idx, targets):
        idx = check_idx(idx, self.config)
        targets = check_targets(targets, idx, self.config)
        loss = self._backward(idx, targets)
        return loss, self._split(self._grads)

    def _adamw_args(self, lr) -> tuple:
        a = self.adamw
        clip = -1.0 if a.grad_clip is None else a.grad_clip  # C: clip only when > 0
        return (lr, a.beta1, a.beta2, a.eps, a.weight_decay, clip)

    def train_step(self, idx, targets, lr):
        # C checks the loss and the gradient norm before the step changes anything (DivergenceError)
        check_lr(lr)
        idx = check_idx(idx, self.config)
        targets = check_targets(targets, idx, self.config)
        B, T = idx.shape
        _idx32, idx_p = _ints(idx)
        _tgt32, tgt_p = _ints(targets)
        loss = c_float(0.0)
        rc = self._lib.gpt_train_step(
            self._ptr, idx_p, tgt_p, B, T, *self._adamw_args(lr), ctypes.byref(loss), None
        )
        self._check(rc)
        return float(loss.value)

    def apply_grads(self, grads, lr):
        # C refuses a gradient that is NaN or inf (InputError naming the tensor) before any change
        check_grads(grads, self.config)
        check_lr(lr)
        self._grads[:] = self._flat(grads)
        self._check(self._lib.gpt_adamw_update(self._ptr, *self._adamw_args(lr), None))

    def state_dict(self):
        return self._split(self._params)

    def optimizer_state(self) -> OptimizerState:
        return OptimizerState(self.step, self._split(self._m), self._split(self._v), self.adamw)

    def load_optimizer_state(self, opt: OptimizerState):
        step = opt.step
        # checked here: ctypes would wrap an int beyond 64 bits silently
        if not isinstance(step, (int, np.integer)) or isinstance(step, bool) or not 0 <= step <= MAX_STEP:
            raise InputError(f"step must be an integer in 0 .. 2^53, got {step!r}")
        self._m[:] = self._flat(opt.m)
        self._v[:] = self._flat(opt.v)
        self._check(self._lib.gpt_set_step(self._ptr, int(step)))

    def save(self, path, metadata=None):
        opt = self.optimizer_state() if self.step > 0 else None
        save_checkpoint(path, self.config, self.state_dict(), opt, metadata)

    def activations(self, idx):
        idx = check_idx(idx, self.config)
        self._forward(idx)
        B, T = idx.shape
        C, NH, V = self.config.n_embd, self.config.n_head, self.config.vocab_size
        shapes = {
            "(B, T, C)": (B, T, C),
            "(B, T, 3C)": (B, T, 3 * C),
            "(B, T, 4C)": (B, T, 4 * C),
            "(B, NH, T, T)": (B, NH, T, T),
        }
        acts = {}
        for name in activation_names(self.config):
            if name.startswith("h."):
                _, layer, kind = name.split(".", 2)
                shape = shapes[LAYER_ACTIVATIONS[kind]]
            else:
                layer, kind = 0, name
                shape = (B, T, V) if name == "logits" else (B, T, C)
            p = self._lib.gpt_activation(self._ptr, ACT_KINDS.index(kind), int(layer))
            acts[name] = np.ctypeslib.as_array(p, shape=shape).copy()
        return acts

    # one piece of the forward on its own (the benchmarks time them): x (B, T, C) float32 -> (B, T, C)
    def _piece(self, fn, x, layer: int) -> np.ndarray:
        x = np.ascontiguousarray(check_piece(x, layer, self.config), dtype=np.float32)
        out = np.empty_like(x)
        f = POINTER(c_float)
        self._check(
            fn(self._ptr, int(layer), x.ctypes.data_as(f), x.shape[0], x.shape[1], out.ctypes.data_as(f))
        )
        return out

    def attention_forward(self, x, layer: int = 0) -> np.ndarray:
        """Block `layer`'s attention (c_attn, the heads, c_proj) on its LayerNorm-ed input x."""
        return self._piece(self._lib.gpt_attention_forward, x, layer)

    def block_forward(self, x, layer: int = 0) -> np.ndarray:
        """The whole block `layer` on the residual stream x."""
        return self._piece(self._lib.gpt_block_forward, x, layer)

    def _cache_forward(self, tokens) -> np.ndarray:
        B, T = tokens.shape
        logits = np.empty((B, T, self.config.vocab_size), dtype=np.float32)
        _tokens32, p = _ints(tokens)
        self._check(self._lib.gpt_cache_forward(self._ptr, p, B, T, logits.ctypes.data_as(POINTER(c_float))))
        return logits

    def decode(self, idx, n_prefill=1):
        idx = check_idx(idx, self.config)
        check_n_prefill(n_prefill, idx.shape[1])
        self._check(self._lib.gpt_cache_reset(self._ptr, idx.shape[0]))
        logits = [self._cache_forward(idx[:, :n_prefill])]
        for t in range(n_prefill, idx.shape[1]):
            logits.append(self._cache_forward(idx[:, t : t + 1]))
        return np.concatenate(logits, axis=1)

    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, seed=0):
        idx = check_idx(idx, self.config)
        check_generate_args(max_new_tokens, temperature, top_k, self.config)

        def prefill(window):
            self._check(self._lib.gpt_cache_reset(self._ptr, window.shape[0]))
            return self._cache_forward(window)[:, -1]

        def step(tokens):
            return self._cache_forward(tokens[:, None])[:, -1]

        return generate_tokens(
            idx, max_new_tokens, self.config.block_size, prefill, step, temperature, top_k, seed
        )


def from_state_dict(config, state, dtype=np.float32, adamw=None) -> GPT:
    return GPT(config, state, dtype, adamw)


def load(path, dtype=np.float32, adamw=None) -> GPT:
    return load_model(GPT, path, dtype, adamw)
