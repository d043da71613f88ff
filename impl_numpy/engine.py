# A tensor-level autograd engine in the spirit of micrograd: a Tensor holds data (a numpy array), its
# grad, its parents and one backward closure. Only the primitives below have closures; the model
# composes everything else (softmax, layernorm, gelu, cross-entropy) from them in model.py.
import ctypes
import sys

import numpy as np


def _keep_freed_memory_in_the_heap():
    # Every op allocates a fresh array, and glibc hands blocks over 128 KiB straight back to the
    # kernel, so the next op's array page-faults in again: on the shakespeare config that doubles the
    # time of the elementwise ops. Raising glibc's thresholds keeps freed blocks for reuse. It
    # changes where memory comes from, never a number computed.
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (musl, ...): leave the allocator as it is
        return
    M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
    libc.mallopt(M_MMAP_THRESHOLD, 32 << 20)  # glibc's maximum
    libc.mallopt(M_TRIM_THRESHOLD, 1 << 30)
    libc.mallopt(M_TOP_PAD, 64 << 20)


_keep_freed_memory_in_the_heap()


class Tensor:
    __slots__ = ("_backward", "_owns_grad", "_parents", "data", "grad", "requires_grad")

    def __init__(self, data, requires_grad=False, _parents=(), _backward=None):
        self.data = data if isinstance(data, np.ndarray) else np.asarray(data)
        self.grad = None
        self._owns_grad = False  # may grad be added into in place (not an array shared with another)
        self.requires_grad = requires_grad
        self._parents = _parents
        self._backward = _backward  # g -> None, adds into the parents' .grad

    shape = property(lambda self: self.data.shape)
    ndim = property(lambda self: self.data.ndim)
    dtype = property(lambda self: self.data.dtype)

    def backward(self):
        """Reverse-mode pass from this (scalar) tensor: a topological order, then each closure once."""
        topo, seen = [], set()

        def visit(t):
            # iterative depth-first search: a 12-layer GPT is deeper than Python's recursion limit
            stack = [(t, False)]
            while stack:
                node, expanded = stack.pop()
                if expanded:
                    topo.append(node)
                elif id(node) not in seen:
                    seen.add(id(node))
                    stack.append((node, True))
                    stack.extend((p, False) for p in node._parents if p.requires_grad)

        visit(self)
        self.grad = np.ones_like(self.data)
        for node in reversed(topo):
            if node._backward is not None and node.grad is not None:
                node._backward(node.grad)
                if node._parents:  # intermediates: free the closure and grad once passed on
                    node._backward, node.grad = None, None

    # operators, so the model reads like the math
    def __add__(self, other):
        return add(self, other)

    def __radd__(self, other):
        return add(other, self)

    def __sub__(self, other):
        return sub(self, other)

    def __rsub__(self, other):
        return sub(other, self)

    def __mul__(self, other):
        return mul(self, other)

    def __rmul__(self, other):
        return mul(other, self)

    def __truediv__(self, other):
        return mul(self, power(other, -1.0)) if isinstance(other, Tensor) else mul(self, 1.0 / other)

    def __neg__(self):
        return mul(self, -1.0)

    def __pow__(self, exponent):
        return power(self, exponent)

    def __matmul__(self, other):
        return matmul(self, other)

    def __getitem__(self, index):
        return getitem(self, index)

    def sum(self, axis=None, keepdims=False):
        return tsum(self, axis, keepdims)

    def mean(self, axis=None, keepdims=False):
        n = self.data.size if axis is None else self.data.shape[axis]
        return tsum(self, axis, keepdims) * (1.0 / n)

    def reshape(self, *shape):
        return reshape(self, shape)

    def transpose(self, *axes):
        return transpose(self, axes)

    def exp(self):
        return exp(self)

    def log(self):
        return log(self)

    def tanh(self):
        return tanh(self)


def as_tensor(x) -> Tensor:
    return x if isinstance(x, Tensor) else Tensor(x)


def _pair(a, b) -> tuple[Tensor, Tensor]:
    """Wraps a Python number in the other operand's dtype: np.asarray(0.5) would be float64 and
    silently turn a float32 model into a float64 one."""
    if isinstance(a, (int, float)):
        a = np.asarray(a, dtype=b.dtype)
    if isinstance(b, (int, float)):
        b = np.asarray(b, dtype=a.dtype)
    return as_tensor(a), as_tensor(b)


def _result(data, parents, backward) -> Tensor:
    # the graph is only built where a gradient is wanted: forward-only calls keep nothing alive
    parents = tuple(p for p in parents if p.requires_grad)
    if not parents:
        return Tensor(data)
    return Tensor(data, True, parents, backward)


def _accumulate(t: Tensor, g: np.ndarray):
    if not t.requires_grad:
        return
    if t.grad is None:
        t.grad, t._owns_grad = g, False  # g may be the very array handed to another parent
    elif t._owns_grad:
        t.grad += g
    else:
        t.grad, t._owns_grad = t.grad + g, True


def unbroadcast(g: np.ndarray, shape: tuple) -> np.ndarray:
    """The one helper for broadcasting: sum g over the axes that broadcasting added or stretched."""
    while g.ndim > len(shape):
        g = g.sum(axis=0)
    for axis, n in enumerate(shape):
        if n == 1 and g.shape[axis] != 1:
            g = g.sum(axis=axis, keepdims=True)
    return g


# ---- primitives: each computes its output and one closure that sends gradients to its parents ----


def add(a, b) -> Tensor:
    a, b = _pair(a, b)

    def backward(g):
        if a.requires_grad:
            _accumulate(a, unbroadcast(g, a.shape))
        if b.requires_grad:
            _accumulate(b, unbroadcast(g, b.shape))

    return _result(a.data + b.data, (a, b), backward)


def sub(a, b) -> Tensor:
    a, b = _pair(a, b)

    def backward(g):
        if a.requires_grad:
            _accumulate(a, unbroadcast(g, a.shape))
        if b.requires_grad:
            _accumulate(b, -unbroadcast(g, b.shape))  # negate after the sum: fewer elements

    return _result(a.data - b.data, (a, b), backward)


def mul(a, b) -> Tensor:
    a, b = _pair(a, b)

    def backward(g):
        if a is b:  # x * x: one product, doubled, instead of two added
            _accumulate(a, (g * a.data) * 2.0)
            return
        if a.requires_grad:
            _accumulate(a, unbroadcast(g * b.data, a.shape))
        if b.requires_grad:
            _accumulate(b, unbroadcast(g * a.data, b.shape))

    return _result(a.data * b.data, (a, b), backward)


def power(a, exponent: float) -> Tensor:
    a = as_tensor(a)
    out = a.data**exponent

    def backward(g):
        _accumulate(a, g * (exponent * a.data ** (exponent - 1)))

    return _result(out, (a,), backward)


def exp(a) -> Tensor:
    a = as_tensor(a)
    out = np.exp(a.data)

    def backward(g):
        _accumulate(a, g * out)

    return _result(out, (a,), backward)


def log(a) -> Tensor:
    a = as_tensor(a)

    def backward(g):
        _accumulate(a, g / a.data)

    return _result(np.log(a.data), (a,), backward)


def tanh(a) -> Tensor:
    a = as_tensor(a)
    out = np.tanh(a.data)

    def backward(g):
        _accumulate(a, g * (1.0 - out * out))

    return _result(out, (a,), backward)


def matmul(a, b) -> Tensor:
    """a (..., M, K) @ b (..., K, N). A 2-D b against a batched a (a linear layer) runs as one
    (B*T, K) @ (K, N) product both ways, so BLAS sees one large matrix, not a stack of small ones."""
    a, b = as_tensor(a), as_tensor(b)
    flat = b.ndim == 2 and a.ndim > 2
    if flat:
        out = (a.data.reshape(-1, a.shape[-1]) @ b.data).reshape(*a.shape[:-1], b.shape[-1])
    else:
        out = a.data @ b.data

    def backward(g):
        if flat:
            g2 = g.reshape(-1, g.shape[-1])
            if a.requires_grad:
                _accumulate(a, (g2 @ b.data.T).reshape(a.shape))
            if b.requires_grad:
                _accumulate(b, a.data.reshape(-1, a.shape[-1]).T @ g2)
            return
        if a.requires_grad:
            _accumulate(a, unbroadcast(g @ np.swapaxes(b.data, -1, -2), a.shape))
        if b.requires_grad:
            _accumulate(b, unbroadcast(np.swapaxes(a.data, -1, -2) @ g, b.shape))

    return _result(out, (a, b), backward)


def tsum(a, axis=None, keepdims=False) -> Tensor:
    a = as_tensor(a)

    def backward(g):
        if axis is not None and not keepdims:
            g = np.expand_dims(g, axis)
        _accumulate(a, np.broadcast_to(g, a.shape))  # a read-only view: grads are never written in place

    return _result(a.data.sum(axis=axis, keepdims=keepdims), (a,), backward)


def reshape(a, shape) -> Tensor:
    a = as_tensor(a)

    def backward(g):
        _accumulate(a, g.reshape(a.shape))

    return _result(a.data.reshape(shape), (a,), backward)


def transpose(a, axes) -> Tensor:
    a = as_tensor(a)
    inverse = np.argsort(axes)

    def backward(g):
        _accumulate(a, g.transpose(inverse))

    return _result(a.data.transpose(axes), (a,), backward)


def getitem(a, index) -> Tensor:
    """Basic slicing only (no repeated elements), so the backward is a plain scatter."""
    a = as_tensor(a)

    def backward(g):
        if a.grad is None:  # the slices of one tensor (q, k, v of qkv) fill one gradient in place
            a.grad, a._owns_grad = np.zeros_like(a.data), True
        elif not a._owns_grad:
            a.grad, a._owns_grad = a.grad.copy(), True
        a.grad[index] += g

    return _result(a.data[index], (a,), backward)


def take_rows(w, idx: np.ndarray) -> Tensor:
    """w[idx]: an embedding lookup. Rows that repeat in idx add their gradients."""
    w = as_tensor(w)

    def backward(g):
        # np.add.at is slow on rows; sort the ids and sum each run of equal ids with reduceat instead
        flat = idx.reshape(-1)
        order = np.argsort(flat, kind="stable")
        rows, starts = np.unique(flat[order], return_index=True)
        gw = np.zeros_like(w.data)
        gw[rows] = np.add.reduceat(g.reshape(-1, w.shape[-1])[order], starts, axis=0)
        _accumulate(w, gw)

    return _result(w.data[idx], (w,), backward)


def where(cond: np.ndarray, a, fill: float) -> Tensor:
    """a where cond holds, else the constant fill (a mask)."""
    a = as_tensor(a)

    def backward(g):
        _accumulate(a, np.where(cond, g, 0.0).astype(a.dtype, copy=False))

    return _result(np.where(cond, a.data, fill).astype(a.dtype, copy=False), (a,), backward)


def concat(tensors, axis: int) -> Tensor:
    tensors = [as_tensor(t) for t in tensors]
    bounds = np.cumsum([t.shape[axis] for t in tensors])[:-1]

    def backward(g):
        for t, gt in zip(tensors, np.split(g, bounds, axis=axis)):
            _accumulate(t, gt)

    return _result(np.concatenate([t.data for t in tensors], axis=axis), tensors, backward)


def constant_max(a: Tensor, axis: int) -> np.ndarray:
    """max over an axis, as a constant (no gradient): the shift that makes softmax and
    log-sum-exp stable, whose value cancels out of both exactly."""
    return a.data.max(axis=axis, keepdims=True)
