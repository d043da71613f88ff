# The tinygrad tier's model object: holds the weights and the AdamW state as tinygrad Tensors on
# tinygrad's default device (or on several, data-parallel: see device_names()), and offers the spec's
# tier interface (shared/tier.py) over the functions in model.py and optim.py.
#
# Compiling is what costs in tinygrad (seconds for every graph of a new shape), so every graph that is
# run more than once is captured with TinyJit and replayed, and shapes are kept few: every graph runs
# on (B, block_size), shorter inputs padded with token 0 and target -1. Padding changes no result: causal
# attention keeps position t blind to the positions after it, and the padded positions are not counted
# in the loss, so their gradient is exactly zero. The decode step runs on (B, 1) with a cache of
# block_size slots. So a model compiles at most five graphs per batch size (forward, backward,
# activations, prefill, decode step) and two for the optimizer (the gradient norm, checked on the host,
# then the update), and, when the benchmarks ask for one block's attention or the whole block on its
# own, one graph per batch size and layer for each.
import functools
import math
import os
import shutil
import subprocess

import numpy as np
from tinygrad import Context, Device, Tensor, TinyJit, dtypes
from tinygrad.device import MultiBuffer

from impl_tinygrad.model import attention, block, compute_weights, cross_entropy, gpt, new_cache
from impl_tinygrad.optim import adamw_scalars, adamw_step, clip_grad_norm, grad_norm
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
from shared.params import check_state_dict, is_decayed, param_shapes
from shared.sampling import generate_tokens
from shared.schedule import AdamWConfig

NO_CLANG = (
    "tinygrad's CPU backend compiles its kernels with clang, which is not installed "
    "(install it with `apt-get install -y clang`, or pick another device with DEV=...)"
)


def _serial_compiles_in_forked_children() -> None:
    # tinygrad compiles a graph's kernels in a pool of worker processes that it creates once, on first
    # use. A process forked after that (multiprocessing's default start method on Linux) inherits the
    # pool object but not the threads that feed it, and its first new kernel waited forever on it. In
    # the child, forget the parent's pool and compile in the process itself (PARALLEL=0).
    from tinygrad.engine import worker

    def forget_pool():
        worker.worker_pool = None
        worker.PARALLEL.value = 0

    os.register_at_fork(after_in_child=forget_pool)


_serial_compiles_in_forked_children()


def default_device() -> str:
    # tinygrad's choice of device. Without clang its CPU backend either finds "no usable devices", or
    # cannot run clang on its own start-up code (whichever renderer DEV names: CPU:X86 and CPU:LLVM
    # too), or, with a warm kernel cache, fails at the first new kernel: say what is missing instead.
    clang = shutil.which(os.environ.get("CC", "clang"))
    try:
        device = Device.DEFAULT
        compiler = type(Device[device].compiler).__name__
    except (RuntimeError, OSError) as e:
        if clang is None:
            raise RuntimeError(NO_CLANG) from e
        raise
    if compiler == "ClangCompiler" and clang is None:
        raise RuntimeError(NO_CLANG)
    return device


def check_compute_dtype(devices, mixed_precision) -> None:
    # tinygrad's CPU backend writes bfloat16 as clang's __bf16, which clang 14 and older lack on x86:
    # the first bfloat16 kernel would fail deep inside tinygrad. Ask clang itself, before any work.
    if mixed_precision != "bfloat16":
        return
    if not any(type(Device[d].compiler).__name__ == "ClangCompiler" for d in devices):
        return
    cc = os.environ.get("CC", "clang")
    source = b"__bf16 first(__bf16 *p) { return p[0]; }"
    cmd = [cc, "-x", "c", "-c", "-", "-o", os.devnull]
    probe = subprocess.run(cmd, input=source, capture_output=True, check=False)
    if probe.returncode != 0:
        raise InputError(
            f"mixed_precision 'bfloat16': tinygrad's CPU backend needs clang 15 or later for it, and "
            f"{cc} has no __bf16; put a newer clang first on PATH, set DEV=CPU:LLVM, or use float16"
        )


def device_names(spec=None) -> tuple[str, ...]:
    # the devices a model runs on: None, tinygrad's default device alone; an int N, the first N
    # instances of its kind ("CPU:0", "CPU:1", ...: tinygrad opens as many CPU devices as it is asked
    # for); or the names themselves, as tinygrad spells them ("CUDA:0", "CUDA:1"). Data-parallel over
    # more than one: the weights and the AdamW state are copied to every device, each batch is split
    # by rows, and tinygrad sums the gradients across the devices (SPEC.md "Data parallel").
    if spec is None:
        return (default_device(),)
    if isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
        if spec < 1:
            raise InputError(f"devices must be at least 1, not {spec}")
        kind = default_device().split(":")[0]
        spec = tuple(f"{kind}:{i}" for i in range(spec))
    if isinstance(spec, str) or not all(isinstance(d, str) for d in spec) or len(spec) == 0:
        raise InputError(f"devices must be None, a count or a tuple of device names, not {spec!r}")
    names = tuple(Device.canonicalize(d) for d in spec)  # tinygrad's spelling: "CPU:0" is "CPU"
    if len(set(names)) != len(names):
        raise InputError(f"devices names one device twice: {spec!r}")
    for name in names:
        try:
            Device[name]
        except Exception as e:
            raise InputError(f"tinygrad has no device {name!r}: {e}") from e
    return names


# SPEC.md "Mixed precision": the dtypes the matrix products may run in, the weights kept in float32
COMPUTE_DTYPES = {"float16": dtypes.float16, "bfloat16": dtypes.bfloat16}
# float16's dynamic loss scaling, with torch.amp.GradScaler's defaults: the first scale, and the passes
# without an overflow after which it doubles (it halves at every overflow, down to 1)
LOSS_SCALE = 2.0**16
LOSS_SCALE_GROWTH = 2000


# Each parameter's slot in the flat buffers starts at a multiple of ALIGN floats (64 bytes): tinygrad's
# CPU kernels read a parameter's view with vector loads that assume an aligned address, and crash where
# it is not (a float4 load at an offset of 98 floats, with n_embd 14 and vocab_size 7). The gaps hold
# zeros in the parameters, gradients and moments, and AdamW keeps them zero (g = 0: m = v = 0, no step).
ALIGN = 16


def slots(config: GPTConfig) -> tuple[dict, int]:
    # canonical name -> (offset, shape) in the flat buffers, canonical order; and the buffers' length
    out, offset = {}, 0
    for name, shape in param_shapes(config).items():
        out[name] = (offset, shape)
        offset += -(-int(np.prod(shape)) // ALIGN) * ALIGN
    return out, offset


def compiled(fn):
    # fn captured by TinyJit and replayed. TinyJit runs a function once as it is, captures its kernels
    # on the second call and replays them from the third; our graphs do nothing on a first call that
    # must not be replayed, so they are captured at once and their kernels compiled once, not twice.
    # Without tinygrad's memory planner: it packs a graph's intermediate buffers into one arena, and a
    # kernel that reads the arena at an offset is a kernel of its own, so each layer compiled its own.
    jit = TinyJit(fn)
    jit.cnt = 1

    def run(*args):
        with Context(NO_MEMORY_PLANNER=1):
            return jit(*args)

    return run


def _buffers(t: Tensor) -> list:
    # the buffers behind a realized Tensor: one per device
    b = t.uop.buffer
    return list(b.bufs) if isinstance(b, MultiBuffer) else [b]


class GPT:
    def __init__(
        self,
        config: GPTConfig,
        state: dict,
        dtype=np.float32,
        adamw: AdamWConfig | None = None,
        devices=None,
        mixed_precision: str | None = None,
    ):
        check_state_dict(config, state)
        if np.dtype(dtype) != np.float32:
            raise InputError(f"the tinygrad tier computes in float32, not {np.dtype(dtype)}")
        if mixed_precision is not None and (
            not isinstance(mixed_precision, str) or mixed_precision not in COMPUTE_DTYPES
        ):
            raise InputError(
                f"mixed_precision must be None, 'float16' or 'bfloat16', not {mixed_precision!r}"
            )
        self.config = config
        self.dtype = np.dtype(np.float32)  # the weights', the gradients', the moments', the results'
        self.mixed_precision = mixed_precision
        self.compute = dtypes.float32 if mixed_precision is None else COMPUTE_DTYPES[mixed_precision]
        # float16 only: its smallest normal number, 6e-5, is above many gradients (bfloat16 has
        # float32's range), so the loss is multiplied by the scale before the backward pass
        self.loss_scale = LOSS_SCALE if mixed_precision == "float16" else None
        self._passes_since_overflow = 0
        self.adamw = adamw or AdamWConfig()
        self.devices = device_names(devices)
        check_compute_dtype(self.devices, mixed_precision)
        self.device = self.devices[0]  # where the host's arrays land before they are copied or split
        # The parameters, their gradients and the AdamW moments are each one flat buffer in canonical
        # order (as in the C tier, with aligned slots), so the optimizer is a handful of kernels. The
        # model reads the parameters, and writes the gradients, through one buffer view per canonical
        # name (memory shared, no copy): to a kernel a view is a buffer of its own, so a layer's
        # kernels are the same for every layer and compile once. All are updated in place (assign),
        # never replaced: the compiled graphs hold their buffers.
        self._slots, self._size = slots(config)
        self._p = self._put(self._flat(state))
        self._g, self._m, self._v = (self._zeros() for _ in range(3))
        Tensor.realize(self._p, self._g, self._m, self._v)
        self.params, self._grads = self._views(self._p), self._views(self._g)
        decayed = np.zeros(self._size, dtype=bool)
        for name, (offset, shape) in self._slots.items():
            decayed[offset : offset + int(np.prod(shape))] = is_decayed(name, shape)
        self._decayed = self._replicated(Tensor(decayed, device=self.device)).realize()
        self.step = 0
        self._adamw = compiled(self._adamw_fn)
        self._norm = compiled(self._norm_fn)
        self._jit = {}  # (graph, B) -> compiled graph
        self._caches = {}  # B -> the KV cache for batch B

    # ---- host <-> device ----
    def _flat(self, tensors: dict) -> np.ndarray:
        out = np.zeros(self._size, dtype=np.float32)  # the gaps between the slots stay zero
        for name, (offset, shape) in self._slots.items():
            out[offset : offset + int(np.prod(shape))] = np.asarray(tensors[name]).reshape(-1)
        return out

    def _split(self, flat: Tensor) -> dict:
        a = flat.numpy()
        return {
            name: a[offset : offset + int(np.prod(shape))].reshape(shape).copy()
            for name, (offset, shape) in self._slots.items()
        }

    def _views(self, flat: Tensor) -> dict:
        # realizing a contiguous slice of a buffer makes a view of that buffer, not a copy; a copy
        # would leave the model reading parameters the optimizer never updates, so it is checked
        out = {
            name: flat[offset : offset + int(np.prod(shape))].reshape(shape).contiguous()
            for name, (offset, shape) in self._slots.items()
        }
        Tensor.realize(*out.values())
        if not all(
            all(v.base is f for v, f in zip(_buffers(t), _buffers(flat), strict=True)) for t in out.values()
        ):
            raise RuntimeError("tinygrad copied a parameter view instead of sharing the flat buffer")
        return out

    def _replicated(self, t: Tensor) -> Tensor:
        # t whole on every device (on one device: as it is)
        return t if len(self.devices) == 1 else t.shard(self.devices)

    def _rows(self, B: int) -> int:
        # the batch's rows padded to a multiple of the device count: tinygrad splits a batch only
        # into equal shards. The padded rows are token 0 with every target -1, so, like the padded
        # positions, they change no loss and no gradient; their logits are cut off.
        return -(-B // len(self.devices)) * len(self.devices)

    def _batch(self, a: np.ndarray) -> Tensor:
        # a (B', ...) host array, split by rows across the devices
        t = Tensor(a, device=self.device)
        return t if len(self.devices) == 1 else t.shard(self.devices, axis=0)

    def _put(self, a: np.ndarray) -> Tensor:
        # a copy: a Tensor made from a numpy array reads that array's memory until it is realized
        return self._replicated(Tensor(np.array(a, dtype=np.float32), device=self.device)).contiguous()

    def _zeros(self) -> Tensor:
        return self._replicated(
            Tensor.zeros(self._size, dtype=dtypes.float32, device=self.device)
        ).contiguous()

    def _ints(self, a, fill=0) -> Tensor:
        # token ids (fill 0) or targets (fill -1) as int32, padded to block_size positions and _rows
        out = np.full((self._rows(a.shape[0]), self.config.block_size), fill, dtype=np.int32)
        out[: a.shape[0], : a.shape[1]] = a
        return self._batch(out)

    def _floats(self, x) -> Tensor:
        # a block's input (B, T, C) as float32, padded with zeros to block_size positions and _rows
        out = np.zeros((self._rows(x.shape[0]), self.config.block_size, x.shape[2]), dtype=np.float32)
        out[: x.shape[0], : x.shape[1]] = x
        return self._batch(out)

    def _compiled(self, fn, *shape):
        # one compiled graph per function and shape: the batch size (and, for a block's piece, the
        # layer, whose weights the graph holds)
        key = (fn.__name__, *shape)
        if key not in self._jit:
            self._jit[key] = compiled(fn)
        return self._jit[key]

    # ---- the compiled graphs ----
    def _forward_fn(self, idx, targets):
        logits = gpt(self.params, idx, self.config, compute=self.compute)
        loss = cross_entropy(logits, targets)
        return logits.realize(loss), loss

    def _backward_fn(self, idx, targets, scale=None):
        # scale: float16's loss scale, a (1,) Tensor (the gradients are of loss * scale, divided by it
        # in float32: a power of two, exactly); None otherwise
        loss = cross_entropy(gpt(self.params, idx, self.config, compute=self.compute), targets)
        scaled = loss if scale is None else loss * scale[0]
        for g, d in zip(self._grads.values(), scaled.gradient(*self.params.values())):
            g.assign(d if scale is None else d / scale[0])
        return loss.realize(*self._grads.values())

    def _norm_fn(self, g):
        return grad_norm(g).realize()

    def _adamw_fn(self, scalars):
        # the norm arrives with the scalars, from _norm_fn: computed once, checked on the host
        g = (
            self._g
            if self.adamw.grad_clip is None
            else clip_grad_norm(self._g, self.adamw.grad_clip, scalars[3])
        )
        adamw_step(self._p, g, self._m, self._v, self._decayed, scalars, self.adamw)
        Tensor.realize(self._p, self._m, self._v)

    def _attention_fn(self, x, layer):
        params = compute_weights(self.params, self.compute)
        return attention(x, params, f"h.{layer}.", self.config).realize()

    def _block_fn(self, x, layer):
        return block(x, compute_weights(self.params, self.compute), layer, self.config).realize()

    def _prefill_fn(self, idx):
        cache = self._caches[idx.shape[0]]
        logits = gpt(self.params, idx, self.config, cache, compute=self.compute)
        return logits.realize(*[t for c in cache for t in c.values()])

    def _step_fn(self, tokens_pos):
        # tokens_pos: the B tokens, then their position (one input: each input costs a host-to-device
        # transfer at every step)
        B = tokens_pos.shape[0] - 1
        cache = self._caches[B]
        tokens = tokens_pos[:B].reshape(B, 1)
        logits = gpt(self.params, tokens, self.config, cache, tokens_pos[B:], compute=self.compute)
        return logits.realize(*[t for c in cache for t in c.values()])

    # ---- the tier interface ----
    def forward(self, idx, targets=None):
        idx = check_idx(idx, self.config)
        if targets is not None:
            targets = check_targets(targets, idx, self.config)
        B, T = idx.shape
        run = self._compiled(self._forward_fn, B)
        # without targets any valid ones will do: the loss is dropped
        counted = np.zeros_like(idx) if targets is None else targets
        logits, loss = run(self._ints(idx), self._ints(counted, fill=-1))
        return logits.numpy()[:B, :T].copy(), (None if targets is None else float(loss.item()))

    def backward(self, idx, targets):
        idx = check_idx(idx, self.config)
        targets = check_targets(targets, idx, self.config)
        run = self._compiled(self._backward_fn, idx.shape[0])
        idx, targets = self._ints(idx), self._ints(targets, fill=-1)
        if self.loss_scale is None:
            return float(run(idx, targets).item())
        # float16 (SPEC.md "Mixed precision"): a gradient that overflowed float16 at this scale makes
        # the norm inf or NaN; then the same batch runs again at half the scale, down to 1, where what
        # overflows is left to the divergence check, as is a loss that is not finite (the forward
        # overflowed: no scale helps). The scale doubles after LOSS_SCALE_GROWTH clean passes.
        while True:
            scale = self._replicated(Tensor([self.loss_scale], dtype=dtypes.float32, device=self.device))
            loss = float(run(idx, targets, scale).item())
            clean = math.isfinite(loss) and math.isfinite(float(self._norm(self._g).item()))
            if clean or not math.isfinite(loss) or self.loss_scale == 1.0:
                break
            self.loss_scale /= 2
            self._passes_since_overflow = 0
        if clean:
            self._passes_since_overflow += 1
            if self._passes_since_overflow == LOSS_SCALE_GROWTH:
                self.loss_scale *= 2
                self._passes_since_overflow = 0
        return loss

    def grads(self, idx, targets):
        loss = self.backward(idx, targets)
        return loss, self._split(self._g)

    def train_step(self, idx, targets, lr):
        check_lr(lr)
        check_step(self.step)
        loss = self.backward(idx, targets)
        self._update(lr, loss)
        return loss

    def apply_grads(self, grads, lr):
        check_grads(grads, self.config)
        check_lr(lr)
        check_step(self.step)
        self._g.assign(self._put(self._flat(grads))).realize()
        self._update(lr)

    def _update(self, lr, loss=None):
        # SPEC.md "Limits": the norm, needed for clipping anyway, is computed always, and a step whose
        # loss or norm is not finite is refused before any weight, moment or the step changes
        norm = float(self._norm(self._g).item())
        check_diverged(self.step, loss, norm)
        self.step += 1
        self._adamw(self._replicated(adamw_scalars(self.step, lr, norm, self.adamw, self.device)))

    def state_dict(self):
        return self._split(self._p)

    def optimizer_state(self) -> OptimizerState:
        return OptimizerState(self.step, self._split(self._m), self._split(self._v), self.adamw)

    def load_optimizer_state(self, opt: OptimizerState):
        self.step = opt.step
        Tensor.realize(
            self._m.assign(self._put(self._flat(opt.m))), self._v.assign(self._put(self._flat(opt.v)))
        )

    def save(self, path, metadata=None):
        opt = self.optimizer_state() if self.step > 0 else None
        save_checkpoint(path, self.config, self.state_dict(), opt, metadata)

    def activations(self, idx):
        idx = check_idx(idx, self.config)
        acts = {}
        gpt(self.params, self._ints(idx), self.config, acts=acts, compute=self.compute)
        Tensor.realize(*acts.values())
        B, T = idx.shape  # the padding cut off: att is (B, NH, T, T), the others (B, T, ...)
        return {
            n: (t.numpy()[:B, :, :T, :T] if n.endswith(".att") else t.numpy()[:B, :T]).copy()
            for n, t in acts.items()
        }

    # one piece of the forward on its own (the benchmarks time them); padded like the whole model
    def attention_forward(self, x, layer=0):
        B, T, _ = check_piece(x, layer, self.config).shape
        run = self._compiled(self._attention_fn, B, int(layer))
        return run(self._floats(x), int(layer)).numpy()[:B, :T].copy()

    def block_forward(self, x, layer=0):
        B, T, _ = check_piece(x, layer, self.config).shape
        run = self._compiled(self._block_fn, B, int(layer))
        return run(self._floats(x), int(layer)).numpy()[:B, :T].copy()

    # ---- the KV cache ----
    def _prefill(self, window) -> np.ndarray:
        # empties the cache and runs the window through it; returns the logits of the window's positions
        if len(self.devices) > 1:
            # the decode step's one input (tokens, then their position) cannot be split by rows
            raise InputError(
                f"decoding runs on one device, not {len(self.devices)}: load the model without devices"
            )
        B, T = window.shape
        if B not in self._caches:
            self._caches[B] = new_cache(self.config, B, self.device)
        run = self._compiled(self._prefill_fn, B)
        return run(self._ints(window)).numpy()[:, :T].copy()

    def _step(self, tokens, pos: int) -> np.ndarray:
        # tokens (B,) at position pos, one position further through the cache -> logits (B, V)
        run = self._compiled(self._step_fn, tokens.shape[0])
        tokens_pos = Tensor(np.array([*tokens, pos], dtype=np.int32), device=self.device)
        return run(tokens_pos).numpy()[:, 0].copy()

    def decode(self, idx, n_prefill=1):
        idx = check_idx(idx, self.config)
        check_n_prefill(n_prefill, idx.shape[1])
        logits = [self._prefill(idx[:, :n_prefill])]
        for t in range(n_prefill, idx.shape[1]):
            logits.append(self._step(idx[:, t], t)[:, None])
        return np.concatenate(logits, axis=1)

    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, seed=0):
        idx = check_idx(idx, self.config)
        check_generate_args(max_new_tokens, temperature, top_k, self.config)
        pos = 0  # the position the next token goes to

        def prefill(window):
            nonlocal pos
            pos = window.shape[1]
            return self._prefill(window)[:, -1]

        def step(tokens):
            nonlocal pos
            pos += 1
            return self._step(tokens, pos - 1)

        return generate_tokens(
            idx, max_new_tokens, self.config.block_size, prefill, step, temperature, top_k, seed
        )


def from_state_dict(config, state, dtype=np.float32, adamw=None, devices=None, mixed_precision=None) -> GPT:
    return GPT(config, state, dtype, adamw, devices, mixed_precision)


def load(path, dtype=np.float32, adamw=None, devices=None, mixed_precision=None) -> GPT:
    model = functools.partial(GPT, devices=devices, mixed_precision=mixed_precision)
    return load_model(model, path, dtype, adamw)
