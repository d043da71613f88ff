# SPEC.md's table of measured errors (written by `python -m conformance.summary --spec`) must stay what
# the tiers do: its bounds are shared/tolerances.py's, and every figure of the tiers measured here again
# is within a factor of 2 of today's measurement (the tinygrad tier's column, which takes minutes to
# measure, is refreshed with the others by the command).
import numpy as np
import pytest

from conformance.summary import (
    SPEC,
    SPEC_BEGIN,
    SPEC_END,
    measurements_on_the_table_kernel,
    parse_spec,
    table,
)
from conformance.tiers import BUILT_IN, TIERS
from shared.tolerances import bounds_for

FAST = ["numpy", "numpy-float64", "c"]


@pytest.fixture(scope="module")
def spec():
    return parse_spec(SPEC.read_text())


@pytest.fixture(scope="module")
def measured():
    # with the BLAS kernel the table was measured with (summary.py BLAS_KERNEL): this machine's own may
    # round the numpy tier's float32 differently, within the bounds but beyond the factor of 2
    return measurements_on_the_table_kernel(FAST)


def test_spec_table_has_every_key_and_tier(spec, measured):
    assert set(spec) == set(measured), "run python -m conformance.summary --spec"
    for row in spec.values():
        assert set(BUILT_IN) <= set(row), "the table must have a column per tier"


def test_spec_bounds_are_the_tolerances(spec):
    for (key, regime), row in spec.items():
        assert float(row["float32 bound"]) == pytest.approx(bounds_for(np.float32, regime)[key], rel=0.01)
        assert float(row["float64 bound"]) == pytest.approx(bounds_for(np.float64, regime)[key], rel=0.01)


def test_spec_figures_are_today_s(spec, measured):
    stale = []
    for (key, regime), cells in measured.items():
        for tier, (err, where) in cells.items():
            documented = float(spec[(key, regime)][tier])
            bound = bounds_for(TIERS[tier][1], regime)[key]
            hi, lo = max(err, documented), min(err, documented)
            if hi > 2 * lo and hi > 1e-3 * bound:  # below a thousandth of the bound, a figure is noise
                stale.append(
                    f"{key} ({regime}) {tier}: SPEC.md says {documented:.1e}, measured {err:.1e} ({where})"
                )
    assert not stale, "run python -m conformance.summary --spec:\n" + "\n".join(stale)


def test_table_round_trips(measured):
    # what the command writes, the test reads back
    parsed = parse_spec(f"text\n{SPEC_BEGIN}\n{table(measured, FAST)}\n{SPEC_END}\nmore text")
    assert set(parsed) == set(measured)
    for (key, regime), cells in measured.items():
        for tier, (err, _) in cells.items():
            assert float(parsed[(key, regime)][tier]) == pytest.approx(err, rel=0.06)
