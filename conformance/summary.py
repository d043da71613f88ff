"""Worst error of every tier against the outside truth, per tolerance key and regime, with its bound and
its headroom (bound / worst), over every conformance case; and the float64 numpy tier's own
finite-difference gradient check.

    python -m conformance.summary                 # the table, as markdown
    python -m conformance.summary --spec          # ... and written into shared/SPEC.md ("Tolerances")
    python -m conformance.summary --tiers numpy c # some tiers only (--spec needs them all)
    python -m conformance.summary --mixed [--spec] # the tinygrad tier in mixed precision, its own table

SPEC.md's table of measured errors is this command's output (between the markers SPEC_BEGIN and
SPEC_END), so that it cannot drift from what the tiers do: conformance/test_summary.py measures again
and fails when a figure there is off by more than a factor of 2. The same holds for the mixed-precision
table ("Mixed precision", between MIXED_BEGIN and MIXED_END) and conformance/test_mixed_precision.py.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

import impl_numpy
from conformance.cases import ADAMW_CASES, CASES, QUANTITIES, measure, measure_optimizer, write_checkpoint
from conformance.gradcheck import finite_difference_check
from conformance.tiers import MIXED_TIERS, TIERS, bounds
from shared.config import get_config
from shared.tolerances import FLOAT32, REGIMES, bounds_for

SPEC = Path(__file__).resolve().parent.parent / "shared" / "SPEC.md"
SPEC_BEGIN = "<!-- the table below is written by `python -m conformance.summary --spec` -->"
SPEC_END = "<!-- end of the table written by conformance.summary -->"
MIXED_BEGIN = "<!-- the table below is written by `python -m conformance.summary --mixed --spec` -->"
MIXED_END = "<!-- end of the mixed-precision table written by conformance.summary -->"

# each tolerance key: what it measures, as the table says it
MEASURES = {
    "logits": "rel_l2",
    "loss": "relative",
    "activations": "rel_l2, each",
    "grads": "rel_l2, each",
    "decode": "rel_l2 vs the truth's forward",
    "train_loss": "relative, each step",
    "train_params_lr": "max abs / lr after the steps",
    "train_flat_lr": "the same, flat elements",
    "adamw_params_lr": "max abs / lr, apply_grads",
    "adamw_moments": "rel_l2 of m, v",
}


def key_of(quantity: str, row: str) -> str:
    """The tolerance key a measurement row is held to."""
    if row == "loss":
        return "loss"
    if quantity == "train":
        if row.startswith("loss["):
            return "train_loss"
        return "train_flat_lr" if row.endswith("flat)") else "train_params_lr"
    if quantity == "adamw":
        return "adamw_moments" if row.startswith(("m.", "v.")) else "adamw_params_lr"
    return quantity


def measurements(tiers) -> dict:
    """(key, regime) -> tier -> (worst error, where), over every case and optimizer case."""
    out = {}
    with tempfile.TemporaryDirectory() as folder:
        paths = {case: write_checkpoint(case, folder) for case in CASES}
        for tier in tiers:
            runs = [
                (quantity, case, CASES[case].regime, measure(quantity, tier, case, paths[case]))
                for case in CASES
                for quantity in QUANTITIES
            ]
            runs += [
                ("adamw", variant, "default", measure_optimizer(tier, variant, paths[a.case]))
                for variant, a in ADAMW_CASES.items()
            ]
            for quantity, case, regime, rows in runs:
                for name, err, _ in rows:
                    cell = out.setdefault((key_of(quantity, name), regime), {})
                    if tier not in cell or err > cell[tier][0]:
                        cell[tier] = (err, f"{name} ({case})")
    return out


# The numpy tier's float32 figures depend on the matmul kernel OpenBLAS picks for the CPU: its AVX-512
# kernels round differently from its AVX2 one (the worst loss error: 2.8e-7 on a Sapphire Rapids
# machine, 9.2e-8 on the AVX2 kernel). So the table is measured with the AVX2 kernel, which every
# x86-64 machine since 2013 runs, and conformance/test_summary.py can check it on any of them. OpenBLAS
# reads the choice once, when numpy loads: the measurement runs in a process of its own.
BLAS_KERNEL = {"OPENBLAS_CORETYPE": "Haswell"}


def measurements_on_the_table_kernel(tiers) -> dict:
    """measurements(tiers), in a child process that runs OpenBLAS's BLAS_KERNEL."""
    code = (
        "import json, sys; from conformance.summary import measurements; "
        "json.dump([[k, r, c] for (k, r), c in measurements(sys.argv[1:]).items()], sys.stdout)"
    )
    child = subprocess.run(
        [sys.executable, "-c", code, *tiers],
        env={**os.environ, **BLAS_KERNEL},
        capture_output=True,
        text=True,
        check=False,
    )
    if child.returncode != 0:
        raise RuntimeError(f"measuring {tiers} failed:\n{child.stderr}")
    return {(k, r): {t: tuple(v) for t, v in c.items()} for k, r, c in json.loads(child.stdout)}


def _float(x: float) -> str:
    return f"{x:.1e}" if x > 0 else "0"


def headroom(bound: float, worst: float) -> str:
    if worst == 0:
        return "exact"
    r = bound / worst
    return f"{r:.1f}x" if r < 1000 else f"{r:.0e}x"


def table(found: dict, tiers) -> str:
    """Markdown: a row per tolerance key and regime, each tier's worst error and the headroom."""
    float32 = [t for t in tiers if np.dtype(TIERS[t][1]) != np.float64]
    float64 = [t for t in tiers if np.dtype(TIERS[t][1]) == np.float64]
    head = ["key", "regime", "measure", "float32 bound", *float32, "headroom"]
    if float64:
        head += ["float64 bound", *float64, "headroom"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for regime in REGIMES:
        for key in FLOAT32:
            if (key, regime) not in found:
                continue
            cells = found[(key, regime)]
            row = [f"`{key}`", regime, MEASURES[key]]
            for group in (float32, float64):
                if not group:
                    continue
                bound = bounds_for(TIERS[group[0]][1], regime)[key]
                worst = max(cells[t][0] for t in group)
                row += [_float(bound), *(_float(cells[t][0]) for t in group)]
                row.append(headroom(bound, worst))
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def mixed_table(found: dict) -> str:
    """Markdown: a row per tolerance key and regime where a mixed precision has bounds of its own (the
    optimizer's are float32's), the float32 bound beside them, each precision's worst error and headroom."""
    head = ["key", "regime", "measure", "float32 bound"]
    for tier, (_, precision) in MIXED_TIERS.items():
        head += [f"{precision} bound", tier, "headroom"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for regime in REGIMES:
        for key in FLOAT32:
            if (key, regime) not in found or key.startswith("adamw"):
                continue
            row = [f"`{key}`", regime, MEASURES[key], _float(bounds_for(np.float32, regime)[key])]
            for tier in MIXED_TIERS:
                bound, worst = bounds(tier, regime)[key], found[(key, regime)][tier][0]
                row += [_float(bound), _float(worst), headroom(bound, worst)]
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def where(found: dict) -> str:
    lines = []
    for (key, regime), cells in found.items():
        for tier, (err, at) in cells.items():
            lines.append(f"{key:<18} {regime:<8} {tier:<14} {err:9.2e}  {at}")
    return "\n".join(lines)


def parse_spec(text: str, begin: str = SPEC_BEGIN, end: str = SPEC_END) -> dict:
    """SPEC.md's generated table back as (key, regime) -> {column: value}; the columns are the table's."""
    block = text[text.index(begin) + len(begin) : text.index(end)]
    rows = [line.strip().strip("|").split("|") for line in block.strip().splitlines()]
    head = [h.strip() for h in rows[0]]
    out = {}
    for cells in rows[2:]:
        cells = [c.strip() for c in cells]
        row = dict(zip(head, cells))
        out[(row["key"].strip("`"), row["regime"])] = row
    return out


def write_spec(text: str, begin: str = SPEC_BEGIN, end: str = SPEC_END) -> None:
    spec = SPEC.read_text()
    start, end = spec.index(begin) + len(begin), spec.index(end)
    SPEC.write_text(spec[:start] + "\n" + text + "\n" + spec[end:])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conformance.summary", description=__doc__.split("\n")[0])
    parser.add_argument("--tiers", nargs="+", choices=list(TIERS), help="default: every tier")
    parser.add_argument("--spec", action="store_true", help="write the table into shared/SPEC.md")
    parser.add_argument("--mixed", action="store_true", help="the tinygrad tier in mixed precision instead")
    args = parser.parse_args(argv)
    if args.spec and args.tiers and set(args.tiers) != set(TIERS):
        parser.error("--spec writes every tier's column: leave --tiers out")
    if args.mixed and args.tiers:
        parser.error("--mixed measures both mixed precisions: leave --tiers out")
    if args.mixed:
        found = measurements(list(MIXED_TIERS))
        print(mixed_table(found))
        print("\nwhere each worst error is:\n" + where(found))
        if args.spec:
            write_spec(mixed_table(found), MIXED_BEGIN, MIXED_END)
            print(f"\nwrote the table into {SPEC}")
        return 0
    tiers = args.tiers or list(TIERS)
    found = measurements_on_the_table_kernel(tiers)
    text = table(found, tiers)
    print(text)
    print("\nwhere each worst error is:\n" + where(found))
    errors = finite_difference_check(impl_numpy, get_config("tiny"))
    name = max(errors, key=errors.get)
    print(
        f"\nfloat64 gradient check (tiny config, central differences): worst relative error "
        f"{errors[name]:.1e} ({name})"
    )
    if args.spec:
        write_spec(text)
        print(f"\nwrote the table into {SPEC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
