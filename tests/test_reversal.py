# experiments/reversal.py: the sequences are "a1 .. an | an .. a1", the per-position loss averages to the
# model's own loss, the run writes a PNG, and a short training learns the second half but not the first.
import math

import matplotlib.image
import numpy as np
import pytest

import impl_c
import impl_numpy
from experiments.reversal import (
    ReversalSettings,
    halves,
    inputs_targets,
    per_position,
    reversal_sequences,
    run_reversal,
    target_names,
)
from shared.errors import ConfigError
from shared.params import init_state_dict

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TINY = {"n": 4, "alphabet": 5, "n_layer": 1, "n_head": 2, "n_embd": 32, "batch_size": 32, "val_size": 200}


def test_sequences_are_reversed_around_the_separator():
    n, alphabet = 6, 10
    seqs = reversal_sequences(np.random.default_rng(0), 500, n, alphabet)
    assert seqs.shape == (500, 2 * n + 1) and seqs.dtype == np.int64
    assert (seqs[:, n] == alphabet).all()  # the separator, and only there
    assert ((seqs[:, :n] >= 0) & (seqs[:, :n] < alphabet)).all()
    assert (seqs[:, n + 1 :] == seqs[:, n - 1 :: -1]).all()  # a_n .. a_1
    assert set(np.unique(seqs[:, :n])) == set(range(alphabet))
    assert len({tuple(r) for r in seqs[:, :n]}) > 490  # random, not one sequence repeated
    x, y = inputs_targets(seqs)
    assert (x == seqs[:, :-1]).all() and (y == seqs[:, 1:]).all() and x.shape == (500, 2 * n)
    # what target_names and halves say position t is asked for is what y holds
    names = target_names(n)
    first, sep, second = halves(n)
    assert len(names) == 2 * n and names[sep] == "|" and (y[:, sep] == alphabet).all()
    for t in range(2 * n):
        if t != sep:
            assert (y[:, t] == seqs[:, int(names[t][1:]) - 1]).all(), names[t]
    assert list(range(2 * n))[first] == list(range(n - 1)) and list(range(2 * n))[second] == list(
        range(n, 2 * n)
    )


def test_per_position_loss_averages_to_the_model_loss():
    s = ReversalSettings(**TINY)
    config = s.config()
    model = impl_numpy.from_state_dict(config, init_state_dict(config, 0), dtype=np.float64)
    x, y = inputs_targets(reversal_sequences(np.random.default_rng(1), 64, s.n, s.alphabet))
    loss, acc = per_position(model, x, y)
    assert loss.shape == acc.shape == (2 * s.n,)
    assert loss.mean() == pytest.approx(model.forward(x, y)[1], rel=1e-10)
    logits, _ = model.forward(x, y)
    assert acc == pytest.approx((logits.argmax(-1) == y).mean(0))


def test_settings_out_of_range():
    with pytest.raises(ConfigError):
        ReversalSettings(n=1)
    assert ReversalSettings().config().block_size == 2 * ReversalSettings().n


def test_run_writes_a_png_and_per_position_numbers(tmp_path):
    s = ReversalSettings(**TINY, steps=4, eval_interval=2)
    lines = []
    result = run_reversal(impl_numpy, tmp_path, s, log=lines.append, progress=False)
    path = result["paths"]["figure"]
    assert path == tmp_path / "questions-reversal.png"
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 400
    assert len(result["per_position_loss"]) == len(result["per_position_acc"]) == 2 * s.n
    assert result["history"]["step"] == [0, 2, 4]
    assert all(len(row) == 2 * s.n for row in result["history"]["per_position_loss"])
    assert all(0.0 <= a <= 1.0 for a in result["per_position_acc"])
    assert result["settings"]["n"] == s.n and result["wall_s"] > 0
    # the table: a header and one line per position
    header = next(i for i, line in enumerate(lines) if line.split()[:3] == ["t", "input", "target"])
    assert [line.split()[0] for line in lines[header + 1 : header + 1 + 2 * s.n]] == [
        str(t) for t in range(2 * s.n)
    ]


def test_short_training_learns_the_second_half_only(tmp_path):
    # about 3 s on the C tier
    s = ReversalSettings(**TINY, steps=300, lr=3e-3, warmup_steps=10, eval_interval=50)
    result = run_reversal(impl_c, tmp_path, s, log=lambda line: None, progress=False)
    loss, acc = np.array(result["per_position_loss"]), np.array(result["per_position_acc"])
    first, sep, second = halves(s.n)
    assert loss[second].mean() < 0.2 and acc[second].mean() > 0.95
    assert loss[first].mean() == pytest.approx(math.log(s.alphabet), abs=0.1)  # log 5 = 1.61
    assert loss[sep] < 0.1
    assert result["history"]["second_loss"][0] > 1.0  # it was learned, not there from the start
