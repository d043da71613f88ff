# The tiers side by side, measured in one run: every operation of training and generation, on each
# config, with two reference rows in every group: PyTorch on the CPU for the same model and operation
# (skipped when it is not installed: `pip install -e '.[reference]'`) and numpy's 2048^3 float32 matmul,
# the machine's ceiling. The train step's groups hold a few more rows (VARIANTS): the tinygrad tier in
# mixed precision and on several devices, and PyTorch in the same mixed precisions. Every row records its
# model FLOPs, GFLOP/s and the fraction of the ceiling it reaches (extra_info); `python -m
# benchmarks.report` turns the JSON into a table and a chart.
#
#   pytest benchmarks                                  # tiny and shakespeare
#   pytest benchmarks -m slow                          # gpt2 (124M), batch 4, T 64; the opt-in variants
#   pytest benchmarks --benchmark-disable              # each once, untimed (CI)
#   pytest benchmarks --benchmark-json out/bench.json && python -m benchmarks.report out/bench.json
import functools
import importlib
import os
import time

import numpy as np
import pytest

from benchmarks.flops import CEILING_N, ceiling_flops, op_flops
from shared.config import get_config
from shared.params import init_state_dict

TIERS = {"numpy": "impl_numpy", "c": "impl_c", "tinygrad": "impl_tinygrad"}
REFERENCES = ["pytorch", "ceiling"]
# PyTorch's device: the CPU, or the GPU that benchmarks/gpu.py times tinygrad on (it sets this for the
# pytest run it starts, as tinygrad's DEV picks tinygrad's). On a GPU only the operations that end in
# loss.item() (forward+backward, train step) wait for the GPU to finish, so gpu.py times only those.
TORCH_DEVICE = os.environ.get("GPT_BENCH_TORCH_DEVICE", "cpu")
# how many devices of its kind the tinygrad tier trains on in its tinygrad-xN row: benchmarks/gpu.py sets
# the count of the GPU's devices it found; 1 (no such row) unless set. On the CPU, N devices share the
# same cores (README "On several devices"), so a count here is a correctness run, not a speed-up.
DEVICES = int(os.environ.get("GPT_BENCH_DEVICES", "1"))
LR = 1e-3

# case -> (config preset, B, T); gpt2 is opt-in (-m slow)
CASES = {"tiny-B4": ("tiny", 4, 16), "shakespeare-B12": ("shakespeare", 12, 64), "gpt2-B4": ("gpt2", 4, 64)}
SLOW = {"gpt2-B4"}
# generate: greedy, batch 1, a 1-token prompt grown to T tokens through the KV cache; recompute: what one
# token costs without the cache once the prefix is T long (a forward over the T tokens, batch 1)
OPS = ["matmul", "attention", "block", "forward", "forward+backward", "train step", "generate", "recompute"]
# timed rounds per case: a gpt2 step takes seconds
ROUNDS = {"tiny-B4": 20, "shakespeare-B12": 20, "gpt2-B4": 3}

# the train step's extra rows: the tinygrad tier's variants, impl -> (tier, from_state_dict's arguments),
# in mixed precision (SPEC.md "Mixed precision") and data-parallel over DEVICES devices (SPEC.md "Data
# parallel"); and PyTorch's train step under torch.autocast in the same precisions, impl -> dtype
VARIANTS = {
    "tinygrad-float16": ("tinygrad", {"mixed_precision": "float16"}),
    "tinygrad-bfloat16": ("tinygrad", {"mixed_precision": "bfloat16"}),
    **({f"tinygrad-x{DEVICES}": ("tinygrad", {"devices": DEVICES})} if DEVICES > 1 else {}),
}
TORCH_MIXED = {"pytorch-float16": "float16", "pytorch-bfloat16": "bfloat16"}
VARIANT_OPS = ["train step"]
# the variants' rows that run without -m slow, so in CI too (once, untimed, so that they keep working):
# the tiny case's, bar tinygrad-bfloat16's. A tinygrad variant compiles its own train step: float16's took
# 10 s on 2 cores with a cold kernel cache, bfloat16's 22 s, and bfloat16's row differs from float16's
# only in the name passed to the tier (whose numerics are the conformance suite's). On the CPU the mixed
# precisions are slower than float32 anyway (README "Mixed precision"). Every other variant row is
# opt-in: -m slow, which benchmarks/gpu.py passes.
VARIANT_CASES = {"tiny-B4"}
OPT_IN = {"tinygrad-bfloat16"}


def case_inputs(case: str):
    preset, B, T = CASES[case]
    config = get_config(preset)
    rng = np.random.default_rng(0)
    C = config.n_embd
    return {
        "config": config,
        "idx": rng.integers(0, config.vocab_size, size=(B, T)),
        "targets": rng.integers(0, config.vocab_size, size=(B, T)),
        "x": rng.standard_normal((B, T, C)).astype(np.float32),  # a block's input
        # the largest product of a block: the MLP's first linear layer, (B*T, C) @ (C, 4C)
        "mm": [rng.standard_normal(s).astype(np.float32) for s in ((B * T, C), (C, 4 * C), (4 * C,))],
        "prompt": np.zeros((1, 1), dtype=np.int64),  # generation: batch 1, grown to T tokens
        "new_tokens": T - 1,
    }


def tier_matmul(impl):
    if impl == "c":
        from impl_c.gpt import matmul

        return matmul
    if impl == "tinygrad":
        from tinygrad import Tensor, TinyJit

        jit = TinyJit(lambda x, w, b: (x @ w + b).realize())
        return lambda x, w, b: jit(*(Tensor(a) for a in (x, w, b))).numpy()
    return lambda x, w, b: x @ w + b


@functools.lru_cache(maxsize=1)  # one model at a time: gpt2's take gigabytes
def tier_ops(impl: str, case: str) -> dict:
    d = case_inputs(case)
    config, idx, targets, x, prompt, n = (
        d[k] for k in ("config", "idx", "targets", "x", "prompt", "new_tokens")
    )
    tier, kwargs = VARIANTS.get(impl, (impl, {}))
    m = importlib.import_module(TIERS[tier]).from_state_dict(
        config, init_state_dict(config, seed=0), **kwargs
    )
    matmul = tier_matmul(tier)
    return {
        "matmul": lambda: matmul(*d["mm"]),
        "attention": lambda: m.attention_forward(x, 0),
        "block": lambda: m.block_forward(x, 0),
        "forward": lambda: m.forward(idx),
        "forward+backward": lambda: m.backward(idx, targets),
        "train step": lambda: m.train_step(idx, targets, LR),
        "generate": lambda: m.generate(prompt, n, temperature=0.0),
        "recompute": lambda: m.forward(idx[:1]),
    }


@functools.lru_cache(maxsize=1)
def torch_ops(impl: str, case: str) -> dict:
    torch = pytest.importorskip("torch")
    from benchmarks import torch_reference as ref
    from shared.schedule import AdamWConfig

    d = case_inputs(case)
    config, n = d["config"], d["new_tokens"]
    model = ref.TorchGPT(config)
    model.load_canonical(init_state_dict(config, seed=0))
    model.to(TORCH_DEVICE)
    opt = ref.make_optimizer(model, LR, AdamWConfig())
    idx, targets, x, prompt = (
        torch.from_numpy(d[k]).to(TORCH_DEVICE) for k in ("idx", "targets", "x", "prompt")
    )
    a, w, b = (torch.from_numpy(t).to(TORCH_DEVICE) for t in d["mm"])
    # the train step in mixed precision (pytorch-float16, pytorch-bfloat16), with float16's loss scaling
    dtype = getattr(torch, TORCH_MIXED[impl]) if impl in TORCH_MIXED else None
    scaler = torch.amp.GradScaler(idx.device.type) if dtype == torch.float16 else None

    def no_grad(f):
        def run():
            with torch.no_grad():
                return f()

        return run

    return {
        "matmul": no_grad(lambda: torch.addmm(b, a, w)),
        "attention": no_grad(lambda: model.h[0].attention(x)),
        "block": no_grad(lambda: model.h[0](x)),
        "forward": no_grad(lambda: model(idx)),
        "forward+backward": lambda: ref.forward_backward(model, idx, targets),
        "train step": lambda: ref.train_step(model, opt, idx, targets, 1.0, dtype, scaler),
        "generate": lambda: ref.generate_greedy(model, prompt, n),
        "recompute": no_grad(lambda: model(idx[:1])),
    }


@functools.cache
def ceiling_gflops() -> float:
    """numpy's 2048^3 float32 matmul, best of 5: what this machine's BLAS reaches."""
    a = np.random.default_rng(0).standard_normal((CEILING_N, CEILING_N), dtype=np.float32)
    a @ a
    best = min(_timed(lambda: a @ a) for _ in range(5))
    return ceiling_flops() / best / 1e9


def _timed(f) -> float:
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def params():
    # implementation-major, then case, then operation: each model is built once and dropped after.
    # tinygrad runs last: once it has compiled in a process, the C tier's short calls there measured up
    # to 3x slower (0.49 -> 1.5 ms for a matmul), which we have not explained yet.
    out = []
    impls = [*TIERS, *REFERENCES, *TORCH_MIXED, *VARIANTS]
    for impl in sorted(impls, key=lambda impl: impl.startswith("tinygrad")):
        variant = impl in TORCH_MIXED or impl in VARIANTS
        for case in CASES:
            opt_in = case in SLOW or (variant and (case not in VARIANT_CASES or impl in OPT_IN))
            marks = [pytest.mark.slow] if opt_in else []
            if impl in VARIANTS:  # for conftest.py: skipped with the tier where it cannot run
                marks += [pytest.mark.tinygrad]
            for op in VARIANT_OPS if variant else OPS:
                if impl == "ceiling" and op == "recompute":
                    continue  # its group is generate's, which has the ceiling row already
                out.append(pytest.param(case, impl, op, marks=marks, id=f"{op}-{impl}-{case}"))
    return out


@pytest.mark.parametrize(("case", "impl", "op"), params())
def test_benchmark(benchmark, case, impl, op):
    preset, B, T = CASES[case]
    # generation runs batch 1; with and without the KV cache side by side
    benchmark.group = f"generate {preset}-B1-T{T}" if op in ("generate", "recompute") else f"{op} {case}"
    if impl == "ceiling":
        a = np.random.default_rng(0).standard_normal((CEILING_N, CEILING_N), dtype=np.float32)
        benchmark.pedantic(lambda: a @ a, rounds=3, warmup_rounds=1)
        flops = ceiling_flops()
    else:
        f = torch_ops(impl, case)[op] if impl.startswith("pytorch") else tier_ops(impl, case)[op]
        first = _timed(f)  # the first call: tinygrad compiles here, the others allocate
        benchmark.pedantic(f, rounds=ROUNDS[case], warmup_rounds=1)
        benchmark.extra_info["first_call_s"] = first
        flops = op_flops(op, get_config(preset), B, T)
        if op in ("generate", "recompute"):
            # generate: T - 1 tokens through the KV cache; recompute: the next token without a cache,
            # the whole prefix of T tokens through the model
            benchmark.extra_info["new_tokens"] = T - 1 if op == "generate" else 1
            benchmark.extra_info["T"] = T
    benchmark.extra_info["gflop"] = flops / 1e9
    if benchmark.stats is not None:  # absent when timing is off (--benchmark-disable)
        seconds = benchmark.stats.stats.median
        benchmark.extra_info["gflops"] = flops / seconds / 1e9
        benchmark.extra_info["ceiling_gflops"] = ceiling_gflops()
        benchmark.extra_info["ceiling_fraction"] = flops / seconds / 1e9 / ceiling_gflops()
        if "new_tokens" in benchmark.extra_info:
            benchmark.extra_info["tokens_per_s"] = benchmark.extra_info["new_tokens"] / seconds
