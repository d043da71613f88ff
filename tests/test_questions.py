# `python transformer.py question NAME`: the parameter count's closed form equals what every tier holds,
# the q.k measurement shows the variance the 1/sqrt(d_k) scale removes, and both commands write PNGs.
import importlib

import matplotlib.image
import pytest

import transformer
from experiments.questions import closed_form, measure_scale, tier_count
from shared.config import GPTConfig
from shared.params import num_params

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CONFIGS = [
    GPTConfig(n_layer=1, n_head=1, n_embd=8, block_size=4, vocab_size=3),
    GPTConfig(n_layer=2, n_head=2, n_embd=16, block_size=16, vocab_size=29),
    GPTConfig(n_layer=3, n_head=4, n_embd=48, block_size=32, vocab_size=65),
]


@pytest.mark.parametrize("impl", ["numpy", "c", "tinygrad"])  # loading a tiny model takes < 1 s on each
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"L{c.n_layer}C{c.n_embd}")
def test_closed_form_equals_every_tier(impl, config):
    expected = closed_form(config.vocab_size, config.block_size, config.n_layer, config.n_embd)
    assert num_params(config) == expected
    assert tier_count(importlib.import_module(transformer.TIERS[impl]), config) == expected


def test_closed_form_gives_gpt2_small():
    assert closed_form(50257, 1024, 12, 768) == 124_439_808  # GPT-2 small, without a separate lm_head


def test_scale_removes_the_growth_of_the_variance():
    m = measure_scale(d_ks=(1, 64, 512), pairs=4000, trials=64)
    for d_k, raw, scaled in zip(m["d_k"], m["raw"]["var"], m["scaled"]["var"]):
        assert raw == pytest.approx(d_k, rel=0.1)
        assert scaled == pytest.approx(1.0, rel=0.1)
    # unscaled, the softmax saturates as d_k grows; scaled, it stays as spread as at d_k = 1
    assert m["raw"]["entropy"][-1] < 0.5 and m["scaled"]["entropy"][-1] > 3.0
    assert m["raw"]["max_weight"][-1] > 0.8 and m["scaled"]["max_weight"][-1] < 0.2


@pytest.mark.parametrize("name", ["params", "scale"])
def test_question_command_writes_a_png(name, tmp_path, capsys):
    argv = ["question", name, "--out", str(tmp_path)] + (["--impl", "numpy", "c"] if name == "params" else [])
    assert transformer.main(argv) == 0
    path = tmp_path / f"questions-{name}.png"
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert str(path) in capsys.readouterr().out
