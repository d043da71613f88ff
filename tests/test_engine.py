# Every primitive of the autograd engine against central finite differences in float64, and the
# composed layers of model.py the same way.
import numpy as np
import pytest

from impl_numpy import engine as E
from impl_numpy import model as M
from impl_numpy.engine import Tensor


def numerical_grads(f, arrays, eps=1e-6):
    """d sum(f(arrays) * R) / d arrays by central differences, R fixed random weights."""
    out = f(*[Tensor(a) for a in arrays]).data
    R = np.random.default_rng(123).standard_normal(out.shape)
    grads = []
    for a in arrays:
        g = np.zeros_like(a)
        for i in np.ndindex(a.shape):
            old = a[i]
            a[i] = old + eps
            plus = (f(*[Tensor(x) for x in arrays]).data * R).sum()
            a[i] = old - eps
            minus = (f(*[Tensor(x) for x in arrays]).data * R).sum()
            a[i] = old
            g[i] = (plus - minus) / (2 * eps)
        grads.append(g)
    return R, grads


def check(f, *shapes, positive=False, seed=0):
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(s) for s in shapes]
    if positive:
        arrays = [np.abs(a) + 0.5 for a in arrays]
    R, expected = numerical_grads(f, arrays)
    tensors = [Tensor(a.copy(), requires_grad=True) for a in arrays]
    (f(*tensors) * R).sum().backward()
    for t, g in zip(tensors, expected):
        assert t.grad is not None
        assert t.grad.shape == t.data.shape
        err = np.abs(t.grad - g).max() / max(1.0, np.abs(g).max())
        assert err < 1e-7, err


PRIMITIVES = {
    "add": (lambda a, b: a + b, [(3, 4), (3, 4)]),
    "add-broadcast": (lambda a, b: a + b, [(2, 3, 4), (4,)]),
    "add-broadcast-keepdim": (lambda a, b: a + b, [(2, 3, 4), (2, 3, 1)]),
    "sub": (lambda a, b: a - b, [(2, 3, 4), (3, 1)]),
    "rsub-scalar": (lambda a: 1.5 - a, [(3, 2)]),
    "mul": (lambda a, b: a * b, [(2, 3, 4), (2, 1, 4)]),
    "mul-scalar": (lambda a: a * 0.7, [(5,)]),
    "div": (lambda a, b: a / b, [(3, 4), (3, 1)]),
    "matmul-2d": (lambda a, b: a @ b, [(3, 5), (5, 4)]),
    "matmul-linear": (lambda a, b: a @ b, [(2, 3, 5), (5, 4)]),  # the flattened (B*T, K) path
    "matmul-batched": (lambda a, b: a @ b, [(2, 3, 4, 5), (2, 3, 5, 2)]),
    "matmul-broadcast": (lambda a, b: a @ b, [(2, 4, 5), (1, 5, 3)]),
    "sum-all": (lambda a: a.sum(), [(3, 4)]),
    "sum-axis": (lambda a: a.sum(1), [(2, 3, 4)]),
    "sum-keepdims": (lambda a: a.sum(-1, keepdims=True), [(2, 3, 4)]),
    "mean": (lambda a: a.mean(-1, keepdims=True), [(2, 3, 4)]),
    "exp": (lambda a: a.exp(), [(3, 4)]),
    "tanh": (lambda a: a.tanh(), [(3, 4)]),
    "reshape": (lambda a: a.reshape(4, 6) * np.arange(24.0).reshape(4, 6), [(2, 3, 4)]),
    "transpose": (lambda a: a.transpose(2, 0, 1) * np.arange(24.0).reshape(4, 2, 3), [(2, 3, 4)]),
    "getitem": (lambda a: a[:, 1:3, ::2], [(2, 4, 5)]),
    "concat": (lambda a, b: E.concat([a, b], axis=1), [(2, 3, 2), (2, 1, 2)]),
    "where": (lambda a: E.where(np.tri(4, 5, dtype=bool), a, -3.0), [(2, 4, 5)]),
    "take_rows": (lambda w: E.take_rows(w, np.array([[0, 2, 2], [3, 0, 0]])), [(4, 3)]),
}


@pytest.mark.parametrize("name", list(PRIMITIVES))
def test_primitive_against_finite_differences(name):
    f, shapes = PRIMITIVES[name]
    check(f, *shapes)


@pytest.mark.parametrize("name", ["log", "power-half", "power-neg"])
def test_primitive_on_positive_inputs(name):
    f = {"log": lambda a: a.log(), "power-half": lambda a: a**0.5, "power-neg": lambda a: a**-1.5}[name]
    check(f, (3, 4), positive=True)


COMPOSED = {
    "layernorm": (lambda x, w, b: M.layernorm(x, w, b), [(2, 3, 6), (6,), (6,)]),
    "gelu": (lambda x: M.gelu(x), [(3, 7)]),
    "softmax": (lambda x: M.softmax(x), [(2, 3, 5)]),
    "linear": (lambda x, w, b: M.linear(x, w, b), [(2, 3, 4), (4, 5), (5,)]),
    "cross_entropy": (lambda z: M.cross_entropy(z, np.array([[1, -1, 4], [0, 2, -1]])), [(2, 3, 5)]),
}


@pytest.mark.parametrize("name", list(COMPOSED))
def test_composed_layer_against_finite_differences(name):
    f, shapes = COMPOSED[name]
    check(f, *shapes)


def test_gradients_accumulate_over_reuse():
    # x used three times: d(x*x + x)/dx = 2x + 1, summed correctly
    x = Tensor(np.array([1.0, -2.0, 3.0]), requires_grad=True)
    (x * x + x).sum().backward()
    np.testing.assert_allclose(x.grad, [3.0, -3.0, 7.0])


def test_constants_get_no_gradient_and_build_no_graph():
    a = Tensor(np.ones(3))
    out = a * 2.0 + 1.0
    assert not out.requires_grad and out._parents == ()


def test_float32_stays_float32_with_python_scalars():
    x = Tensor(np.ones((2, 3), dtype=np.float32), requires_grad=True)
    y = M.gelu(M.layernorm(x * 0.5 + 1.0, x[0], x[1]))
    assert y.dtype == np.float32
    (y * 1.0).sum().backward()
    assert x.grad.dtype == np.float32


def test_deep_graph_does_not_hit_the_recursion_limit():
    x = Tensor(np.array(1.0), requires_grad=True)
    y = x
    for _ in range(5000):
        y = y * 1.0
    y.backward()
    assert x.grad == 1.0


def test_known_values():
    # gelu_new at a few points (from the formula with math.tanh), softmax rows sum to 1
    import math

    xs = np.array([-3.0, -0.5, 0.0, 0.5, 2.0])
    expected = [0.5 * v * (1 + math.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v**3))) for v in xs]
    np.testing.assert_allclose(M.gelu(Tensor(xs)).data, expected, rtol=1e-15)
    s = M.softmax(Tensor(np.array([[1000.0, 1000.0, -1000.0]]))).data
    np.testing.assert_allclose(s, [[0.5, 0.5, 0.0]])
