# `python transformer.py attention`: the PNGs, the self-contained page, the command's errors, and the page
# driven in a real headless Chromium (Debian's `chromium`, which .ci/run installs) over the DevTools protocol.
import base64
import json
import re
import shutil
import subprocess
import time
import urllib.request

import numpy as np
import pytest

import impl_numpy
import transformer
from shared.checkpoint import save_checkpoint
from shared.config import GPTConfig
from shared.params import init_state_dict
from shared.tokenizer import CharTokenizer
from viz.attention import attention_weights, label, render_html, write_attention

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TOKENIZER = CharTokenizer.from_text("abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ,.:;!?'$<>/-()\n")
SENTENCE = "ROMEO: But soft, what light?"


def make_checkpoint(path, n_layer=2, n_head=3, block_size=32, seed=0):
    config = GPTConfig(n_layer, n_head, 6 * n_head, block_size, TOKENIZER.vocab_size)
    save_checkpoint(path, config, init_state_dict(config, seed), metadata={"tokenizer": TOKENIZER.to_json()})
    return path


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors")


def run(*args):
    return transformer.main(["attention", *map(str, args)])


def assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, path
    assert data[12:16] == b"IHDR" and data.rstrip(b"\x00")[-8:-4] == b"IEND", path
    import matplotlib.image

    assert matplotlib.image.imread(path).ndim == 3  # it decodes


def script_data(html: str) -> dict:
    found = re.search(r'<script id="attention-data" type="application/json">(.*?)</script>', html, re.DOTALL)
    return json.loads(found.group(1))


# ---- the files ----


@pytest.mark.parametrize("impl", list(transformer.TIERS))
def test_command_writes_pngs_and_page(ckpt, tmp_path, capsys, impl):
    assert run(SENTENCE, "--ckpt", ckpt, "--impl", impl, "--out", tmp_path, "--layer", 0, "--head", 2) == 0
    out = capsys.readouterr().out
    for name in ("attention-grid.png", "attention-layer0-head2.png", "attention.html"):
        assert (tmp_path / name).is_file() and str(tmp_path / name) in out
    assert_png(tmp_path / "attention-grid.png")
    assert_png(tmp_path / "attention-layer0-head2.png")
    data = script_data((tmp_path / "attention.html").read_text(encoding="utf-8"))
    assert (data["n_layer"], data["n_head"], data["n_tokens"]) == (2, 3, len(SENTENCE))
    assert (data["layer"], data["head"]) == (0, 2) and data["text"] == SENTENCE


def test_default_head_is_the_last_layers_first(ckpt, tmp_path):
    assert run("To be", "--ckpt", ckpt, "--out", tmp_path) == 0  # the default tier (c)
    assert (tmp_path / "attention-layer1-head0.png").is_file()


def test_page_is_self_contained(ckpt, tmp_path):
    sentence = "</script><script>alert()<!-- $x$"  # must stay data, not markup
    assert run(sentence, "--ckpt", ckpt, "--impl", "numpy", "--out", tmp_path) == 0
    html = (tmp_path / "attention.html").read_text(encoding="utf-8")
    assert "__ATTENTION_DATA__" not in html
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.IGNORECASE)
    assert not re.search(r"https?://", html)  # no URL at all: nothing to fetch, even from a script
    assert not re.search(r"<(link|script)[^>]*\b(src|href)=(?![\"']data:)", html, re.IGNORECASE)
    assert html.count("</script>") == 2  # the data's and the code's: the sentence did not close one
    data = script_data(html)
    assert data["text"] == sentence
    # the weights inline, as float32 lower triangles
    T = len(sentence)
    packed = np.frombuffer(base64.b64decode(data["attention"]), dtype="<f4").reshape(2, 3, T * (T + 1) // 2)
    assert np.all(packed >= 0) and np.allclose(packed[:, :, 0], 1.0)  # the first query sees only itself


def test_weights_are_the_tiers_activations(ckpt):
    model = impl_numpy.load(ckpt)
    a = attention_weights(model, TOKENIZER, SENTENCE)
    acts = model.activations(TOKENIZER.encode(SENTENCE)[None, :])
    for layer in range(2):
        np.testing.assert_array_equal(a.att[layer], acts[f"h.{layer}.attn.att"][0].astype(np.float32))
    np.testing.assert_allclose(a.att.sum(-1), 1.0, rtol=1e-5)  # every query's weights sum to one
    assert "".join(a.tokens) == SENTENCE and a.dropped == 0


def test_long_sentence_keeps_the_last_block_size_tokens(ckpt, tmp_path, capsys):
    sentence = "abcdefghij" * 5  # 50 tokens, block_size 32
    assert run(sentence, "--ckpt", ckpt, "--impl", "numpy", "--out", tmp_path) == 0
    assert "showing its last 32 tokens" in capsys.readouterr().out
    data = script_data((tmp_path / "attention.html").read_text(encoding="utf-8"))
    assert data["n_tokens"] == 32 and data["dropped"] == 18 and "".join(data["tokens"]) == sentence[-32:]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--layer", "2"], "--layer 2 is out of range: the model has layers 0..1"),
        (["--layer", "-1"], "--layer -1 is out of range"),
        (["--head", "3"], "--head 3 is out of range: the model has heads 0..2"),
        (["--head", "-1"], "--head -1 is out of range"),
    ],
)
def test_out_of_range_head(ckpt, tmp_path, capsys, args, message):
    assert run(SENTENCE, "--ckpt", ckpt, "--impl", "numpy", "--out", tmp_path, *args) == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing written


def test_bad_sentence_and_checkpoint(ckpt, tmp_path, capsys):
    assert run("", "--ckpt", ckpt, "--impl", "numpy", "--out", tmp_path) == 2
    assert "the sentence is empty" in capsys.readouterr().err
    assert run("caf\u00e9 #1", "--ckpt", ckpt, "--impl", "numpy", "--out", tmp_path) == 2
    assert "not in the tokenizer's vocabulary: '#1\u00e9'" in capsys.readouterr().err
    assert run(SENTENCE, "--ckpt", tmp_path / "missing.safetensors", "--out", tmp_path) == 2
    assert "no such checkpoint file" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: the sentence and --ckpt are required
        transformer.main(["attention", SENTENCE])
    assert "--ckpt" in capsys.readouterr().err


def test_render_html_escapes_the_data():
    html = render_html({"text": "</script><!--", "n": 1})
    assert "</script><!--" not in html and script_data(html)["text"] == "</script><!--"


# ---- the page in a real browser ----

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Chromium:
    """Headless Chromium driven over the DevTools protocol (one page, a websocket, JSON messages)."""

    def __init__(self, profile, downloads):
        import websocket  # websocket-client, in the test extra

        self.process = subprocess.Popen(
            [
                CHROMIUM,
                "--headless=new",
                "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-extensions",
                "--disable-sync",
                "--window-size=1400,1000",
                "--remote-debugging-port=0",  # any free port; Chromium writes it into the profile
                f"--user-data-dir={profile}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            port = self._port(profile)
            no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            with no_proxy.open(f"http://127.0.0.1:{port}/json/list", timeout=30) as r:
                page = next(t for t in json.load(r) if t["type"] == "page")
            self.ws = websocket.create_connection(
                page["webSocketDebuggerUrl"], timeout=60, suppress_origin=True, http_no_proxy=["127.0.0.1"]
            )
        except BaseException:
            self.close()
            raise
        self.events, self._id = [], 0
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable")
        self.send("Browser.setDownloadBehavior", behavior="allow", downloadPath=str(downloads))

    def _port(self, profile, timeout=60):
        path, deadline = profile / "DevToolsActivePort", time.monotonic() + timeout
        while time.monotonic() < deadline:
            if path.is_file() and path.read_text().strip():
                return int(path.read_text().split()[0])
            if self.process.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.process.returncode}")
            time.sleep(0.05)
        raise TimeoutError("chromium did not open its DevTools port")

    def send(self, method, **params):
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self._id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, method, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for k, event in enumerate(self.events):
                if event.get("method") == method:
                    return self.events.pop(k)
            self.ws.settimeout(max(0.01, deadline - time.monotonic()))
            self.events.append(json.loads(self.ws.recv()))
        raise TimeoutError(method)

    def open(self, path):
        self.events.clear()
        self.send("Page.navigate", url=path.as_uri())
        self.wait_for("Page.loadEventFired")

    def js(self, expression):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def mouse(self, kind, x, y):
        self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def click(self, selector):
        """A real click (the mouse moves there, presses, releases), at the element's centre."""
        self.js(f"document.querySelector({json.dumps(selector)}).scrollIntoView({{block: 'center'}})")
        x, y = self.js(
            f"(r => [r.x + r.width / 2, r.y + r.height / 2])"
            f"(document.querySelector({json.dumps(selector)}).getBoundingClientRect())"
        )
        self.mouse("mouseMoved", x, y)
        self.mouse("mousePressed", x, y)
        self.mouse("mouseReleased", x, y)

    def problems(self):
        """Console errors, uncaught exceptions, and every request that left the page's own file."""
        self.js("0")  # collect the events sent so far
        found = []
        for e in self.events:
            method, params = e.get("method"), e.get("params", {})
            if method == "Runtime.exceptionThrown":
                found.append(f"exception: {params['exceptionDetails']}")
            elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
                found.append(f"console.{params['type']}: {params['args']}")
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                found.append(f"log: {params['entry']['text']}")
            elif method == "Network.requestWillBeSent":
                url = params["request"]["url"]
                if not url.startswith(("file:", "data:", "blob:")):
                    found.append(f"request: {url}")
        return found

    def close(self):
        if getattr(self, "ws", None) is not None:
            self.ws.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run installs it)")
    root = tmp_path_factory.mktemp("chromium")
    (root / "downloads").mkdir()
    b = Chromium(root / "profile", root / "downloads")
    b.downloads = root / "downloads"
    yield b
    b.close()


def shown(b):
    return b.js("document.getElementById('main-canvas').dataset.heads")


def pixels(b):
    return b.js("document.getElementById('main-canvas').toDataURL()")


def wait_for_file(folder, name, timeout=30):
    path, deadline = folder / name, time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file() and not list(folder.glob("*.crdownload")):
            return path
        time.sleep(0.05)
    raise TimeoutError(f"no download {name}; in the folder: {sorted(p.name for p in folder.iterdir())}")


def test_page_in_headless_chromium(browser, ckpt, tmp_path):
    b = browser
    model = impl_numpy.load(ckpt)
    write_attention(model, TOKENIZER, SENTENCE, tmp_path, layer=1, head=0, log=lambda *_: None)
    att = attention_weights(model, TOKENIZER, SENTENCE).att
    b.open(tmp_path / "attention.html")

    # the grid: layers x heads thumbnails, each a drawn canvas; the chosen head is in the main view
    assert b.js("document.querySelectorAll('#grid .thumb').length") == 2 * 3
    cells = b.js("[...document.querySelectorAll('#grid .thumb')].map(t => t.dataset.layer + t.dataset.head)")
    assert cells == ["00", "01", "02", "10", "11", "12"]
    drawn = "c => c.getContext('2d').getImageData(0, c.height - 2, 1, 1).data[3] === 255"  # bottom-left cell
    assert b.js(f"[...document.querySelectorAll('#grid .thumb canvas')].every({drawn})")
    assert shown(b) == "L1H0"
    before = pixels(b)

    # click a head: the main view shows it, locked, and stays when the mouse leaves
    b.click('.thumb[data-layer="0"][data-head="1"] canvas')
    b.mouse("mouseMoved", 5, 5)
    assert shown(b) == "L0H1"
    assert b.js("document.getElementById('view-title').textContent") == "layer 0, head 1 (locked)"
    assert b.js("document.querySelector('.thumb.locked').dataset.head") == "1"
    after = pixels(b)
    assert after != before
    # click it again: unlocked, back to the selection
    b.click('.thumb[data-layer="0"][data-head="1"] canvas')
    b.mouse("mouseMoved", 5, 5)
    assert shown(b) == "L1H0" and b.js("document.querySelectorAll('.thumb.locked').length") == 0
    assert pixels(b) == before

    # toggle a second head into the view, then solo it
    b.click('.thumb[data-layer="0"][data-head="2"] input.toggle')
    b.mouse("mouseMoved", 5, 5)
    assert shown(b) == "L0H2 L1H0"
    b.click('.thumb[data-layer="0"][data-head="2"] button.solo')
    b.mouse("mouseMoved", 5, 5)
    assert shown(b) == "L0H2"

    # the tooltip gives the exact weight of the cell under the mouse
    i, j = 10, 4
    x, y = b.js(
        f"(() => {{ const r = document.getElementById('main-canvas').getBoundingClientRect();"
        f" return [r.x + layout.left + ({j} + 0.5) * layout.cell, r.y + layout.top + ({i} + 0.5) * layout.cell]; }})()"
    )
    b.mouse("mouseMoved", x, y)
    tip = b.js(
        "document.getElementById('tooltip').hidden ? '' : document.getElementById('tooltip').textContent"
    )
    assert (
        f"query #{i} \u2018{label(SENTENCE[i])}\u2019 \u2192 key #{j}" in tip and "(layer 0, head 2)" in tip
    )
    assert float(re.search(r"weight (\S+)", tip).group(1)) == pytest.approx(att[0, 2, i, j], rel=1e-5)

    # the token-lines view and the other direction
    b.click("input[name=view][value=lines]")
    b.click("input[name=direction][value=k2q]")
    assert b.js("document.getElementById('main-canvas').dataset.view") == "lines"
    b.click("#strip span:nth-child(3)")  # pin a key token
    assert "is attended by" in b.js("document.getElementById('tooltip').textContent")

    # the exports: the view as a PNG, the data as JSON
    b.click("#export-png")
    png = wait_for_file(b.downloads, "attention-lines-layer0-head2.png")
    assert png.read_bytes()[:8] == PNG_SIGNATURE
    b.click("#export-json")
    exported = json.loads(wait_for_file(b.downloads, "attention.json").read_text())
    np.testing.assert_allclose(np.array(exported["attention"]), att, rtol=0, atol=0)
    assert exported["view"]["heads"] == [{"layer": 0, "head": 2}]

    assert b.problems() == []


def test_page_with_hundreds_of_tokens_in_headless_chromium(browser, tmp_path):
    b = browser
    ckpt = make_checkpoint(tmp_path / "long.safetensors", n_layer=1, n_head=2, block_size=320)
    sentence = ("Now is the winter of our discontent made glorious summer by this sun of York;\n" * 4)[:300]
    assert run(sentence, "--ckpt", ckpt, "--impl", "numpy", "--out", tmp_path) == 0
    b.open(tmp_path / "attention.html")
    assert b.js("document.querySelectorAll('#grid .thumb').length") == 2
    for view in ("heatmap", "lines"):
        b.click(f"input[name=view][value={view}]")
        # the view is larger than its box, which scrolls
        assert b.js("(s => s.scrollHeight > s.clientHeight)(document.getElementById('main-scroll'))"), view
    assert b.problems() == []


# ---- legible at full context (issue 15) ----


def test_grid_png_labels_every_token_of_a_64_token_context():
    # from 61 tokens the grid labelled every other character: every sentence cut to a 64-token context
    from viz.attention import _tick_fontsize, grid_cell_inches

    for T in range(2, 65):
        assert _tick_fontsize(grid_cell_inches(T), T)[1] == 1, T


def box(b, expression):
    return b.js(
        f"(r => ({{left: r.left, right: r.right, top: r.top, bottom: r.bottom}}))({expression}.getBoundingClientRect())"
    )


def overlap(a, c):
    return (
        a["left"] < c["right"]
        and c["left"] < a["right"]
        and a["top"] < c["bottom"]
        and c["top"] < a["bottom"]
    )


@pytest.fixture(scope="module")
def wide_page(tmp_path_factory):
    """2 layers x 6 heads, a 57-character sentence (the context holds 64): the page, opened per test."""
    folder = tmp_path_factory.mktemp("wide")
    ckpt = make_checkpoint(folder / "wide.safetensors", n_layer=2, n_head=6, block_size=64)
    assert len(WIDE) == 57 and run(WIDE, "--ckpt", ckpt, "--impl", "numpy", "--out", folder) == 0
    return folder / "attention.html"


WIDE = "To be, or not to be, that is the question: whether 'tis n"


def centre(b, expression):
    return b.js(f"(r => [r.x + r.width / 2, r.y + r.height / 2])({expression}.getBoundingClientRect())")


def test_spaces_are_visible_in_the_strip(browser, wide_page):
    b = browser
    b.open(wide_page)
    spaces = b.js(
        "[...document.querySelectorAll('#strip span.token')].filter(s => s.classList.contains('ws'))"
        ".map(s => [s.textContent, s.getBoundingClientRect().width])"
    )
    assert len(spaces) == WIDE.count(" ") and all(t == "\u2423" and w > 0 for t, w in spaces)
    assert b.problems() == []


def test_the_tooltip_does_not_cover_the_strip(browser, wide_page):
    # a window whose bottom edge is the strip's: no room below, and the tooltip was pushed up over the
    # strip whose colouring it explains
    b = browser
    b.open(wide_page)
    bottom = b.js("Math.ceil(document.getElementById('strip').getBoundingClientRect().bottom) + 2")
    b.send("Emulation.setDeviceMetricsOverride", width=1400, height=bottom, deviceScaleFactor=1, mobile=False)
    try:
        b.mouse("mouseMoved", *centre(b, "document.querySelectorAll('#strip span.token')[9]"))
        assert not b.js("document.getElementById('tooltip').hidden")
        assert not overlap(
            box(b, "document.getElementById('strip')"), box(b, "document.getElementById('tooltip')")
        )
    finally:
        b.send("Emulation.clearDeviceMetricsOverride")


def test_a_head_is_previewed_while_another_is_locked(browser, wide_page):
    b = browser
    b.open(wide_page)
    b.click('.thumb[data-layer="0"][data-head="1"] canvas')
    b.mouse(
        "mouseMoved", *centre(b, 'document.querySelector(\'.thumb[data-layer="1"][data-head="4"] canvas\')')
    )
    assert shown(b) == "L1H4" and b.js("document.getElementById('view-title').textContent").endswith(
        "(preview)"
    )
    b.mouse("mouseMoved", 5, 5)
    assert shown(b) == "L0H1"  # the lock comes back as the mouse leaves


def lines_of_every_head(b, page):
    """The page opened on the lines view of every head, the mouse away from it."""
    b.open(page)
    b.click("input[name=view][value=lines]")
    b.click("#select-all")
    b.mouse("mouseMoved", 5, 5)
    return b


def test_lines_view_of_twelve_heads(browser, wide_page):
    # head colours repeated after 8, the legend was clipped to the canvas, the title said "max of"
    b = lines_of_every_head(browser, wide_page)
    legend, width = b.js("layout.legend"), b.js("layout.width")
    assert legend is not None and len(legend) == 12 and len({e["colour"] for e in legend}) == 12
    assert all(e["x"] >= 0 and e["x"] + e["w"] <= width for e in legend)
    title = b.js("document.getElementById('view-title').textContent")
    assert "each head in its colour" in title and "max of" not in title and "mean of" not in title
    assert b.problems() == []


def test_the_keyboard_moves_the_pinned_token(browser, wide_page):
    b = browser
    b.open(wide_page)
    for key in ("ArrowRight", "ArrowRight", "ArrowRight", "ArrowLeft"):
        b.send("Input.dispatchKeyEvent", type="keyDown", key=key, code=key)
    assert b.js("state.pinnedToken") == 1


def test_tiny_weights_are_in_scientific_notation(browser, wide_page):
    b = browser
    b.open(wide_page)
    assert b.js("fmt(0.00000280465123)") == "2.80465e-6" and b.js("fmt(0.25)") == "0.250000"


def test_a_cut_sentence_s_strip_starts_with_an_ellipsis(browser, tmp_path):
    b = browser
    ckpt = make_checkpoint(tmp_path / "cut.safetensors", n_layer=1, n_head=2, block_size=64)
    sentence = ("Now is the winter of our discontent made glorious summer by this sun of York; " * 2)[:136]
    assert run(sentence, "--ckpt", ckpt, "--impl", "numpy", "--out", tmp_path) == 0
    b.open(tmp_path / "attention.html")
    first = b.js(
        "(e => [e.tagName, e.textContent, e.title])(document.getElementById('strip').firstElementChild)"
    )
    assert first == ["I", "\u2026", "72 earlier tokens dropped to fit the model's context"]
    assert b.js("document.querySelectorAll('#strip span.token').length") == 64
    assert b.problems() == []


def test_query_labels_stay_in_their_rows(browser, wide_page):
    # the marks for a space and a newline sat low and ran into the next row's label
    b = browser
    b.open(wide_page)
    boxes, top, cell = b.js("layout.queryLabels"), b.js("layout.top"), b.js("layout.cell")
    assert boxes is not None and len(boxes) == len(WIDE)
    for t, label_box in enumerate(boxes):
        centre_y = (label_box["top"] + label_box["bottom"]) / 2
        assert abs(centre_y - (top + (t + 0.5) * cell)) <= 0.5, (t, WIDE[t])
        if t + 1 < len(boxes):
            assert label_box["bottom"] <= boxes[t + 1]["top"] + 0.5, (t, WIDE[t], WIDE[t + 1])


@pytest.mark.parametrize("width", [900, 1280])
def test_a_full_context_has_readable_labels_at_the_default_zoom(browser, wide_page, width):
    # at 57-64 tokens the default zoom gave 8-10 px labels at 1280-1400 px, and none at 900 px
    b = browser
    b.send("Emulation.setDeviceMetricsOverride", width=width, height=1000, deviceScaleFactor=1, mobile=False)
    try:
        b.open(wide_page)
        assert b.js("layout.cell") >= 12 and len(b.js("layout.queryLabels")) == len(WIDE)
    finally:
        b.send("Emulation.clearDeviceMetricsOverride")


def test_the_exported_png_is_sharp_and_names_the_model_and_sentence(browser, wide_page):
    b = browser
    b.open(wide_page)
    css_width = b.js("parseFloat(document.getElementById('main-canvas').style.width)")
    caption = b.js("exportCaption()")
    assert caption[0] == b.js("DATA.title") and WIDE[:40] in caption[1]
    for old in b.downloads.glob("attention-heatmap-*.png"):
        old.unlink()
    b.click("#export-png")
    png = wait_for_file(b.downloads, "attention-heatmap-layer1-head0.png").read_bytes()
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert width == 3 * round(css_width) and height > 3 * b.js(
        "parseFloat(document.getElementById('main-canvas').style.height)"
    )
    assert b.js("document.getElementById('main-canvas').width") < width  # the screen's view is back
    assert b.problems() == []


def test_the_page_in_a_notebook_cell(browser, ckpt, tmp_path):
    # a notebook shows an object's _repr_html_: the whole page, in an iframe of its own, working
    from viz.attention import AttentionPage, attention_page

    page = attention_page(impl_numpy.load(ckpt), TOKENIZER, SENTENCE, layer=0, head=2)
    assert isinstance(page, AttentionPage) and page._repr_html_().startswith("<iframe srcdoc=")
    host = tmp_path / "notebook.html"
    host.write_text(f"<!doctype html><html><body><p>a notebook cell</p>{page._repr_html_()}</body></html>")
    b = browser
    b.open(host)
    inner = "document.querySelector('iframe').contentDocument"
    deadline = time.monotonic() + 20
    while b.js(f"{inner}.querySelectorAll('#grid .thumb').length") != 2 * 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert b.js(f"{inner}.querySelectorAll('#grid .thumb').length") == 2 * 3
    assert b.js(f"{inner}.getElementById('main-canvas').dataset.heads") == "L0H2"
    assert b.problems() == []


def test_a_zoomed_heatmap_keeps_its_labels_in_sight(browser, wide_page):
    # zoomed in, the labels, title and colour bar scrolled away with the canvas
    b = browser
    b.open(wide_page)
    choose(b, "zoom", 40)
    b.js("(s => { s.scrollLeft = 900; s.scrollTop = 700; })(document.getElementById('main-scroll'))")
    time.sleep(0.3)  # the redraw waits for an animation frame
    sx, sy = b.js(
        "[document.getElementById('main-scroll').scrollLeft, document.getElementById('main-scroll').scrollTop]"
    )
    w, h = b.js(
        "[document.getElementById('main-scroll').clientWidth, document.getElementById('main-scroll').clientHeight]"
    )
    assert sx > 0 and sy > 0 and b.js("[layout.sx, layout.sy]") == [sx, sy]
    labels = b.js("layout.queryLabels")
    assert labels and sx < labels[0]["x"] < sx + w  # the query labels' column is in sight
    assert sy < b.js("layout.keyLabelsY") < sy + h  # and so is the key labels' row
    # the band is white where the title sits, and holds ink (the title's text)
    band = b.js(
        f"(c => {{ const k = c.width / parseFloat(c.style.width);"
        f" const d = c.getContext('2d').getImageData(Math.round(({sx} + 10) * k), Math.round(({sy} + 2) * k),"
        f" Math.round(200 * k), Math.round(20 * k)).data; let dark = 0;"
        f" for (let p = 0; p < d.length; p += 4) if (d[p] < 100) dark++; return dark; }})"
        f"(document.getElementById('main-canvas'))"
    )
    assert band > 20
    assert b.problems() == []


def choose(b, control, value):
    """Sets a control of the page as a user would, and lets the page hear it."""
    b.js(
        f"(s => {{ s.value = {json.dumps(value)}; s.dispatchEvent(new Event('input')); }})(document.getElementById('{control}'))"
    )


def shown_weights(b, heads, T):
    """The page's weight(key, i, j) for every head, query and key: (heads, T, T)."""
    return np.array(
        b.js(
            f"[...Array({heads}).keys()].map(k => [...Array({T}).keys()].map(i => [...Array({T}).keys()].map(j => weight(k, i, j))))"
        )
    )


def test_leaving_out_the_first_token_renormalises_every_row(browser, wide_page):
    b = browser
    b.open(wide_page)
    att = attention_weights(impl_numpy.load(wide_page.parent / "wide.safetensors"), TOKENIZER, WIDE).att
    choose(b, "ignore", "first")
    L, NH, T, _ = att.shape
    shown = shown_weights(b, L * NH, T)
    expected = att.reshape(L * NH, T, T).astype(np.float64)
    expected[:, :, 0] = 0
    kept = expected.sum(-1, keepdims=True)
    expected = np.divide(expected, kept, out=np.zeros_like(expected), where=kept > 0)
    np.testing.assert_allclose(shown, expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(shown[:, 1:].sum(-1), 1.0, rtol=1e-5)  # every row but the first sums to 1
    assert b.js("rawWeight(0, 5, 0)") == pytest.approx(float(att[0, 0, 5, 0]), rel=1e-6)  # exports stay raw
    assert b.problems() == []


def test_thumbnails_carry_their_line_colour(browser, wide_page):
    # in the lines view nothing matched a line to its head's thumbnail
    b = lines_of_every_head(browser, wide_page)
    swatches = b.js(
        "[...document.querySelectorAll('#grid .thumb')].map(t => (s => s && s.style.visibility === 'visible'"
        " ? getComputedStyle(s).backgroundColor : null)(t.querySelector('.swatch')))"
    )
    legend = b.js(
        "layout.legend.map(e => (c => { c.fillStyle = e.colour; return c.fillStyle; })(document.createElement('canvas').getContext('2d')))"
    )
    as_hex = b.js(
        "(cs => cs.map(c => { const x = document.createElement('canvas').getContext('2d'); x.fillStyle = c; return x.fillStyle; }))"
        f"({json.dumps(swatches)})"
    )
    assert None not in swatches and as_hex == legend


def test_arrow_keys_lock_the_next_and_previous_head(browser, wide_page):
    b = browser
    b.open(wide_page)
    assert shown(b) == "L1H0"
    for key in ("ArrowDown", "ArrowDown", "ArrowUp"):
        b.send("Input.dispatchKeyEvent", type="keyDown", key=key, code=key)
    assert shown(b) == "L1H1" and b.js("document.querySelector('.thumb.locked').dataset.head") == "1"


# ---- what bertviz and CircuitsVis do not show (issue 15), each against the model's own numbers ----


@pytest.fixture(scope="module")
def wide_numbers(wide_page):
    model = impl_numpy.load(wide_page.parent / "wide.safetensors")
    acts = model.activations(TOKENIZER.encode(WIDE)[None, :])
    L, C = model.config.n_layer, model.config.n_embd
    qkv = np.stack([acts[f"h.{i}.attn.qkv"][0] for i in range(L)]).astype(np.float64)  # (L, T, 3C)
    att = np.stack([acts[f"h.{i}.attn.att"][0] for i in range(L)]).astype(np.float64)  # (L, NH, T, T)
    return qkv, att, C


def test_why_this_weight_recomputes_it_from_q_and_k(browser, wide_page, wide_numbers):
    b = browser
    b.open(wide_page)
    qkv, att, C = wide_numbers
    NH = att.shape[1]
    HS = C // NH
    for layer, head, i, j in [(0, 1, 10, 4), (1, 5, 56, 0), (1, 0, 5, 5), (0, 3, 30, 29)]:
        w = b.js(f"why(headKey({layer}, {head}), {i}, {j})")
        q = qkv[layer, i, head * HS : (head + 1) * HS]
        k = qkv[layer, j, C + head * HS : C + (head + 1) * HS]
        np.testing.assert_allclose(w["q"], q, rtol=1e-6)
        np.testing.assert_allclose(w["k"], k, rtol=1e-6)
        np.testing.assert_allclose(w["product"], q * k, rtol=1e-5)
        assert w["score"] == pytest.approx(q @ k / np.sqrt(HS), rel=1e-5)
        assert w["weight"] == pytest.approx(att[layer, head, i, j], rel=1e-5, abs=1e-7)
    # a click on a cell of one head's heatmap shows the breakdown
    b.js("document.getElementById('main-scroll').scrollIntoView({block: 'start'})")
    x, y = b.js(
        "(() => { const r = document.getElementById('main-canvas').getBoundingClientRect();"
        " return [r.x + layout.left + 4.5 * layout.cell, r.y + layout.top + 10.5 * layout.cell]; })()"
    )
    b.mouse("mouseMoved", x, y)
    b.mouse("mousePressed", x, y)
    b.mouse("mouseReleased", x, y)
    text = b.js("document.getElementById('why').textContent")
    assert (
        text.startswith("layer 1, head 0: query #10")
        and "\u2190 this entry" in text
        and "the model's" in text
    )
    assert b.problems() == []


def test_value_weighted_attention(browser, wide_page, wide_numbers):
    b = browser
    b.open(wide_page)
    qkv, att, C = wide_numbers
    L, NH, T, _ = att.shape
    HS = C // NH
    choose(b, "measure", "value")
    got = shown_weights(b, L * NH, T)
    v = qkv[:, :, 2 * C :].reshape(L, T, NH, HS)
    norms = np.linalg.norm(v, axis=-1).transpose(0, 2, 1)  # (L, NH, T)
    expected = att * norms[:, :, None, :]
    expected /= expected.sum(-1, keepdims=True)
    np.testing.assert_allclose(got, expected.reshape(L * NH, T, T), rtol=1e-5, atol=1e-7)


def test_attention_rollout(browser, wide_page, wide_numbers):
    b = browser
    b.open(wide_page)
    _, att, _ = wide_numbers
    L, _, T, _ = att.shape
    b.click("#rollout")
    got = np.array(b.js("Array.from(combined(shownHeads()))")).reshape(T, T)
    r = None
    for layer in range(L):  # the default head is in the last layer: the rollout through every layer
        a = 0.5 * att[layer].mean(0) + 0.5 * np.eye(T)
        r = a if r is None else a @ r
    np.testing.assert_allclose(got, r, rtol=1e-5, atol=1e-7)
    assert b.js("document.getElementById('view-title').textContent").startswith(
        "attention rollout through layer 1"
    )
    assert b.problems() == []


def test_two_checkpoints_side_by_side_and_their_difference(browser, tmp_path):
    b = browser
    first = make_checkpoint(tmp_path / "first.safetensors", n_layer=2, n_head=3, seed=0)
    second = make_checkpoint(tmp_path / "second.safetensors", n_layer=2, n_head=3, seed=1)
    assert run(SENTENCE, "--ckpt", first, "--compare", second, "--impl", "numpy", "--out", tmp_path) == 0
    att_a = attention_weights(impl_numpy.load(first), TOKENIZER, SENTENCE).att.astype(np.float64)
    att_b = attention_weights(impl_numpy.load(second), TOKENIZER, SENTENCE).att.astype(np.float64)
    L, NH, T, _ = att_a.shape
    b.open(tmp_path / "attention.html")
    assert not b.js("document.getElementById('compare-control').hidden")
    np.testing.assert_allclose(shown_weights(b, L * NH, T), att_a.reshape(-1, T, T), rtol=1e-6, atol=0)
    choose(b, "compare", "b")
    np.testing.assert_allclose(shown_weights(b, L * NH, T), att_b.reshape(-1, T, T), rtol=1e-6, atol=0)
    choose(b, "compare", "diff")
    np.testing.assert_allclose(shown_weights(b, L * NH, T), (att_b - att_a).reshape(-1, T, T), atol=1e-7)
    assert b.js("document.getElementById('view-title').textContent").endswith(
        f"{tmp_path.name}/second.safetensors, numpy tier \u2212 {tmp_path.name}/first.safetensors, numpy tier"
    )
    # the long title is drawn within the canvas (it ran off its edge)
    assert b.js("layout.titleWidth <= parseFloat(document.getElementById('main-canvas').style.width) - 20")
    # no difference is the diverging palette's middle; a positive one is its other end from a negative one
    mid, up, down = b.js("[rgbOf(0), rgbOf(0.9), rgbOf(-0.9)]")
    assert mid == b.js("DIVERGING[128]") and up != down
    assert b.problems() == []


def test_compare_refuses_a_model_of_another_shape(ckpt, tmp_path, capsys):
    other = make_checkpoint(tmp_path / "other.safetensors", n_layer=1, n_head=3)
    assert run(SENTENCE, "--ckpt", ckpt, "--compare", other, "--impl", "numpy", "--out", tmp_path / "o") == 2
    err = capsys.readouterr().err
    assert (
        err.count("\n") == 1 and "--compare: the second model has 1 layers x 3 heads, the first 2 x 3" in err
    )


def test_a_large_page_stores_its_weights_in_8_bits(browser, ckpt, tmp_path, monkeypatch):
    # a 1024-token GPT-2 page would be ~400 MB of float32 triangles; past FLOAT32_ENTRIES, one byte each
    import viz.attention

    monkeypatch.setattr(viz.attention, "FLOAT32_ENTRIES", 100)
    model = impl_numpy.load(ckpt)
    write_attention(model, TOKENIZER, SENTENCE, tmp_path, log=lambda *_: None)
    data = script_data((tmp_path / "attention.html").read_text())
    att = attention_weights(model, TOKENIZER, SENTENCE).att.astype(np.float64)
    L, NH, T, _ = att.shape
    assert (
        data["encoding"] == "sqrt-uint8"
        and len(base64.b64decode(data["attention"])) == L * NH * T * (T + 1) // 2
    )
    b = browser
    b.open(tmp_path / "attention.html")
    assert "8 bits" in b.js("document.getElementById('meta').textContent")
    got = shown_weights(b, L * NH, T).reshape(L, NH, T, T)
    # q = round(255 sqrt(w)): sqrt(w) to within half a step
    np.testing.assert_array_less(np.abs(np.sqrt(got) - np.sqrt(att)), 0.5 / 255 + 1e-6)
    assert b.problems() == []


def test_subword_tokens_show_their_spaces(tmp_path):
    # GPT-2's byte-level BPE: a token's leading space (the vocabulary's "Ġ") is a visible mark on the page
    from shared.bpe import BPETokenizer

    text = "the cat sat on the mat; the dog sat on the log. " * 20
    tokenizer = BPETokenizer.train(text, 300)
    config = GPTConfig(1, 2, 12, 32, tokenizer.vocab_size)
    model = impl_numpy.from_state_dict(config, init_state_dict(config, 0))
    write_attention(model, tokenizer, "the cat sat on the mat", tmp_path, log=lambda *_: None)
    data = script_data((tmp_path / "attention.html").read_text())
    assert sum(t.startswith(" ") for t in data["tokens"]) >= 3  # " cat", " sat", ...
    assert all(
        label.startswith("\u2423") for t, label in zip(data["tokens"], data["labels"]) if t.startswith(" ")
    )
    assert "\u0120" not in "".join(data["labels"])
