# experiments/rnn.py: the LSTM written on the numpy engine computes the LSTM's equations (against a plain
# numpy loop) and their gradient (against finite differences, float64); its size is matched to the GPT's;
# the memory task's targets are the tokens d back; the gradient probe and the graph depth measure what
# they say; and the command writes its figure and numbers.
import json

import matplotlib.image
import numpy as np
import pytest

import impl_numpy
import transformer
from experiments.rnn import (
    RNNSettings,
    embedding_grad,
    gpt_embed,
    gpt_from_embedding,
    gpt_graph,
    graph_depth,
    loss_and_accuracy,
    lstm,
    lstm_forward,
    lstm_grads,
    lstm_head,
    lstm_hidden_for,
    lstm_init,
    lstm_loss,
    lstm_num_params,
    lstm_param_shapes,
    shift_task,
)
from impl_numpy.engine import Tensor
from shared.config import GPTConfig, get_config
from shared.params import init_state_dict, num_params

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
V, H = 5, 4


def tiny_lstm(seed=0) -> dict:
    # float64, and weights larger than the init so that every gate is far from its linear regime
    return {n: 2.0 * p.astype(np.float64) for n, p in lstm_init(V, H, seed, dtype=np.float64).items()}


def tensors(params):
    return {n: Tensor(p) for n, p in params.items()}


def reference_lstm(params, idx):
    """The LSTM's equations with the textbook sigmoid, one position at a time in plain numpy."""

    def sig(z):
        return 1.0 / (1.0 + np.exp(-z))

    x = params["wte.weight"][idx]
    B, T, _ = x.shape
    h, c, out = np.zeros((B, H)), np.zeros((B, H)), []
    for t in range(T):
        z = x[:, t] @ params["lstm.weight_ih"] + h @ params["lstm.weight_hh"] + params["lstm.bias"]
        i, f, o, g = sig(z[:, :H]), sig(z[:, H : 2 * H]), sig(z[:, 2 * H : 3 * H]), np.tanh(z[:, 3 * H :])
        c = f * c + i * g
        h = o * np.tanh(c)
        out.append(h @ params["lm_head.weight"] + params["lm_head.bias"])
    return np.stack(out, axis=1)


def test_lstm_computes_the_lstm_equations():
    params = tiny_lstm()
    idx = np.random.default_rng(1).integers(0, V, size=(3, 7))
    logits = lstm_forward(tensors(params), idx).data
    assert logits.shape == (3, 7, V)
    np.testing.assert_allclose(logits, reference_lstm(params, idx), rtol=1e-12, atol=1e-12)


def test_lstm_gradient_matches_finite_differences():
    params = tiny_lstm()
    rng = np.random.default_rng(2)
    idx = rng.integers(0, V, size=(2, 6))
    targets = rng.integers(0, V, size=(2, 6))
    targets[0, :2] = -1  # ignored positions, as in the memory task
    _, grads = lstm_grads(params, idx, targets)
    eps = 1e-6
    for name, p in params.items():
        numeric = np.zeros_like(p)
        for i in np.ndindex(p.shape):
            saved = p[i]
            p[i] = saved + eps
            up = lstm_loss(params, idx, targets)
            p[i] = saved - eps
            down = lstm_loss(params, idx, targets)
            p[i] = saved
            numeric[i] = (up - down) / (2 * eps)
        assert np.abs(numeric).max() > 1e-4, name  # every parameter reaches the loss
        np.testing.assert_allclose(grads[name], numeric, rtol=1e-6, atol=1e-9, err_msg=name)


def test_lstm_size_and_init():
    shapes = lstm_param_shapes(V, H)
    assert (
        lstm_num_params(V, H) == 8 * H * H + (2 * V + 4) * H + V == sum(np.prod(s) for s in shapes.values())
    )
    for config in (get_config("shakespeare"), RNNSettings().memory_config()):
        n = num_params(config)
        h = lstm_hidden_for(n, config.vocab_size)
        assert abs(lstm_num_params(config.vocab_size, h) / n - 1) < 0.02
        # the nearest: one unit more or less is further from the GPT's count
        for other in (h - 1, h + 1):
            assert abs(lstm_num_params(config.vocab_size, other) - n) >= abs(
                lstm_num_params(config.vocab_size, h) - n
            )
    params = lstm_init(V, H, seed=3)
    assert {n: p.shape for n, p in params.items()} == shapes
    bias = params["lstm.bias"]
    assert (bias[H : 2 * H] == 1.0).all() and (np.abs(bias[:H]) < 1 / np.sqrt(H)).all()  # forget gate at 1
    assert all((lstm_init(V, H, seed=3)[n] == p).all() for n, p in params.items())  # seeded


def test_shift_task_targets_are_the_tokens_d_back():
    for d in (1, 5, 15):
        x, y = shift_task(np.random.default_rng(d), 50, 16, 8, d)
        assert x.shape == y.shape == (50, 16) and ((x >= 0) & (x < 8)).all()
        assert (y[:, :d] == -1).all()
        for t in range(d, 16):
            assert (y[:, t] == x[:, t - d]).all()
    x, y = shift_task(np.random.default_rng(0), 2000, 16, 8, 3)
    assert len({tuple(r) for r in x}) == 2000  # fresh random sequences, not one repeated
    # a model that outputs the token d back scores 100% and loss 0; one that outputs the current token 1/8
    copy = np.where(y[..., None] == np.arange(8), 50.0, 0.0)
    here = np.where(x[..., None] == np.arange(8), 50.0, 0.0)
    assert loss_and_accuracy(copy, y) == pytest.approx((0.0, 1.0), abs=1e-12)
    assert loss_and_accuracy(here, y)[1] == pytest.approx(1 / 8, abs=0.02)


def gpt64(config):
    state = {n: 5 * a.astype(np.float64) for n, a in init_state_dict(config, 4).items()}
    return impl_numpy.from_state_dict(config, state, dtype=np.float64), state


def test_gpt_from_embedding_is_the_tiers_forward():
    config = GPTConfig(n_layer=2, n_head=2, n_embd=16, block_size=12, vocab_size=V)
    model, state = gpt64(config)
    idx = np.random.default_rng(5).integers(0, V, size=(3, 12))
    mine = gpt_from_embedding(state, config)(Tensor(gpt_embed(state, idx))).data
    np.testing.assert_allclose(mine, model.forward(idx)[0], rtol=1e-12, atol=1e-12)


def test_embedding_grad_matches_finite_differences():
    # the loss at the last position alone, summed over the sequences, written here without the engine
    params = tiny_lstm()
    p = tensors(params)

    def forward(x):
        return lstm_head(lstm(x, p), p)

    rng = np.random.default_rng(6)
    idx, targets = rng.integers(0, V, size=(2, 6)), rng.integers(0, V, size=2)
    x = params["wte.weight"][idx]

    def last_loss(x):
        z = forward(Tensor(x)).data[:, -1]  # (B, V)
        z = z - z.max(-1, keepdims=True)
        return float(-(z[np.arange(2), targets] - np.log(np.exp(z).sum(-1))).sum())

    eps, numeric = 1e-6, np.zeros_like(x)
    for i in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[i] += eps
        down[i] -= eps
        numeric[i] = (last_loss(up) - last_loss(down)) / (2 * eps)
    expected = np.sqrt((numeric**2).sum(-1)).mean(0)[::-1]  # k = 0 is the last position
    np.testing.assert_allclose(embedding_grad(x, forward, targets), expected, rtol=1e-6)


def test_graph_depth_counts_the_operations_that_wait_for_each_other():
    x = Tensor(np.ones(3), requires_grad=True)
    assert graph_depth(x) == 0 and graph_depth(((x * 2.0) + 1.0).tanh()) == 3
    assert graph_depth((x * 2.0) + x.tanh()) == 2  # two branches side by side: the longer one counts
    params = {n: Tensor(a, True) for n, a in tiny_lstm().items()}
    config = GPTConfig(n_layer=2, n_head=2, n_embd=16, block_size=16, vocab_size=V)
    state = init_state_dict(config)
    lstm_depth = [graph_depth(lstm_forward(params, np.zeros((1, T), dtype=np.int64))) for T in (4, 8, 16)]
    gpt_depth = [graph_depth(gpt_graph(state, config, np.zeros((1, T), dtype=np.int64))) for T in (4, 8, 16)]
    # the LSTM: a fixed number of operations per position, one position after the other; the GPT: the same
    # depth whatever T, as every position of a block is computed at once
    assert lstm_depth[2] - lstm_depth[1] == 2 * (lstm_depth[1] - lstm_depth[0]) > 0
    assert gpt_depth[0] == gpt_depth[1] == gpt_depth[2]


def test_question_command_writes_its_figure_and_data(tmp_path, capsys):
    argv = ["question", "rnn", "--steps", "1", "--out", str(tmp_path)]
    assert transformer.main(argv) == 0
    path = tmp_path / "questions-rnn.png"
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 600 and image.shape[1] > 1000
    data = json.loads((tmp_path / "questions-rnn.json").read_text())
    for run in data["shakespeare"].values():
        assert run["history"]["step"] == [0, 1] and np.isfinite(run["history"]["val"]).all()
    gpt, rnn = data["shakespeare"]["GPT"], data["shakespeare"]["LSTM"]
    assert abs(rnn["n_params"] / gpt["n_params"] - 1) < 0.02
    assert [r["d"] for r in data["memory"]["rows"]] == list(RNNSettings().distances)
    out = capsys.readouterr().out
    assert str(path) in out and str(tmp_path / "questions-rnn.json") in out


def test_question_refuses_another_tier(tmp_path, capsys):
    assert transformer.main(["question", "rnn", "--impl", "c", "--out", str(tmp_path)]) == 2
    assert "--impl numpy" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
