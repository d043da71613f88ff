# Pictures of attention: what `python transformer.py attention "sentence" --ckpt PATH` writes.
# The weights are the spec's named activation h.{l}.attn.att (SPEC.md "Named activations"), taken from
# whichever tier computes them, so every picture shows numbers the conformance suite has checked.
import base64
import json
from dataclasses import dataclass
from html import escape
from importlib import resources
from pathlib import Path

import numpy as np

from shared.errors import InputError

CMAP = "viridis"  # perceptually uniform and readable with every common colour-vision deficiency
HTML_COLORMAPS = ("viridis", "cividis", "magma")  # the page's palette choices, all colourblind-safe
MASKED = "#d9d9d9"  # the causal upper triangle: a query never sees later keys
DATA_PLACEHOLDER = "__ATTENTION_DATA__"
DIVERGING = "PuOr"  # the difference view: orange below zero, purple above, colourblind-safe
# weights stored as float32 up to this many (lower-triangle) entries, 16 MB: GPT-2 small's 144 heads up to
# 235 tokens; past it in 8 bits on a square-root scale, so that 1024 tokens x 144 heads is a 100 MB page
# rather than 400 MB (the page says which)
FLOAT32_ENTRIES = 4 << 20
QKV_LIMIT = 4 << 20  # floats of q, k, v the page carries (16 MB): GPT-2 small's 12 layers up to 150 tokens
# how whitespace and control characters show as tick labels and tokens (DejaVu Sans has these glyphs)
VISIBLE = {" ": "\u2423", "\n": "\u21b5", "\t": "\u21e5", "\r": "\u240d"}


@dataclass
class Attention:
    att: np.ndarray  # (L, NH, T, T) float32, att[l, h, i, j]: query i's weight on key j
    ids: list[int]  # the T token ids
    tokens: list[str]  # each id decoded
    text: str  # the sentence as given
    dropped: int  # tokens cut from the front to fit block_size
    qkv: np.ndarray | None = None  # (L, T, 3C) float32: every layer's q, k, v (h.{l}.attn.qkv), all heads
    scaled: bool = True  # scores divided by sqrt(head_size) (config.scale_attn_weights)


def encode_sentence(tokenizer, text: str, block_size: int) -> tuple[np.ndarray, int]:
    """The sentence's ids, at most the model's last block_size of them, and how many were dropped."""
    if not text:
        raise InputError("the sentence is empty")
    ids = tokenizer.encode(text)  # InputError names characters outside the vocabulary
    dropped = max(0, len(ids) - block_size)
    return ids[dropped:], dropped


def check_head(config, layer: int, head: int) -> None:
    if not 0 <= layer < config.n_layer:
        raise InputError(f"--layer {layer} is out of range: the model has layers 0..{config.n_layer - 1}")
    if not 0 <= head < config.n_head:
        raise InputError(f"--head {head} is out of range: the model has heads 0..{config.n_head - 1}")


def attention_weights(model, tokenizer, text: str) -> Attention:
    ids, dropped = encode_sentence(tokenizer, text, model.config.block_size)
    acts = model.activations(ids[None, :])
    att = np.stack(  # (L, NH, T, T): batch row 0 of every layer's weights
        [acts[f"h.{i}.attn.att"][0] for i in range(model.config.n_layer)]
    ).astype(np.float32)
    qkv = np.stack([acts[f"h.{i}.attn.qkv"][0] for i in range(model.config.n_layer)]).astype(np.float32)
    tokens = [tokenizer.decode([i]) for i in ids]
    return Attention(att, [int(i) for i in ids], tokens, text, dropped, qkv, model.config.scale_attn_weights)


def label(token: str) -> str:
    return "".join(VISIBLE.get(c, c if c.isprintable() else f"\\x{ord(c):02x}") for c in token)


def _oneline(text: str, limit: int = 90) -> str:
    text = label(text).replace(VISIBLE[" "], " ")
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


# ---- PNG figures (matplotlib's object API: no pyplot, so no global figure state) ----


def _masked(a: np.ndarray) -> np.ma.MaskedArray:
    T = a.shape[-1]
    return np.ma.masked_where(np.triu(np.ones((T, T), dtype=bool), k=1), a)


def _cmap():
    import matplotlib

    return matplotlib.colormaps[CMAP].with_extremes(bad=MASKED)


def _label_axes(ax, labels, fontsize, step=1, x=True, y=True):
    ticks = np.arange(0, len(labels), step)
    names = [labels[t] for t in ticks]
    rotation = 0 if all(len(s) == 1 for s in labels) else 90
    ax.set_xticks(ticks, names, fontsize=fontsize, rotation=rotation, parse_math=False)
    ax.set_yticks(ticks, names, fontsize=fontsize, parse_math=False)
    ax.tick_params(length=0, pad=1, labelbottom=x, labelleft=y)  # x: keys, y: queries


def _tick_fontsize(cell_inches: float, T: int) -> tuple[float, int]:
    """A font size that fits one label per token row, or a label every `step` tokens when even 5 pt
    does not fit."""
    per_token = 72 * cell_inches / T  # points per token along an axis
    step = max(1, int(np.ceil(6.0 / per_token)))
    return float(np.clip(0.85 * per_token * step, 5.0, 9.0)), step


def _caption(a: Attention) -> str:
    if not a.dropped:
        return f"\u201c{_oneline(a.text)}\u201d"
    shown = "".join(a.tokens)  # what the heatmaps show: the sentence's end
    return f"\u201c\u2026{_oneline(shown)}\u201d (the last {len(a.ids)} tokens; {a.dropped} dropped to fit block_size)"


def grid_cell_inches(T: int) -> float:
    """Inches per heatmap in the grid: a label on every token up to T = 64 (at least 6 pt a token,
    _tick_fontsize's limit), every sentence cut to a 64-token context included; larger T share out labels."""
    return float(np.clip(T / 11, 1.6, 6.0))


def plot_grid(a: Attention, path, title: str) -> None:
    """Every head: rows are layers, columns heads, one colour scale for all."""
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    L, NH, T, _ = a.att.shape
    cell = grid_cell_inches(T)
    fontsize, step = _tick_fontsize(cell, T)
    labels = [label(t) for t in a.tokens]
    fig = Figure(figsize=(NH * cell + 1.6, L * cell + 1.4), layout="constrained")
    axes = fig.subplots(L, NH, squeeze=False, sharex=True, sharey=True)
    norm, cmap = Normalize(0.0, 1.0), _cmap()
    for (l, h), ax in np.ndenumerate(axes):
        image = ax.imshow(_masked(a.att[l, h]), cmap=cmap, norm=norm, interpolation="nearest")
        ax.set_title(f"layer {l}, head {h}", fontsize=10)
        _label_axes(ax, labels, fontsize, step, x=l == L - 1, y=h == 0)
    for ax in axes[-1, :]:
        ax.set_xlabel("key (attended to)", fontsize=9)
    for ax in axes[:, 0]:
        ax.set_ylabel("query (attending)", fontsize=9)
    bar = fig.colorbar(image, ax=axes, shrink=min(1.0, 4 / L + 0.2), aspect=30)
    bar.set_label("attention weight (grey: future tokens, masked)")
    fig.suptitle(f"{title}\n{_caption(a)}", fontsize=12, parse_math=False)
    fig.savefig(path, dpi=120)


def plot_head(a: Attention, layer: int, head: int, path, title: str) -> None:
    """One head at full size: a labeled row per query token, with the weights written in when they fit."""
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    T = a.att.shape[-1]
    side = float(np.clip(0.22 * T, 5.0, 16.0))
    fontsize, step = _tick_fontsize(side, T)
    fig = Figure(figsize=(side + 1.8, side + 1.2), layout="constrained")
    ax = fig.subplots()
    w = a.att[layer, head]
    image = ax.imshow(_masked(w), cmap=_cmap(), norm=Normalize(0.0, 1.0), interpolation="nearest")
    _label_axes(ax, [label(t) for t in a.tokens], fontsize + 2 if step == 1 else fontsize, step)
    if T <= 24:  # the exact weights, where a cell is big enough to hold them
        for i in range(T):
            for j in range(i + 1):
                colour = "black" if w[i, j] > 0.6 else "white"  # viridis is light at the top
                ax.text(j, i, f"{w[i, j]:.2f}", ha="center", va="center", fontsize=6.5, color=colour)
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("query (attending)")
    fig.colorbar(image, ax=ax, shrink=0.8, label="attention weight (grey: future tokens, masked)")
    fig.suptitle(f"{title}, layer {layer}, head {head}\n{_caption(a)}", parse_math=False)
    fig.savefig(path, dpi=120)


# ---- the interactive page ----


def _colormap_table(name: str) -> list[str]:
    import matplotlib
    from matplotlib.colors import to_hex

    cmap = matplotlib.colormaps[name]
    return [to_hex(cmap(k / 255)) for k in range(256)]


def _lower_triangles(att: np.ndarray) -> np.ndarray:
    T = att.shape[-1]
    lower = np.tril_indices(T)  # row by row: (0,0), (1,0), (1,1), (2,0), ...
    return att[:, :, lower[0], lower[1]]  # (L, NH, T(T+1)/2)


def check_comparable(a: Attention, b: Attention) -> None:
    """Two models' attention over one sentence can be compared head by head: same heads, same tokens."""
    if a.att.shape[:2] != b.att.shape[:2]:
        raise InputError(
            f"--compare: the second model has {b.att.shape[0]} layers x {b.att.shape[1]} heads, the first "
            f"{a.att.shape[0]} x {a.att.shape[1]}; only models of one shape compare head by head"
        )
    if a.ids != b.ids:
        raise InputError(
            "--compare: the two models' tokenizers cut the sentence differently; they must agree"
        )


def encode_weights(att: np.ndarray) -> tuple[str, str]:
    """Every head's lower triangle, (layer, head, query, key) order, as base64: float32 little-endian, or
    past FLOAT32_ENTRIES as uint8 q = round(255 sqrt(w)) (w = (q / 255)^2: a weight of 1e-3 keeps two
    significant digits, one near 1 is within 0.4%); and the name of the encoding."""
    packed = _lower_triangles(att)
    if packed.size <= FLOAT32_ENTRIES:
        return _b64(packed), "float32"
    q = np.rint(np.sqrt(np.clip(packed, 0.0, 1.0)) * 255).astype(np.uint8)
    return base64.b64encode(q.tobytes()).decode("ascii"), "sqrt-uint8"


def page_data(
    a: Attention, layer: int, head: int, title: str, b: Attention | None = None, title_b: str = ""
) -> dict:
    L, NH, T, _ = a.att.shape
    weights, encoding = encode_weights(a.att)
    if b is not None:
        check_comparable(a, b)
    return {
        "title": title,
        "text": a.text,
        "tokens": a.tokens,
        "labels": [label(t) for t in a.tokens],
        "token_ids": a.ids,
        "dropped": a.dropped,
        "n_layer": L,
        "n_head": NH,
        "n_tokens": T,
        "layer": layer,
        "head": head,
        # every head's lower triangle, (layer, head, query, key) order, encoded as `encoding` says
        "attention": weights,
        "encoding": encoding,
        # float32, little-endian, (layer, token, 3C): what "why this weight" recomputes a weight from and
        # what the value-weighted view weighs by; left out past QKV_LIMIT floats (the page says so)
        "qkv": _b64(a.qkv) if a.qkv is not None and a.qkv.size <= QKV_LIMIT else None,
        "n_embd": int(a.qkv.shape[-1] // 3) if a.qkv is not None else None,
        "scaled": bool(a.scaled),
        "colormaps": {name: _colormap_table(name) for name in HTML_COLORMAPS},
        "masked": MASKED,
        # a second model's weights over the same tokens (--compare), and a diverging palette for B - A
        "compare": None if b is None else {"title": title_b, "attention": encode_weights(b.att)[0]},
        "diverging": _colormap_table(DIVERGING),
    }


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a, dtype="<f4").tobytes()).decode("ascii")


def render_html(data: dict) -> str:
    template = resources.files("viz").joinpath("attention.html").read_text(encoding="utf-8")
    # inside <script>, "</script>" or "<!--" in a sentence would end the data early: escape every "<"
    payload = json.dumps(data, ensure_ascii=False).replace("<", "\\u003c")
    return template.replace(DATA_PLACEHOLDER, payload)


@dataclass
class AttentionPage:
    """The page in a notebook: a cell ending in `attention_page(model, tokenizer, text)` shows it inline
    (Jupyter calls _repr_html_). It sits in an iframe of its own, so that its script and styles meet
    nothing of the notebook's."""

    html: str

    def _repr_html_(self) -> str:
        return (
            f'<iframe srcdoc="{escape(self.html, quote=True)}" title="attention" '
            'style="width: 100%; height: 900px; border: 1px solid #d0d7de"></iframe>'
        )


def attention_page(
    model, tokenizer, text: str, layer: int | None = None, head: int = 0, title: str = "attention"
):
    """The page write_attention writes, as an object a notebook displays inline."""
    layer = model.config.n_layer - 1 if layer is None else layer
    check_head(model.config, layer, head)
    return AttentionPage(
        render_html(page_data(attention_weights(model, tokenizer, text), layer, head, title))
    )


def write_attention(
    model,
    tokenizer,
    text: str,
    out_dir,
    layer: int | None = None,
    head: int = 0,
    title: str = "attention",
    log=print,
    compare=None,
) -> dict[str, Path]:
    """Writes the grid PNG, the chosen head's PNG (by default the last layer's head 0) and the page;
    returns their paths by kind. compare=(model, title): a second model (another checkpoint of the same
    shape: step 0 against the trained one), whose weights the page shows beside the first's and as B - A."""
    config = model.config
    layer = config.n_layer - 1 if layer is None else layer
    check_head(config, layer, head)
    a = attention_weights(model, tokenizer, text)
    b = None if compare is None else attention_weights(compare[0], tokenizer, text)
    if b is not None:
        check_comparable(a, b)
    if a.dropped:
        log(
            f"note: the sentence is {a.dropped + len(a.ids)} tokens, longer than the model's block_size "
            f"{config.block_size}; showing its last {len(a.ids)} tokens"
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "grid": out / "attention-grid.png",
        "head": out / f"attention-layer{layer}-head{head}.png",
        "html": out / "attention.html",
    }
    plot_grid(a, paths["grid"], title)
    plot_head(a, layer, head, paths["head"], title)
    page = page_data(a, layer, head, title, b, "" if compare is None else compare[1])
    paths["html"].write_text(render_html(page), encoding="utf-8")
    return paths
