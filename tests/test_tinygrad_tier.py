# The tinygrad tier's own checks, beside the conformance suite (which checks its numbers): without
# clang, tinygrad's CPU backend cannot compile a kernel, and the tier says how to install it; parameter
# slots aligned for tinygrad's vector loads; data-parallel training on several devices equal to one;
# mixed precision's loss scaling, its float32 optimizer and its refusals.
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tinygrad import Device, Tensor

import impl_numpy
import impl_tinygrad
from conformance.compare import random_state_dict
from impl_tinygrad.gpt import ALIGN, _buffers, slots
from shared.config import GPTConfig, get_config
from shared.errors import DivergenceError, InputError
from shared.params import init_state_dict, param_shapes
from shared.tolerances import FLOAT32, bounds_for, flat_gradient, rel_l2


def test_missing_clang_is_a_clear_error(monkeypatch):
    if type(Device[Device.DEFAULT].compiler).__name__ != "ClangCompiler":
        pytest.skip(f"tinygrad's device {Device.DEFAULT} does not compile with clang")
    monkeypatch.setenv("CC", "no-such-clang")  # the compiler tinygrad's CPU backend runs
    config = get_config("tiny")
    with pytest.raises(RuntimeError, match=r"clang, which is not installed \(install it with `apt-get"):
        impl_tinygrad.from_state_dict(config, init_state_dict(config))


def test_parameters_whose_sizes_are_not_multiples_of_the_vector_width():
    # with n_embd 14 and vocab_size 7 a parameter at its unpadded offset in the flat buffer starts at
    # 98 floats, where tinygrad's aligned vector loads crashed the process: its slot is aligned now
    config = GPTConfig(n_layer=1, n_head=2, n_embd=14, block_size=8, vocab_size=7)
    state = random_state_dict(config, seed=0)
    idx = np.random.default_rng(0).integers(0, config.vocab_size, size=(3, 5))
    model = impl_tinygrad.from_state_dict(config, state)
    reference = impl_numpy.from_state_dict(config, state, dtype=np.float64)
    offsets = [offset for offset, _ in slots(config)[0].values()]
    assert all(offset % ALIGN == 0 for offset in offsets)
    assert rel_l2(model.forward(idx)[0], reference.forward(idx)[0]) < FLOAT32["logits"]
    assert list(model.state_dict()) == list(state)
    for name, w in model.state_dict().items():
        np.testing.assert_array_equal(w, state[name].astype(np.float32), err_msg=name)


def test_a_forked_child_compiles_new_kernels(tmp_path):
    # tinygrad's compile pool, made in the parent, is a dead object in a forked child: the child's first
    # new kernel used to wait on it forever (issue 14). The child now compiles in its own process.
    script = tmp_path / "fork.py"
    script.write_text(
        "import os, sys, numpy as np\n"
        "import impl_tinygrad\n"
        "from shared.config import get_config\n"
        "from shared.params import init_state_dict\n"
        "c = get_config('tiny')\n"
        "m = impl_tinygrad.from_state_dict(c, init_state_dict(c, 0))\n"
        "m.forward(np.zeros((1, 4), dtype=np.int64))  # the parent compiles, through the pool\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    m.forward(np.zeros((3, 5), dtype=np.int64))  # a new batch size: new kernels\n"
        "    os._exit(0)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "sys.exit(os.waitstatus_to_exitcode(status))\n"
    )
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root)}
    result = subprocess.run(
        [sys.executable, str(script)], check=False, env=env, timeout=120, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]


def _train_and_measure(model, batches, lr):
    # the loss of each AdamW step and, after the steps, the loss and gradients of the last batch
    losses = [model.train_step(idx, targets, lr) for idx, targets in batches[:-1]]
    loss, grads = model.grads(*batches[-1])
    return [*losses, loss], grads


@pytest.mark.parametrize("n", [2, 3])
def test_data_parallel_training_matches_one_device(n):
    # N CPU devices against one, from the same weights on the same batches: batches of 6 rows (split
    # evenly by 2 and 3) and of 5 (by neither: padded with rows whose targets are all ignored). Only
    # the order of the sums over the batch differs (tinygrad sums each device's part, then the parts),
    # so the two agree within the spec's float32 bounds of the truth (SPEC.md "Data parallel").
    config = GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=50)
    state = random_state_dict(config, seed=0)
    rng = np.random.default_rng(1)
    batches = [
        tuple(rng.integers(0, config.vocab_size, size=(B, 12)) for _ in range(2)) for B in (6, 5, 6, 5)
    ]
    lr = 1e-2
    one = impl_tinygrad.from_state_dict(config, state)
    many = impl_tinygrad.from_state_dict(config, state, devices=n)
    assert len(many.devices) == n
    flat = {name: np.zeros(shape, dtype=bool) for name, shape in param_shapes(config).items()}
    for idx, targets in batches[:-1]:  # where a step's gradient is flat, Adam steps on rounding noise
        for name, g in one.grads(idx, targets)[1].items():
            flat[name] |= flat_gradient(name, g, config)
    losses_1, grads_1 = _train_and_measure(one, batches, lr)
    losses_n, grads_n = _train_and_measure(many, batches, lr)

    loss_diff = max(abs(a - b) / abs(b) for a, b in zip(losses_n, losses_1))
    grad_diff = max(rel_l2(grads_n[name], grads_1[name]) for name in grads_1)
    params_1, params_n = one.state_dict(), many.state_dict()
    param_diff = max(np.abs(params_n[k] - params_1[k])[~flat[k]].max(initial=0) for k in params_1) / lr
    flat_diff = max(np.abs(params_n[k] - params_1[k])[flat[k]].max(initial=0) for k in params_1) / lr
    moments_1, moments_n = one.optimizer_state(), many.optimizer_state()
    moment_diff = max(
        rel_l2(getattr(moments_n, m)[k], getattr(moments_1, m)[k]) for m in ("m", "v") for k in params_1
    )
    logits_diff = rel_l2(many.forward(batches[-1][0])[0], one.forward(batches[-1][0])[0])
    measured = (
        f"{n} devices against 1: loss {loss_diff:.1e}, grads {grad_diff:.1e}, params {param_diff:.1e} lr "
    )
    measured += f"(flat {flat_diff:.1e} lr), moments {moment_diff:.1e}, logits {logits_diff:.1e}"
    print(measured)
    assert loss_diff < FLOAT32["loss"], measured
    assert grad_diff < FLOAT32["grads"], measured
    assert param_diff < FLOAT32["train_params_lr"], measured
    assert flat_diff < FLOAT32["train_flat_lr"], measured
    assert moment_diff < FLOAT32["adamw_moments"], measured
    assert logits_diff < FLOAT32["logits"], measured
    # every device holds the same weights after the steps: the update ran on the summed gradients
    replicas = [b.numpy().view(np.float32) for b in _buffers(many._p)]
    assert len(replicas) == n and all(np.array_equal(r, replicas[0]) for r in replicas)


def test_devices_that_cannot_be_used_are_one_line_errors():
    config = get_config("tiny")
    state = init_state_dict(config)
    for devices, message in [(0, "at least 1"), (("CPU:1", "CPU:1"), "twice"), ("CPU", "device names")]:
        with pytest.raises(InputError, match=message):
            impl_tinygrad.from_state_dict(config, state, devices=devices)
    model = impl_tinygrad.from_state_dict(config, state, devices=("CPU:0", "CPU:1"))
    with pytest.raises(InputError, match="decoding runs on one device, not 2"):
        model.generate(np.zeros((2, 1), dtype=np.int64), 1)


# ---- mixed precision (SPEC.md "Mixed precision"); its errors against the truth: conformance/ ----


def _small_gradients_problem():
    # the spec's init (small weights) and a batch of 2,048 counted positions: the loss's gradient with
    # respect to each logit is under 1 / 2048 of a probability, and many gradients inside the backward
    # pass fall below float16's smallest normal number (6.1e-5)
    config = GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=128, vocab_size=65)
    rng = np.random.default_rng(0)
    batch = tuple(rng.integers(0, config.vocab_size, size=(16, 128)) for _ in range(2))
    return config, init_state_dict(config, seed=0), batch


def test_mixed_precision_must_be_named():
    config = get_config("tiny")
    state = init_state_dict(config)
    for bad in ["float32", "fp16", "half", True, 16, ["float16"]]:
        with pytest.raises(InputError, match=r"mixed_precision must be None, 'float16' or 'bfloat16'"):
            impl_tinygrad.from_state_dict(config, state, mixed_precision=bad)
    assert impl_tinygrad.from_state_dict(config, state, mixed_precision=None).loss_scale is None


def test_float16_loss_scaling_keeps_the_small_gradients():
    config, state, (idx, targets) = _small_gradients_problem()
    _, truth = impl_numpy.from_state_dict(config, state, dtype=np.float64).grads(idx, targets)
    errors = {}
    for scale in [2.0**16, 1.0]:  # the default, and none (1 stays 1: it only grows after 2,000 passes)
        model = impl_tinygrad.from_state_dict(config, state, mixed_precision="float16")
        model.loss_scale = scale
        _, grads = model.grads(idx, targets)
        assert model.loss_scale == scale  # nothing overflowed
        errors[scale] = max(rel_l2(grads[n], truth[n]) for n in truth)
    print(
        f"float16 gradients' worst error against float64: scaled {errors[2.0**16]:.1e}, not {errors[1.0]:.1e}"
    )
    assert errors[1.0] > 5 * errors[2.0**16], errors


def test_float16_loss_scale_halves_on_overflow_and_the_pass_runs_again():
    config, state, (idx, targets) = _small_gradients_problem()
    model = impl_tinygrad.from_state_dict(config, state, mixed_precision="float16")
    model.loss_scale = 2.0**60  # far beyond float16's 65504: the first passes overflow
    loss, grads = model.grads(idx, targets)
    assert 1.0 < model.loss_scale < 2.0**60 and np.log2(model.loss_scale).is_integer()
    assert all(np.isfinite(g).all() for g in grads.values())
    # the gradients are those of a pass run at the scale it settled on: nothing of the overflowed
    # passes is left in them
    again = impl_tinygrad.from_state_dict(config, state, mixed_precision="float16")
    again.loss_scale = model.loss_scale
    loss_again, grads_again = again.grads(idx, targets)
    assert loss == loss_again
    for name in grads:
        np.testing.assert_array_equal(grads[name], grads_again[name], err_msg=name)


def test_float16_loss_scale_doubles_after_passes_without_overflow(monkeypatch):
    import impl_tinygrad.gpt as tier

    monkeypatch.setattr(tier, "LOSS_SCALE_GROWTH", 3)
    config = get_config("tiny")
    model = impl_tinygrad.from_state_dict(config, init_state_dict(config), mixed_precision="float16")
    idx = np.random.default_rng(0).integers(0, config.vocab_size, size=(2, 8))
    scales = []
    for _ in range(7):
        model.train_step(idx, idx, 1e-3)
        scales.append(model.loss_scale)
    assert scales == [2.0**16, 2.0**16, 2.0**17, 2.0**17, 2.0**17, 2.0**18, 2.0**18]
    assert model.step == 7  # no step skipped


def test_float16_overflow_at_scale_1_is_left_to_the_divergence_check(monkeypatch):
    # a gradient norm that stays inf (here: a norm that always says so) halves the scale down to 1 and
    # no further; then the step is refused like any diverging step, before anything changes, and the
    # overflowed passes do not count towards the scale's growth
    config = get_config("tiny")
    state = init_state_dict(config)
    model = impl_tinygrad.from_state_dict(config, state, mixed_precision="float16")
    model.loss_scale = 2.0**4
    monkeypatch.setattr(model, "_norm", lambda g: Tensor([math.inf]))
    idx = np.zeros((1, 4), dtype=np.int64)
    with pytest.raises(DivergenceError, match="the gradient norm is inf"):
        model.train_step(idx, idx, 1e-3)
    assert model.loss_scale == 1.0 and model.step == 0 and model._passes_since_overflow == 0
    for name, w in model.state_dict().items():
        np.testing.assert_array_equal(w, state[name], err_msg=name)


@pytest.mark.parametrize("precision", ["float16", "bfloat16"])
def test_mixed_precision_keeps_the_optimizer_float32(precision):
    # apply_grads, the optimizer alone, is the same arithmetic on the same float32 numbers
    config = GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=30)
    state = random_state_dict(config, seed=0)
    rng = np.random.default_rng(0)
    grads = {n: rng.standard_normal(s).astype(np.float32) for n, s in param_shapes(config).items()}
    plain = impl_tinygrad.from_state_dict(config, state)
    mixed = impl_tinygrad.from_state_dict(config, state, mixed_precision=precision)
    for model in (plain, mixed):
        model.apply_grads(grads, 1e-2)
    for name, p in plain.state_dict().items():  # Adam's first step is about sign(g): see m and v too
        np.testing.assert_array_equal(mixed.state_dict()[name], p, err_msg=name)
        assert mixed.state_dict()[name].dtype == np.float32
        for moment in ("m", "v"):
            got, want = (getattr(model.optimizer_state(), moment)[name] for model in (mixed, plain))
            np.testing.assert_array_equal(got, want, err_msg=f"{moment} of {name}")
    # and what every method returns is float32, as in float32
    idx = np.zeros((1, 4), dtype=np.int64)
    results = [mixed.forward(idx)[0], mixed.decode(idx, 2), *mixed.grads(idx, idx)[1].values()]
    results += [*mixed.activations(idx).values(), mixed.block_forward(np.zeros((1, 4, 16), np.float32))]
    assert {r.dtype for r in results} == {np.dtype(np.float32)}


@pytest.mark.parametrize("precision", ["float16", "bfloat16"])
def test_mixed_precision_on_two_devices_matches_one(precision):
    # the products are the same on each device's rows, but a weight's gradient is a sum over the batch
    # that the cast's gradient rounds to the precision: on two devices each half is rounded, then the
    # halves are summed. So two devices agree with one within the precision's bounds, not float32's
    # (measured: grads 3.6e-4 in float16, 2.9e-3 in bfloat16); the loss and logits, float32 sums of
    # the same products, within float32's.
    config = GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=50)
    state = random_state_dict(config, seed=0)
    idx, targets = (np.random.default_rng(1).integers(0, 50, size=(5, 12)) for _ in range(2))
    one = impl_tinygrad.from_state_dict(config, state, mixed_precision=precision)
    two = impl_tinygrad.from_state_dict(config, state, mixed_precision=precision, devices=2)
    loss_1, grads_1 = one.grads(idx, targets)
    loss_2, grads_2 = two.grads(idx, targets)
    loss_diff = abs(loss_2 - loss_1) / loss_1
    grad_diff = max(rel_l2(grads_2[n], grads_1[n]) for n in grads_1)
    logits_diff = rel_l2(two.forward(idx)[0], one.forward(idx)[0])
    measured = f"{precision}, 2 devices against 1: loss {loss_diff:.1e}, grads {grad_diff:.1e}, "
    measured += f"logits {logits_diff:.1e}"
    print(measured)
    assert loss_diff < FLOAT32["loss"], measured
    assert logits_diff < FLOAT32["logits"], measured
    assert grad_diff < bounds_for(np.float32, "default", precision)["grads"], measured


def test_bfloat16_without_a_clang_that_has_it_is_a_clear_error(monkeypatch, tmp_path):
    if type(Device[Device.DEFAULT].compiler).__name__ != "ClangCompiler":
        pytest.skip(f"tinygrad's device {Device.DEFAULT} does not compile with clang")
    old = tmp_path / "clang-14"  # a clang without __bf16 (Debian 12's), as far as the probe can tell
    old.write_text("#!/bin/sh\necho 'error: __bf16 is not supported on this target' >&2\nexit 1\n")
    old.chmod(0o755)
    monkeypatch.setenv("CC", str(old))
    config = get_config("tiny")
    with pytest.raises(InputError, match=r"needs clang 15 or later for it, and .*clang-14 has no __bf16"):
        impl_tinygrad.from_state_dict(config, init_state_dict(config), mixed_precision="bfloat16")
