# Tiny Shakespeare: found on disk or downloaded and verified, tokenized by character, split 90/10,
# and cut into batches by a seeded Generator.
import hashlib
import os
import urllib.request
from pathlib import Path

import numpy as np

from shared.errors import DataError
from shared.tokenizer import CharTokenizer

SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
SHAKESPEARE_FILE = "tinyshakespeare.txt"
ENV_VAR = "TINYSHAKESPEARE"  # a file, or a folder holding tinyshakespeare.txt


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "gpt-tiers"


def shakespeare_path(path=None, download: bool = True) -> Path:
    """Where the corpus is: `path` (a file or a folder, as given on the command line), else the
    TINYSHAKESPEARE environment variable, else the cache folder, else downloaded into the cache.
    Copies found through the variable or the cache, and downloads, must match the SHA-256."""
    if path is not None:
        p = _in_folder(Path(path))
        if not p.is_file():
            raise DataError(
                f"{path}: no such file (expected Tiny Shakespeare or a folder holding {SHAKESPEARE_FILE})"
            )
        return p
    env = os.environ.get(ENV_VAR)
    if env:
        p = _in_folder(Path(env))
        if not p.is_file():
            raise DataError(f"{ENV_VAR}={env}: no such file or folder holding {SHAKESPEARE_FILE}")
        return _verified(p)
    cached = cache_dir() / SHAKESPEARE_FILE
    if cached.is_file():
        return _verified(cached)
    if download:
        try:
            with urllib.request.urlopen(SHAKESPEARE_URL, timeout=30) as r:
                data = r.read()
        except OSError as e:
            raise DataError(
                f"Tiny Shakespeare not found and the download failed ({e}). Give it in one of these ways: "
                f"a path on the command line (--data PATH), the {ENV_VAR} environment variable "
                f"(a file, or a folder holding {SHAKESPEARE_FILE}), or a copy at {cached}; "
                f"it is {SHAKESPEARE_URL}"
            ) from None
        digest = hashlib.sha256(data).hexdigest()
        if digest != SHAKESPEARE_SHA256:
            raise DataError(
                f"downloaded {SHAKESPEARE_URL} has SHA-256 {digest}, expected {SHAKESPEARE_SHA256}"
            )
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(".part")
        tmp.write_bytes(data)
        os.replace(tmp, cached)
        return cached
    raise DataError(f"Tiny Shakespeare not found: pass --data PATH, set {ENV_VAR}, or put it at {cached}")


def _in_folder(p: Path) -> Path:
    return p / SHAKESPEARE_FILE if p.is_dir() else p


def _verified(p: Path) -> Path:
    digest = hashlib.sha256(p.read_bytes()).hexdigest()
    if digest != SHAKESPEARE_SHA256:
        raise DataError(f"{p} has SHA-256 {digest}, expected Tiny Shakespeare's {SHAKESPEARE_SHA256}")
    return p


class CharDataset:
    """A text tokenized by character and split: the first 90% for training, the rest for validation."""

    def __init__(self, text: str, tokenizer: CharTokenizer | None = None, train_fraction: float = 0.9):
        if len(text) < 2:
            raise DataError("the text is too short to train on")
        self.tokenizer = tokenizer or CharTokenizer.from_text(text)
        data = self.tokenizer.encode(text)
        n = int(train_fraction * len(data))
        self.train, self.val = data[:n], data[n:]

    @classmethod
    def from_file(cls, path) -> "CharDataset":
        return cls(Path(path).read_text(encoding="utf-8"))

    def split(self, name: str) -> np.ndarray:
        if name not in ("train", "val"):
            raise DataError(f"split must be 'train' or 'val', got {name!r}")
        return self.train if name == "train" else self.val


def get_batch(data: np.ndarray, batch_size: int, block_size: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """B random windows of block_size tokens, x and the next-token targets y, both (B, T) int64."""
    if len(data) <= block_size:
        raise DataError(f"the split has {len(data)} tokens, too few for block_size {block_size}")
    ix = rng.integers(0, len(data) - block_size, size=batch_size)
    x = np.stack([data[i : i + block_size] for i in ix])
    y = np.stack([data[i + 1 : i + 1 + block_size] for i in ix])
    return x, y


def batch_rng(seed: int, step: int):
    """The Generator for one step's batch: a pure function of (seed, step), so a resumed run draws
    exactly the batches the uninterrupted run would have."""
    return np.random.default_rng([seed, step])


def estimate_loss(model, data: np.ndarray, batch_size: int, iters: int, seed: int) -> float:
    """Mean loss over `iters` batches drawn from a fixed Generator, so every evaluation (every step,
    every tier) sees the same windows."""
    T = model.config.block_size
    losses = []
    for k in range(iters):
        x, y = get_batch(data, batch_size, T, batch_rng(seed, k))
        losses.append(model.forward(x, y)[1])
    return float(np.mean(losses))
