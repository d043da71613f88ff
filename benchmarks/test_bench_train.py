# Each tier beside PyTorch on the CPU, measured in one run: the training step, forward plus backward,
# and KV-cache generation. `pytest benchmarks` times them; `--benchmark-disable` runs each once (CI);
# the gpt2-size rows are marked slow: `pytest benchmarks -m slow`.
import importlib

import numpy as np
import pytest

from shared.config import get_config
from shared.params import init_state_dict
from shared.schedule import AdamWConfig

TIERS = {"numpy": "impl_numpy", "c": "impl_c"}
LR = 1e-3


def batch(config, B, T):
    rng = np.random.default_rng(0)
    x = rng.integers(0, config.vocab_size, size=(B, T))
    y = rng.integers(0, config.vocab_size, size=(B, T))
    return x, y


def torch_model(config, state):
    pytest.importorskip("torch")
    from benchmarks.torch_reference import TorchGPT

    model = TorchGPT(config)
    model.load_canonical(state)
    return model


def record(benchmark, key, value_of_seconds):
    # extra figures from the median time; absent when timing is off (--benchmark-disable)
    if benchmark.stats is not None:
        benchmark.extra_info[key] = value_of_seconds(benchmark.stats.stats.median)


def tier_model(impl, config, state):
    return importlib.import_module(TIERS[impl]).from_state_dict(config, state)


TRAIN_CASES = {"shakespeare-B12": ("shakespeare", 12), "tiny-B4": ("tiny", 4)}


@pytest.mark.parametrize("case", list(TRAIN_CASES))
@pytest.mark.parametrize("impl", [*TIERS, "pytorch"])
def test_train_step(benchmark, impl, case):
    preset, B = TRAIN_CASES[case]
    config = get_config(preset)
    state = init_state_dict(config, seed=0)
    x, y = batch(config, B, config.block_size)
    benchmark.group = f"train step {case}"
    if impl == "pytorch":
        import torch

        from benchmarks.torch_reference import make_optimizer, train_step

        model = torch_model(config, state)
        opt = make_optimizer(model, LR, AdamWConfig())
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)
        loss = benchmark.pedantic(lambda: train_step(model, opt, tx, ty, 1.0), rounds=50, warmup_rounds=5)
    else:
        model = tier_model(impl, config, state)
        loss = benchmark.pedantic(lambda: model.train_step(x, y, LR), rounds=50, warmup_rounds=5)
    assert np.isfinite(loss)


@pytest.mark.slow
@pytest.mark.parametrize("impl", [*TIERS, "pytorch", "numpy-matmul-2048"])
def test_gpt2_forward_backward(benchmark, impl):
    # GPT-2 small, batch 4, T 64; numpy's 2048^3 float32 matmul is the machine's matmul ceiling
    benchmark.group = "gpt2 forward+backward B4 T64"
    config = get_config("gpt2")
    B, T = 4, 64
    flops = 6 * 124_439_808 * B * T  # 2 N per token forward, 4 N backward (attention's T^2 terms are small here)
    if impl == "numpy-matmul-2048":
        a = np.random.default_rng(0).standard_normal((2048, 2048), dtype=np.float32)
        benchmark.pedantic(lambda: a @ a, rounds=10, warmup_rounds=2)
        record(benchmark, "gflops", lambda s: 2 * 2048**3 / s / 1e9)
        return
    state = init_state_dict(config, seed=0)
    x, y = batch(config, B, T)
    if impl == "pytorch":
        import torch

        model = torch_model(config, state)
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)

        def step():
            model.zero_grad(set_to_none=True)
            _, loss = model(tx, ty)
            loss.backward()
            return loss.item()

        benchmark.pedantic(step, rounds=3, warmup_rounds=1)
    else:
        model = tier_model(impl, config, state)
        benchmark.pedantic(lambda: model.backward(x, y), rounds=3, warmup_rounds=1)
    record(benchmark, "gflops", lambda s: flops / s / 1e9)


@pytest.mark.parametrize("impl", [*TIERS, "pytorch"])
def test_generate_tokens_per_second(benchmark, impl):
    # shakespeare config, batch 1, greedy, a 1-token prompt filled to block_size through the KV cache
    benchmark.group = "generate shakespeare B1 (KV cache)"
    config = get_config("shakespeare")
    state = init_state_dict(config, seed=0)
    prompt = np.zeros((1, 1), dtype=np.int64)
    n = config.block_size - 1
    if impl == "pytorch":
        import torch

        from benchmarks.torch_reference import generate_greedy

        model = torch_model(config, state)
        tp = torch.from_numpy(prompt)
        out = benchmark.pedantic(lambda: generate_greedy(model, tp, n), rounds=10, warmup_rounds=2)
    else:
        model = tier_model(impl, config, state)
        out = benchmark.pedantic(lambda: model.generate(prompt, n, temperature=0.0), rounds=10, warmup_rounds=2)
    assert tuple(out.shape) == (1, config.block_size)
    record(benchmark, "tokens_per_s", lambda s: n / s)
