# `python transformer.py grok`: a few steps on a tiny setting write valid figures and metrics; the split
# covers every pair once; the loss is the answer's alone; the Fourier picture finds a planted frequency.
import json

import matplotlib.image
import numpy as np
import pytest

import impl_numpy
import transformer
from experiments.grok import (
    ANSWER,
    GrokSettings,
    evaluate,
    first_step,
    fourier_norms,
    key_frequencies,
    modular_addition,
)
from shared.errors import ConfigError
from shared.params import init_state_dict

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TINY = ["--p", "7", "--train-frac", "0.5", "--steps", "4", "--eval-interval", "2"]
TINY += ["--n-layer", "1", "--n-head", "2", "--n-embd", "16"]


@pytest.mark.parametrize("impl", ["c", "numpy"])
def test_grok_command_writes_figures_and_metrics(impl, tmp_path, capsys):
    assert transformer.main(["grok", "--impl", impl, *TINY, "--out", str(tmp_path)]) == 0
    for name in ("grok-curves.png", "grok-fourier.png"):
        path = tmp_path / name
        assert path.read_bytes()[:8] == PNG_SIGNATURE
        image = matplotlib.image.imread(path)
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    m = json.loads((tmp_path / "grok-metrics.json").read_text())
    assert m["impl"] == impl and m["settings"]["p"] == 7 and m["steps"] == 4
    assert m["history"]["step"] == [0, 2, 4]
    for key in ("train_acc", "val_acc"):
        assert all(0.0 <= a <= 1.0 for a in m["history"][key])
    assert all(np.isfinite(m["history"]["train_loss"])) and m["history"]["train_loss"][0] > 0
    assert len(m["fourier_norms"]) == 7 // 2 + 1
    assert m["final_val_acc"] == m["history"]["val_acc"][-1]
    assert "validation accuracy first >= 99%" in capsys.readouterr().out


def test_split_is_disjoint_and_covers_every_pair():
    p = 11
    (x_train, y_train), (x_val, y_val) = modular_addition(p, 0.3, seed=0)
    assert len(x_train) == round(0.3 * p * p) and len(x_train) + len(x_val) == p * p
    train_pairs = {tuple(r) for r in x_train[:, :2]}
    val_pairs = {tuple(r) for r in x_val[:, :2]}
    assert not train_pairs & val_pairs
    assert train_pairs | val_pairs == {(a, b) for a in range(p) for b in range(p)}
    for x, y in ((x_train, y_train), (x_val, y_val)):
        assert (x[:, 2] == p).all()  # the "=" token
        assert (y[:, :ANSWER] == -1).all() and (y[:, ANSWER] == (x[:, 0] + x[:, 1]) % p).all()
    # another seed, another split
    assert not np.array_equal(modular_addition(p, 0.3, seed=1)[0][0], x_train)


def test_loss_is_the_answer_alone():
    s = GrokSettings(p=7, n_layer=1, n_head=2, n_embd=16)
    config = s.config()
    model = impl_numpy.from_state_dict(config, init_state_dict(config, 0), dtype=np.float64)
    (x, y), _ = modular_addition(s.p, 0.5, seed=0)
    logits, loss = model.forward(x, y)
    z = logits[:, ANSWER]  # (N, V)
    lse = np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1)) + z.max(-1)
    assert loss == pytest.approx(np.mean(lse - z[np.arange(len(y)), y[:, ANSWER]]), rel=1e-12)
    # the accuracy is the answer's argmax too
    assert evaluate(model, x, y)[1] == pytest.approx(np.mean(z.argmax(-1) == y[:, ANSWER]))


def test_fourier_norms_find_a_planted_frequency():
    p, k = 13, 3
    n = np.arange(p)[:, None]
    wte = np.concatenate([np.cos(2 * np.pi * k * n / p), np.sin(2 * np.pi * k * n / p)], axis=1)
    wte = np.vstack([wte, np.ones((1, 2))])  # the "=" token's row is not a number: left out
    norms = fourier_norms(wte, p)
    assert norms.shape == (p // 2 + 1,) and norms.argmax() == k
    assert key_frequencies(norms) == [k]


def test_first_step_and_bad_settings():
    history = {"step": [0, 10, 20], "acc": [0.5, 0.99, 1.0]}
    assert first_step(history, "acc") == 10 and first_step(history, "acc", 1.1) is None
    with pytest.raises(ConfigError):
        GrokSettings(train_frac=1.0)
    with pytest.raises(ConfigError):
        modular_addition(3, 0.01, seed=0)  # no training pair left
