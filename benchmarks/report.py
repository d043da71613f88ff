"""The benchmarks' JSON as a markdown table and a PNG chart of each tier's time against PyTorch's.

    pytest benchmarks --benchmark-json out/bench.json     # add -m "slow or not slow" for gpt2 as well
    python -m benchmarks.report out/bench.json --md out/bench.md --png out/bench.png
    python -m benchmarks.report quick.json slow.json    # several runs: each group from the last holding it

The table gives, per group (one operation on one config, every row measured in the same run): the
median time, tokens per second (generation), model GFLOP/s, the fraction of the machine's ceiling (numpy's
2048^3 float32 matmul, measured in the same run) and the ratio to PyTorch's time: a mixed-precision row's
(tinygrad-float16, tinygrad-bfloat16) to PyTorch's in the same precision (pytorch-float16, ...), every
other row's to PyTorch's in float32 on one device, tinygrad-xN's (the tier on N devices) too. Then the
targets (issue 6): each checked against the ratios of this run.
"""

import argparse
import json
from collections import defaultdict
from pathlib import Path

# (tier, operation, case, the largest ratio to PyTorch's time that meets the target)
PYTORCH_TARGETS = [
    ("c", "train step", "shakespeare-B12", 0.8),
    ("c", "forward+backward", "gpt2-B4", 1.0),
    ("numpy", "train step", "shakespeare-B12", 1.5),
    ("tinygrad", "train step", "shakespeare-B12", 3.0),
]
CEILING_TARGETS = [("c", "forward+backward", "gpt2-B4", 0.75)]  # fraction of the matmul ceiling
# the tiers first, each beside its variants (tinygrad-float16 after tinygrad), then the references
ROW_ORDER = {"pytorch": 8, "ceiling": 9}
MIXED = ("float16", "bfloat16")  # the precisions of the mixed rows, the last part of their names
KV_SPEEDUP = 5.0  # a token through the KV cache against recomputing the whole prefix (T = 64)


def load(path) -> tuple[list[dict], dict]:
    data = json.loads(Path(path).read_text())
    rows = []
    for b in data["benchmarks"]:
        if b.get("stats") is None:
            continue
        rows.append({**b["params"], "group": b["group"], "median": b["stats"]["median"], **b["extra_info"]})
    return rows, data.get("machine_info", {})


def index(rows) -> dict:
    return {(r["impl"], r["op"], r["case"]): r for r in rows}


def row_order(impl: str) -> int:
    return ROW_ORDER.get(impl.split("-")[0], 2)


def is_reference(impl: str) -> bool:
    # pytorch, ceiling, and PyTorch in mixed precision (pytorch-float16, ...)
    return impl.split("-")[0] in ROW_ORDER


def pytorch_row(impl: str) -> str:
    # the PyTorch row an implementation is measured against: the same mixed precision, or float32
    precision = impl.split("-")[-1]
    return f"pytorch-{precision}" if precision in MIXED else "pytorch"


def ratio_to_pytorch(row, by_key) -> float | None:
    torch_row = by_key.get((pytorch_row(row["impl"]), row["op"], row["case"]))
    if torch_row is None or is_reference(row["impl"]):
        return None
    return row["median"] / torch_row["median"]


def fmt(v, spec) -> str:
    return "" if v is None else format(v, spec)


def machine(info: dict) -> str:
    cpu = info.get("cpu", {})
    return f"{cpu.get('brand_raw', '?')}, {cpu.get('count', '?')} cores, Python {info.get('python_version', '?')}"


def table(rows, info) -> str:
    by_key = index(rows)
    groups = defaultdict(list)
    for r in rows:
        groups[r["group"]].append(r)
    out = [f"Measured on {machine(info)}.", ""]
    out += [
        "| group | row | median | tokens/s | GFLOP/s | of ceiling | vs PyTorch |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for group, members in groups.items():
        for r in sorted(members, key=lambda r: (row_order(r["impl"]), r["impl"], r["op"])):
            name = r["impl"] if r["op"] not in ("generate", "recompute") else f"{r['impl']} ({r['op']})"
            if r["impl"] == "ceiling":
                name = "ceiling: numpy matmul 2048^3"
            out.append(
                f"| {group} | {name} | {r['median'] * 1e3:.2f} ms | {fmt(r.get('tokens_per_s'), ',.0f')} "
                f"| {fmt(r.get('gflops'), '.1f')} | {fmt(r.get('ceiling_fraction'), '.2f')} "
                f"| {fmt(ratio_to_pytorch(r, by_key), '.2f')} |"
            )
    out += ["", "Targets:", ""] + [f"- {line}" for line in targets(rows)]
    return "\n".join(out) + "\n"


def targets(rows) -> list[str]:
    by_key, lines = index(rows), []
    for impl, op, case, bound in PYTORCH_TARGETS:
        r = by_key.get((impl, op, case))
        ratio = None if r is None else ratio_to_pytorch(r, by_key)
        if ratio is None:
            lines.append(f"{impl} {op} {case}: at most {bound}x PyTorch's time: not measured in this run")
        else:
            verdict = "met" if ratio <= bound else "NOT met"
            lines.append(
                f"{impl} {op} {case}: {ratio:.2f}x PyTorch's time (target at most {bound}x): {verdict}"
            )
    for impl, op, case, bound in CEILING_TARGETS:
        r = by_key.get((impl, op, case))
        if r is None or "ceiling_fraction" not in r:
            lines.append(f"{impl} {op} {case}: at least {bound:.0%} of the ceiling: not measured in this run")
        else:
            f = r["ceiling_fraction"]
            verdict = "met" if f >= bound else "NOT met"
            lines.append(
                f"{impl} {op} {case}: {f:.0%} of the matmul ceiling (target at least {bound:.0%}): {verdict}"
            )
    for (impl, op, case), r in sorted(by_key.items()):
        slow = by_key.get((impl, "recompute", case))
        if op != "generate" or slow is None or is_reference(impl) or "tokens_per_s" not in r:
            continue
        if r.get("T") != 64:  # the target is set at T = 64
            continue
        speedup = r["tokens_per_s"] / slow["tokens_per_s"]
        verdict = "met" if speedup >= KV_SPEEDUP else "NOT met"
        lines.append(
            f"{impl} generation {case}: a token through the KV cache is {speedup:.1f}x faster than "
            f"recomputing the whole prefix (target at least {KV_SPEEDUP:.0f}x): {verdict}"
        )
    return lines


def chart(rows, info, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_key = index(rows)
    bars = defaultdict(dict)  # tier -> "op case" -> ratio
    for r in rows:
        ratio = ratio_to_pytorch(r, by_key)
        if ratio is not None:
            label = r["group"].replace(" ", "\n", 1) + ("" if r["op"] != "recompute" else "\n(recompute)")
            bars[r["impl"]][label] = ratio
    labels = list(dict.fromkeys(label for tier in bars.values() for label in tier))
    fig, ax = plt.subplots(figsize=(max(8, 0.9 * len(labels)), 4.5))
    width = 0.8 / max(1, len(bars))
    # colorblind-safe (Okabe-Ito, its black made grey beside the line at 1), one per tier and variant
    colors = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#999999"]
    for i, (tier, ratios) in enumerate(bars.items()):
        xs = [j + i * width for j, label in enumerate(labels) if label in ratios]
        ax.bar(
            xs,
            [ratios[label] for label in labels if label in ratios],
            width,
            label=tier,
            color=colors[i % len(colors)],
        )
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_ylabel("time / PyTorch's time (lower is faster)")
    ax.set_xticks([j + width * (len(bars) - 1) / 2 for j in range(len(labels))], labels, fontsize=7)
    ax.set_title(f"Each tier against PyTorch on the CPU ({machine(info)})", fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "json",
        nargs="+",
        help="files written by pytest --benchmark-json; a group found in several is taken from the last",
    )
    p.add_argument("--md", help="write the table here (default: print it)")
    p.add_argument("--png", help="write the chart of ratios to PyTorch here")
    args = p.parse_args(argv)
    rows, info = [], {}
    for path in args.json:  # every row of a group from one run: a later file's group replaces it whole
        file_rows, info = load(path)
        rows = [r for r in rows if r["group"] not in {f["group"] for f in file_rows}] + file_rows
    if not rows:
        raise SystemExit(
            f"{' '.join(args.json)} holds no timed benchmarks (was it run with --benchmark-disable?)"
        )
    text = table(rows, info)
    if args.md:
        Path(args.md).write_text(text)
        print(f"wrote {args.md}")
    else:
        print(text)
    if args.png:
        chart(rows, info, args.png)
        print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
