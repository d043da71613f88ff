# The tinygrad tier's own set-up check, beside the conformance suite (which checks its numbers):
# without clang, tinygrad's CPU backend cannot compile a kernel, and the tier says how to install it.
import pytest
from tinygrad import Device

import impl_tinygrad
from shared.config import get_config
from shared.params import init_state_dict


def test_missing_clang_is_a_clear_error(monkeypatch):
    if type(Device[Device.DEFAULT].compiler).__name__ != "ClangCompiler":
        pytest.skip(f"tinygrad's device {Device.DEFAULT} does not compile with clang")
    monkeypatch.setenv("CC", "no-such-clang")  # the compiler tinygrad's CPU backend runs
    config = get_config("tiny")
    with pytest.raises(RuntimeError, match=r"clang, which is not installed \(install it with `apt-get"):
        impl_tinygrad.from_state_dict(config, init_state_dict(config))
