# The tinygrad tier in mixed precision (SPEC.md "Mixed precision") against the same outside truth as
# every tier, on every conformance case, at the bounds measured for it (shared/tolerances.py MIXED);
# the spec's table of those measurements kept true; and the check that the products really are rounded
# (a tier computing everything in float32 would pass the bounds, which are upper bounds only).
import functools

import numpy as np
import pytest

from conformance.cases import measure, write_checkpoint
from conformance.summary import MIXED_BEGIN, MIXED_END, SPEC, measurements, parse_spec
from conformance.tiers import MIXED_TIERS, bounds
from shared.tolerances import FLOAT32


@functools.cache
def measured(tier: str) -> dict:
    # (key, regime) -> {tier: (worst error, where)} over every case and optimizer case (a minute each)
    return measurements([tier])


@pytest.fixture(scope="module")
def spec():
    return parse_spec(SPEC.read_text(), MIXED_BEGIN, MIXED_END)


@pytest.mark.parametrize("tier", list(MIXED_TIERS))
def test_every_case_within_the_mixed_bounds(tier):
    beyond = [
        f"{key} ({regime}): {cells[tier][0]:.2e} > {bounds(tier, regime)[key]:.1e} at {cells[tier][1]}"
        for (key, regime), cells in measured(tier).items()
        if not cells[tier][0] <= bounds(tier, regime)[key]  # NaN is beyond every bound
    ]
    assert not beyond, f"{tier}: beyond the spec's mixed-precision tolerance\n" + "\n".join(beyond)


@pytest.mark.parametrize("tier", list(MIXED_TIERS))
def test_spec_table_is_today_s(tier, spec):
    stale = []
    for (key, regime), cells in measured(tier).items():
        if key.startswith("adamw"):  # the optimizer is float32's, and so are its bounds and table
            continue
        row = spec[(key, regime)]
        bound = bounds(tier, regime)[key]
        assert float(row[f"{MIXED_TIERS[tier][1]} bound"]) == pytest.approx(bound, rel=0.01)
        documented, (err, where) = float(row[tier]), cells[tier]
        if max(err, documented) > 2 * min(err, documented):
            stale.append(f"{key} ({regime}): SPEC.md says {documented:.1e}, measured {err:.1e} ({where})")
    assert not stale, "run python -m conformance.summary --mixed --spec:\n" + "\n".join(stale)


@pytest.mark.bfloat16
def test_the_products_really_are_rounded(tmp_path):
    # float16 keeps 11 bits and bfloat16 8: their logits must be far beyond float32's error, and
    # bfloat16's beyond float16's
    case = "tiny-B2-T16"
    path = write_checkpoint(case, tmp_path)
    err = {tier: {n: e for n, e, _ in measure("logits", tier, case, path)}["logits"] for tier in MIXED_TIERS}
    assert err["tinygrad-float16"] > 100 * FLOAT32["logits"], err
    assert err["tinygrad-bfloat16"] > 4 * err["tinygrad-float16"], err
    assert np.isfinite(list(err.values())).all()
