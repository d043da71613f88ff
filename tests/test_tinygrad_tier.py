# The tinygrad tier's own checks, beside the conformance suite (which checks its numbers): without
# clang, tinygrad's CPU backend cannot compile a kernel, and the tier says how to install it; parameter
# slots aligned for tinygrad's vector loads.
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tinygrad import Device

import impl_numpy
import impl_tinygrad
from conformance.compare import random_state_dict
from impl_tinygrad.gpt import ALIGN, slots
from shared.config import GPTConfig, get_config
from shared.params import init_state_dict
from shared.tolerances import FLOAT32, rel_l2


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
