"""Worst error per quantity per tier against the float64 reference, with its bound, over the
conformance cases; and the float64 reference's own finite-difference gradient check.

    python -m conformance.summary
"""

import tempfile

import impl_numpy
from conformance.cases import CASES, QUANTITIES, measure, write_checkpoint
from conformance.compare import worst
from conformance.gradcheck import finite_difference_check
from conformance.tiers import TIERS
from shared.config import get_config


def main():
    with tempfile.TemporaryDirectory() as folder:
        paths = {case: write_checkpoint(case, folder) for case in CASES}
        print(f"{'tier':<15} {'quantity':<12} {'worst error':>11} {'bound':>9}  tensor (case)")
        for tier in TIERS:
            for quantity in QUANTITIES:
                where, err, bound = worst(
                    (f"{name} ({case})", err, bound)
                    for case in CASES
                    for name, err, bound in measure(quantity, tier, case, paths[case])
                )
                print(f"{tier:<15} {quantity:<12} {err:11.2e} {bound:9.1e}  {where}")
    errors = finite_difference_check(impl_numpy, get_config("tiny"))
    name = max(errors, key=errors.get)
    print(
        f"\nfloat64 gradient check (tiny config, central differences): worst relative error {errors[name]:.1e} ({name})"
    )


if __name__ == "__main__":
    main()
