# The training step of the shakespeare config (batch 12, T 64), each tier beside PyTorch on the CPU.
# `pytest benchmarks` times them; `--benchmark-disable` runs each once as a smoke test (CI).
import importlib

import numpy as np
import pytest

from shared.config import get_config
from shared.params import init_state_dict
from shared.schedule import AdamWConfig

TIERS = {"numpy": "impl_numpy"}
CASES = {"shakespeare-B12": ("shakespeare", 12), "tiny-B4": ("tiny", 4)}
LR = 1e-3


def batch(config, B):
    rng = np.random.default_rng(0)
    x = rng.integers(0, config.vocab_size, size=(B, config.block_size))
    y = rng.integers(0, config.vocab_size, size=(B, config.block_size))
    return x, y


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("impl", [*TIERS, "pytorch"])
def test_train_step(benchmark, impl, case):
    preset, B = CASES[case]
    config = get_config(preset)
    state = init_state_dict(config, seed=0)
    x, y = batch(config, B)
    benchmark.group = f"train step {case}"
    if impl == "pytorch":
        torch = pytest.importorskip("torch")
        from benchmarks.torch_reference import TorchGPT, make_optimizer, train_step

        model = TorchGPT(config)
        model.load_canonical(state)
        opt = make_optimizer(model, LR, AdamWConfig())
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)
        loss = benchmark.pedantic(lambda: train_step(model, opt, tx, ty, 1.0), rounds=50, warmup_rounds=5)
    else:
        model = importlib.import_module(TIERS[impl]).from_state_dict(config, state)
        loss = benchmark.pedantic(lambda: model.train_step(x, y, LR), rounds=50, warmup_rounds=5)
    assert np.isfinite(loss)
