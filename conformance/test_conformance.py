# Every tier against the float64 reference at the spec's tolerances (SPEC.md "Tolerances"); the cases
# and the measurements are in cases.py. On failure the message lists every tensor, worst first.
import numpy as np
import pytest

from conformance.cases import CASES, QUANTITIES, case_data, measure, write_checkpoint
from conformance.compare import assert_within
from conformance.tiers import TIERS, load


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory):
    folder = tmp_path_factory.mktemp("conformance")
    return {case: write_checkpoint(case, folder) for case in CASES}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("quantity", QUANTITIES)
@pytest.mark.parametrize("tier", list(TIERS))
def test_against_reference(tier, quantity, case, checkpoints):
    assert_within(measure(quantity, tier, case, checkpoints[case]), f"{tier} {quantity} on {case}")


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("tier", list(TIERS))
def test_generate_greedy_matches_recompute(tier, case, checkpoints):
    # greedy decoding through the KV cache picks the argmax of the tier's own full-recompute logits,
    # past block_size, where the cache is rebuilt from the last block_size tokens
    config, idx, _ = case_data(case)
    model = load(tier, checkpoints[case])
    prompt = idx[:, : max(1, idx.shape[1] // 2)]
    n_new = config.block_size + 3
    out = model.generate(prompt, max_new_tokens=n_new, temperature=0.0)
    assert out.shape == (prompt.shape[0], prompt.shape[1] + n_new)
    np.testing.assert_array_equal(out[:, : prompt.shape[1]], prompt)
    for t in range(prompt.shape[1], out.shape[1]):
        window = out[:, max(0, t - config.block_size) : t]
        logits, _ = model.forward(window)
        np.testing.assert_array_equal(out[:, t], np.argmax(logits[:, -1], axis=-1), err_msg=f"position {t}")
