# The numpy tier as a whole: the float64 model's gradients against finite differences, and a check
# against PyTorch when it is installed (an outside implementation of the same numerics).
import numpy as np
import pytest

import impl_numpy
from conformance.compare import random_state_dict
from conformance.gradcheck import finite_difference_check
from shared.config import ABLATIONS, get_config
from shared.params import param_shapes


def test_full_model_gradient_check_float64():
    """Every parameter tensor of the tiny config, at up to 6 entries each, by central differences."""
    errors = finite_difference_check(impl_numpy, get_config("tiny"))
    assert set(errors) == set(param_shapes(get_config("tiny")))
    worst = max(errors, key=errors.get)
    assert errors[worst] < 1e-6, (worst, errors[worst])


@pytest.mark.parametrize("ablation", ABLATIONS)
def test_gradient_check_float64_with_each_ablation(ablation):
    """SPEC.md "Ablations": the float64 reference stays exact with each piece taken out."""
    config = get_config("tiny", **{ablation: False})
    errors = finite_difference_check(impl_numpy, config)
    worst = max(errors, key=errors.get)
    assert errors[worst] < 1e-6, (worst, errors[worst])


def test_matches_pytorch_when_installed():
    torch = pytest.importorskip("torch")
    from benchmarks.torch_reference import TorchGPT

    config = get_config("tiny")
    state = {n: a.astype(np.float64) for n, a in random_state_dict(config, seed=4).items()}
    model = impl_numpy.from_state_dict(config, state, dtype=np.float64)
    ref = TorchGPT(config).double()
    ref.load_canonical(state)
    rng = np.random.default_rng(1)
    idx = rng.integers(0, config.vocab_size, size=(3, config.block_size))
    targets = rng.integers(0, config.vocab_size, size=idx.shape)
    targets[0, :5] = -1
    logits, loss = model.forward(idx, targets)
    ref_logits, ref_loss = ref(torch.from_numpy(idx), torch.from_numpy(targets))
    np.testing.assert_allclose(logits, ref_logits.detach().numpy(), rtol=1e-10, atol=1e-12)
    assert abs(loss - ref_loss.item()) < 1e-12
