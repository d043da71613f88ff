"""Worst error per quantity per tier against the golden file (transformers' float64 results), with
its bound, as a markdown table; transformers' own float32 run is measured the same way.

    python -m conformance.golden_report
"""

import tempfile

import numpy as np

from conformance.compare import worst
from conformance.golden import (
    OUTSIDE_FLOAT32,
    OUTSIDE_QUANTITIES,
    QUANTITIES,
    generate_rows,
    measure,
    read_golden,
    write_checkpoint,
)
from conformance.tiers import TIERS, load
from shared.tolerances import bounds_for


def main():
    golden = read_golden()
    n_tokens = sum(gen.logits.shape[0] for gen in golden.generations)
    print(
        f"Against `conformance/golden/tiny.safetensors` (transformers {golden.metadata['transformers']}, "
        f"torch {golden.metadata['torch']}, float64; {len(golden.generations)} greedy generations).\n"
    )
    print("| tier | quantity | worst error | bound | error / bound | where |")
    print("| --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as folder:
        path = write_checkpoint(folder)
        for tier in [*TIERS, OUTSIDE_FLOAT32]:
            outside = tier == OUTSIDE_FLOAT32
            rows = {q: measure(q, tier, path) for q in (OUTSIDE_QUANTITIES if outside else QUANTITIES)}
            if not outside:
                rows["generate"], tokens = generate_rows(load(tier, path), bounds_for(TIERS[tier][1]))
            for quantity, r in rows.items():
                where, err, bound = worst(r)
                print(f"| {tier} | {quantity} | {err:.2e} | {bound:.0e} | {err / bound:.3f} | {where} |")
            if not outside:
                wrong = sum(int(np.sum(t != gen.tokens)) for t, gen in zip(tokens, golden.generations))
                print(f"| {tier} | greedy tokens | {wrong} of {n_tokens} differ | 0 | | |")


if __name__ == "__main__":
    main()
