"""The divergence finder: one input through the tiers, and one table of every tensor against the truth
in the order the computation makes them (every named activation in forward order, the loss, every
gradient, then the parameters and AdamW moments after the optimizer steps), with a mark on the first
tensor of each tier that exceeds its bound: where that tier's bug lives.

The truth is the outside one (transformers and torch in float64, conformance/golden/) on a conformance
case; on any other input (a preset's random weights, a checkpoint) no outside values exist, and the
float64 numpy tier stands in: where it and a tier disagree, either may be wrong, and the conformance
suite, which holds the numpy tier to the outside truth, tells which.

    python -m conformance.diff                                 # every tier in conformance/tiers.py
    python -m conformance.diff --case odd-B3-T7                # any case of conformance/cases.py
    python -m conformance.diff --tiers c numpy --config shakespeare -B 4 -T 32
    python -m conformance.diff --ckpt out/shakespeare-numpy.safetensors --html diff.html
    python -m conformance.diff --tier-module mypkg.mytier      # any module that follows shared/tier.py

The exit status is 1 when a tier diverges. In-process: rows = diverge(tiers, path, idx, targets, truth)
(truth: truth_results(case), or None for the float64 numpy tier), then first_divergence(rows).
"""

import argparse
import html
import importlib
import json
import math
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from conformance.cases import (
    ADAMW,
    ADAMW_CASES,
    CASES,
    N_STEPS,
    OPT_LR,
    batch,
    optimizer_steps,
    write_checkpoint,
)
from conformance.compare import random_state_dict
from conformance.golden import adamw_truth, truth
from conformance.tiers import REFERENCE, TIERS, load_reference
from shared.activations import activation_names
from shared.checkpoint import load_checkpoint, save_checkpoint
from shared.config import PRESETS
from shared.params import param_shapes
from shared.tolerances import bounds_for, rel_l2

# section -> (its title in the table, its key in shared/tolerances.py, error in units of lr), in the
# order the computation makes them
SECTIONS = {
    "activation": ("activations, forward order (rel. L2)", "activations", False),
    "loss": ("loss (relative)", "loss", False),
    "grad": ("gradients, canonical order (rel. L2)", "grads", False),
    "param": (
        f"parameters after {N_STEPS} AdamW steps on the truth's gradients (max abs / lr)",
        "adamw_params_lr",
        True,
    ),
    "m": ("AdamW m (rel. L2)", "adamw_moments", False),
    "v": ("AdamW v (rel. L2)", "adamw_moments", False),
}
WINDOW = 16  # the HTML page shows a tensor's first 16 x 16 values


@dataclass
class Result:
    """One tier on one tensor."""

    max_abs: float  # max |tier - reference|
    error: float  # the measure the bound applies to (SECTIONS)
    bound: float
    where: tuple  # the index of the largest |tier - reference| (the first NaN, if any)
    window: np.ndarray | None  # the tier's values in the tensor's window (None: shape mismatch)

    @property
    def exceeds(self) -> bool:
        return not self.error <= self.bound  # NaN exceeds every bound


@dataclass
class Row:
    section: str
    tensor: str
    shape: tuple
    ref_window: np.ndarray
    results: dict[str, Result] = field(default_factory=dict)  # tier name -> Result


def window(a) -> np.ndarray:
    """A small 2-D view of a tensor: the first WINDOW x WINDOW values of its last two axes at index 0
    of every other axis; a vector in rows of WINDOW (padded with NaN); a scalar as 1 x 1."""
    a = np.asarray(a, dtype=np.float64)
    if a.ndim >= 2:
        return a[(0,) * (a.ndim - 2)][:WINDOW, :WINDOW]
    flat = a.reshape(-1)[: WINDOW * WINDOW]
    width = min(WINDOW, flat.size)
    padded = np.full(-(-flat.size // width) * width, np.nan)
    padded[: flat.size] = flat
    return padded.reshape(-1, width)


def window_label(shape: tuple) -> str:
    if len(shape) >= 2:
        rows, cols = min(WINDOW, shape[-2]), min(WINDOW, shape[-1])
        return "[" + ", ".join(["0"] * (len(shape) - 2) + [f":{rows}", f":{cols}"]) + "]"
    return f"[:{min(WINDOW * WINDOW, shape[0])}] in rows of {WINDOW}" if shape else ""


def compare_tensor(got, ref, bound: float, per_lr: bool) -> Result:
    ref = np.asarray(ref, dtype=np.float64)
    got = None if got is None else np.asarray(got, dtype=np.float64)
    if got is None or got.shape != ref.shape:  # missing, or the wrong shape
        return Result(float("inf"), float("inf"), bound, (), None)
    diff = np.abs(got - ref)
    where = tuple(int(i) for i in np.unravel_index(np.argmax(diff), diff.shape))  # argmax finds a NaN
    biggest = float(diff.max())
    error = biggest / OPT_LR if per_lr else rel_l2(got, ref)
    return Result(biggest, error, bound, where, window(got))


def by_section(res: dict, config) -> dict[str, dict]:
    """Results (results(), truth_results()) as section -> {tensor name: array}, with every name the
    truth has (None where a tier gave none), in the table's order; the optimizer's sections only where
    the truth has them."""
    names = list(param_shapes(config))
    tensors = {"activation": res["acts"], "loss": {"loss": res["loss"]}, "grad": res["grads"]}
    if "opt_params" in res:
        tensors.update(param=res["opt_params"], m=res["m"], v=res["v"])
    order = {"activation": activation_names(config), "loss": ["loss"]}
    return {s: {n: tensors[s].get(n) for n in order.get(s, names)} for s in SECTIONS if s in tensors}


def results(model, idx, targets, opt_grads=None) -> dict:
    """A model's named activations, loss and gradients on one input; then, given opt_grads, its
    parameters and AdamW moments after apply_grads on each of them."""
    loss, grads = model.grads(idx, targets)
    out = {"loss": loss, "grads": grads, "acts": model.activations(idx)}
    if opt_grads is not None:
        out["opt_params"], opt = optimizer_steps(model, opt_grads)
        out["m"], out["v"] = opt.m, opt.v
    return out


OPTIMIZER_CASE = "clip-above"  # the optimizer's steps the table shows, where its case is the input


def truth_results(case: str) -> dict:
    """The outside truth of a conformance case in results()' form, with the optimizer's steps
    (opt_grads, and what they give) where an optimizer case is made on it."""
    t = truth(case)
    out = {"loss": t["loss"], "grads": t["grads"], "acts": t["acts"], "regime": CASES[case].regime}
    if ADAMW_CASES[OPTIMIZER_CASE].case == case:
        a = adamw_truth(OPTIMIZER_CASE)
        out.update(opt_grads=a["opt_grads"], opt_params=a["params"], m=a["m"], v=a["v"])
    return out


def reference_results(path, idx, targets) -> dict:
    """Where no outside values exist: the float64 numpy tier's results, its optimizer fed its own
    gradients scaled as in the optimizer case clip-above (50 (k + 1) at step k)."""
    reference = load_reference(path, adamw=ADAMW)
    _, grads = reference.grads(idx, targets)
    opt_grads = [{n: g * 50.0 * (k + 1) for n, g in grads.items()} for k in range(N_STEPS)]
    return {**results(reference, idx, targets, opt_grads), "opt_grads": opt_grads}


def tier_module(module):
    module = importlib.import_module(module) if isinstance(module, str) else module
    if not callable(getattr(module, "load", None)):
        raise TypeError(f"{module.__name__} is not a tier: it has no load() (shared/tier.py)")
    return module


def diverge(tiers: dict, path, idx: np.ndarray, targets: np.ndarray, truth: dict | None = None) -> list[Row]:
    """Every tensor of every tier against the truth (truth_results(case) for a conformance case, or None:
    the float64 numpy tier), on the checkpoint at `path` (a single file or a Hugging Face directory,
    read by each tier's own `load`) and one batch. tiers: name -> (module or module name, dtype), as
    in conformance/tiers.py; a module follows shared/tier.py."""
    path = str(path)
    config = load_checkpoint(path).config
    ref = reference_results(path, idx, targets) if truth is None else truth
    expected = by_section(ref, config)
    rows = [
        Row(section, name, np.shape(a), window(a))
        for section, tensors in expected.items()
        for name, a in tensors.items()
    ]
    for name, (module, dtype) in tiers.items():
        model = tier_module(module).load(path, dtype=dtype, adamw=ADAMW)
        got = by_section(results(model, idx, targets, ref.get("opt_grads")), config)
        bounds = bounds_for(dtype, ref.get("regime", "default"))
        for row in rows:
            _, key, per_lr = SECTIONS[row.section]
            a = got[row.section][row.tensor]
            row.results[name] = compare_tensor(a, expected[row.section][row.tensor], bounds[key], per_lr)
    return rows


def first_divergence(rows: list[Row]) -> dict[str, Row | None]:
    """tier name -> the first row (table order) where the tier exceeds its bound, or None."""
    return {tier: next((row for row in rows if row.results[tier].exceeds), None) for tier in rows[0].results}


def focus(rows: list[Row]) -> tuple[Row, bool]:
    """The row the HTML page shows: the first where any tier diverges (True), or else the row closest
    to its bound (False)."""
    for row in rows:
        if any(r.exceeds for r in row.results.values()):
            return row, True
    return max(rows, key=lambda row: max(r.error / r.bound for r in row.results.values())), False


# ---- output: the table, JSON, HTML ----


def _marks(rows: list[Row]) -> dict[tuple[int, str], str]:
    first = first_divergence(rows)
    marks = {}
    for i, row in enumerate(rows):
        for tier, r in row.results.items():
            if r.exceeds:
                marks[i, tier] = "FIRST" if first[tier] is row else "over"
    return marks


def table(rows: list[Row], tiers: dict) -> str:
    names = list(rows[0].results)
    width = max(len(row.tensor) for row in rows) + 2
    marks = _marks(rows)
    group = "{:>9} {:>9} {:>8} {:<5}"
    lines = [
        " " * width + "".join(f"   {f'{t} ({np.dtype(tiers[t][1]).name})':<34}" for t in names),
        f"{'tensor':<{width}}"
        + "".join("   " + group.format("max abs", "error", "bound", "") for _ in names),
    ]
    section = None
    for i, row in enumerate(rows):
        if row.section != section:
            section = row.section
            lines.append(f"-- {SECTIONS[section][0]}")
        cells = []
        for t in names:
            r = row.results[t]
            cells.append(
                "   "
                + group.format(f"{r.max_abs:.2e}", f"{r.error:.2e}", f"{r.bound:.0e}", marks.get((i, t), ""))
            )
        lines.append(f"  {row.tensor:<{width - 2}}" + "".join(cells))
    lines.append("")
    lines += [f"first divergence: {summary(t, row)}" for t, row in first_divergence(rows).items()]
    return "\n".join(line.rstrip() for line in lines)


def summary(tier: str, row: Row | None) -> str:
    if row is None:
        return f"{tier}: none, every tensor within its bound"
    r = row.results[tier]
    return (
        f"{tier}: {row.section} {row.tensor}: error {r.error:.2e} > bound {r.bound:.0e}, "
        f"largest |difference| {r.max_abs:.2e} at index {list(r.where)}"
    )


def _number(x: float):
    return x if math.isfinite(x) else str(x)  # JSON has no NaN or infinity


def to_json(rows: list[Row], meta: dict) -> dict:
    first = first_divergence(rows)
    return {
        **meta,
        "first_divergence": {
            t: None if row is None else {"section": row.section, "tensor": row.tensor}
            for t, row in first.items()
        },
        "rows": [
            {
                "section": row.section,
                "tensor": row.tensor,
                "shape": list(row.shape),
                "tiers": {
                    t: {
                        "max_abs": _number(r.max_abs),
                        "error": _number(r.error),
                        "bound": r.bound,
                        "exceeds": r.exceeds,
                        "where": list(r.where),
                    }
                    for t, r in row.results.items()
                },
            }
            for row in rows
        ],
    }


_STYLE = """
body { font: 14px system-ui, sans-serif; margin: 1.5em; color: #222 }
table { border-collapse: collapse; font: 12px ui-monospace, monospace }
td, th { border: 1px solid #ddd; padding: 2px 5px; text-align: right }
th { background: #f4f4f4 } td.name { text-align: left }
.grids { display: flex; flex-wrap: wrap; gap: 1.5em; align-items: flex-start }
.over { background: #fdd } .first { background: #f99; font-weight: bold }
caption { font-weight: bold; padding: 4px; text-align: left }
"""


def _grid(caption: str, values: np.ndarray, ref: np.ndarray | None, scale: float) -> str:
    """A window as an HTML table; cells of a tier are shaded by |tier - reference| / scale."""
    out = [f"<table><caption>{html.escape(caption)}</caption>"]
    for i in range(values.shape[0]):
        out.append("<tr>")
        for j in range(values.shape[1]):
            v = values[i, j]
            style, title = "", repr(float(v))
            if ref is not None:
                d = abs(v - ref[i, j])
                title += f", difference {d:.3e}"
                shade = 1.0 if not d <= scale else (d / scale if scale > 0 else 0.0)
                style = f' style="background: rgba(220, 30, 30, {shade:.2f})"'
            padding = np.isnan(v if ref is None else ref[i, j])  # a vector's last row, filled up
            text = "" if padding else f"{v:.4g}"
            out.append(f'<td{style} title="{html.escape(title)}">{text}</td>')
        out.append("</tr>")
    out.append("</table>")
    return "".join(out)


def to_html(rows: list[Row], meta: dict) -> str:
    """A self-contained page (no script, no network): the tiers' values side by side for the first
    diverging tensor, then the whole table."""
    row, diverged = focus(rows)
    esc = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>divergence finder</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>Divergence finder</h1>",
        f"<p>{esc(meta['inputs'])}; reference {esc(meta['reference'])}.</p>",
        "<ul>"
        + "".join(f"<li>{esc(summary(t, r))}</li>" for t, r in first_divergence(rows).items())
        + "</ul>",
        (
            f"<h2>{'First divergence' if diverged else 'No divergence; the tensor closest to its bound'}: "
            f"{esc(row.section)} {esc(row.tensor)} {list(row.shape)}</h2>"
        ),
        (
            f"<p>Values {esc(window_label(row.shape))}. A tier's cell is shaded by |tier - reference| "
            "relative to the largest difference of any tier in the whole tensor; hover for the exact value "
            "and the difference.</p><ul>"
        ),
    ]
    for t, r in row.results.items():
        state = "exceeds" if r.exceeds else "within"
        parts.append(
            f"<li>{esc(t)}: error {r.error:.3e} {state} bound {r.bound:.0e}; largest |difference| "
            f"{r.max_abs:.3e} at index {list(r.where)}</li>"
        )
    parts.append("</ul><div class='grids'>")
    parts.append(_grid("reference", row.ref_window, None, 0.0))
    scale = max((r.max_abs for r in row.results.values() if math.isfinite(r.max_abs)), default=0.0)
    for t, r in row.results.items():
        if r.window is not None:
            parts.append(_grid(t, r.window, row.ref_window, scale))
    parts.append("</div><h2>Every tensor</h2><table><tr><th>section</th><th>tensor</th>")
    names = list(rows[0].results)
    parts += [f"<th>{esc(t)} max abs</th><th>{esc(t)} error</th><th>bound</th>" for t in names]
    parts.append("</tr>")
    marks = _marks(rows)
    for i, r in enumerate(rows):
        parts.append(f"<tr><td class='name'>{esc(r.section)}</td><td class='name'>{esc(r.tensor)}</td>")
        for t in names:
            res, mark = r.results[t], marks.get((i, t))
            cls = {"FIRST": " class='first'", "over": " class='over'"}.get(mark, "")
            parts.append(f"<td>{res.max_abs:.2e}</td><td{cls}>{res.error:.2e}</td><td>{res.bound:.0e}</td>")
        parts.append("</tr>")
    parts.append("</table></body></html>")
    return "\n".join(parts)


# ---- the command line ----


def prepare(folder, case=None, config=None, ckpt=None, batch_size=None, seq_len=None, seed=None):
    """The checkpoint, the batch and the truth: a conformance case's (the outside truth), or a preset's
    random weights (compare.random_state_dict, as the suite uses) written into `folder`, or the given
    checkpoint, with random token ids and some targets -1 (truth None: the float64 numpy tier)."""
    if case is not None:
        c = CASES[case]
        sizes = ", ".join(f"{k} {v}" for k, v in c.config.to_dict().items())
        inputs = f"case {case} ({sizes}); batch {c.B} x {c.T}"
        t = truth(case)
        return write_checkpoint(case, folder), t["idx"], t["targets"], inputs, truth_results(case)
    seed = 0 if seed is None else seed
    if ckpt is None:
        cfg = PRESETS[config]
        path = Path(folder) / f"{config}-seed{seed}.safetensors"
        save_checkpoint(path, cfg, random_state_dict(cfg, seed))
        source = f"config {config}, random weights (seed {seed})"
    else:
        cfg, path, source = load_checkpoint(ckpt).config, ckpt, f"checkpoint {ckpt}"
    B = 2 if batch_size is None else batch_size
    T = min(16, cfg.block_size) if seq_len is None else seq_len
    idx, targets = batch(cfg, B, T, seed)
    sizes = ", ".join(f"{k} {v}" for k, v in cfg.to_dict().items())
    return str(path), idx, targets, f"{source} ({sizes}); batch {B} x {T} (seed {seed})", None


DEFAULT_CASE = "tiny-B2-T16"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m conformance.diff",
        description="Every tensor of the tiers against the truth, and the first that diverges.",
    )
    parser.add_argument("--tiers", nargs="+", choices=list(TIERS), help="tiers from conformance/tiers.py")
    parser.add_argument(
        "--tier-module",
        action="append",
        default=[],
        metavar="MODULE",
        help="an importable module following shared/tier.py, checked in float32 (repeatable)",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--case",
        choices=list(CASES),
        help=f"a conformance case, checked against the outside truth (default {DEFAULT_CASE})",
    )
    source.add_argument(
        "--config", choices=list(PRESETS), help="a preset with random weights (truth: float64 numpy tier)"
    )
    source.add_argument("--ckpt", help="a checkpoint: safetensors file or Hugging Face directory (likewise)")
    parser.add_argument("-B", "--batch-size", type=int, help="with --config or --ckpt; default 2")
    parser.add_argument(
        "-T", "--seq-len", type=int, help="with --config or --ckpt; default min(16, block_size)"
    )
    parser.add_argument("--seed", type=int, help="with --config or --ckpt: the random weights and batch")
    parser.add_argument("--json", metavar="PATH", help="write the table as JSON")
    parser.add_argument("--html", metavar="PATH", help="write a self-contained HTML page")
    args = parser.parse_args(argv)
    own_input = args.config is not None or args.ckpt is not None
    if not own_input and any(v is not None for v in (args.batch_size, args.seq_len, args.seed)):
        parser.error("-B, -T and --seed choose the input of --config or --ckpt; a case has its own")
    case = None if own_input else (args.case or DEFAULT_CASE)

    tiers = {name: TIERS[name] for name in args.tiers or ([] if args.tier_module else TIERS)}
    tiers.update({module: (module, np.float32) for module in args.tier_module})
    with tempfile.TemporaryDirectory() as folder:
        path, idx, targets, inputs, truth_ = prepare(
            folder, case, args.config, args.ckpt, args.batch_size, args.seq_len, args.seed
        )
        rows = diverge(tiers, path, idx, targets, truth_)
    if truth_ is not None:
        reference = "the outside truth (transformers and torch.optim.AdamW in float64, conformance/golden/)"
    else:
        reference = (
            f"{REFERENCE[0]} in {np.dtype(REFERENCE[1]).name}, as no outside values exist for this input: "
            "where it and a tier disagree, either may be wrong (the conformance suite holds it to the "
            "outside truth)"
        )
    meta = {
        "reference": reference,
        "inputs": inputs,
        "tiers": {
            name: {"module": getattr(m, "__name__", m), "dtype": np.dtype(d).name}
            for name, (m, d) in tiers.items()
        },
    }
    text = table(rows, tiers)
    print(f"{inputs}; reference {meta['reference']}\n")
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps(to_json(rows, meta), indent=1))
    if args.html:
        Path(args.html).write_text(to_html(rows, meta))
    return 1 if any(row is not None for row in first_divergence(rows).values()) else 0


if __name__ == "__main__":
    sys.exit(main())
