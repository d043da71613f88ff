# shared/tokenizer.py and shared/data.py: the character tokenizer, finding (or downloading and
# verifying) Tiny Shakespeare, the 90/10 split, and the seeded batches.
import hashlib
import os
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from shared import data
from shared.data import (
    SHAKESPEARE_FILE,
    SHAKESPEARE_SHA256,
    SHAKESPEARE_URL,
    CharDataset,
    batch_rng,
    get_batch,
    shakespeare_path,
)
from shared.errors import DataError, InputError
from shared.tokenizer import CharTokenizer

CORPUS_CHARS = 1_115_394
CORPUS_VOCAB = 65


@pytest.fixture(scope="module")
def corpus_bytes(corpus_path) -> bytes:
    # corpus_path (conftest.py): where this machine has the corpus, by the loader; it skips where it is nowhere
    return corpus_path.read_bytes()


@pytest.fixture
def clean_env(tmp_path, monkeypatch):
    """No TINYSHAKESPEARE, an empty cache in tmp_path, and a network that fails loudly: a test that
    wants a download says so by patching urlopen itself."""
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))

    def no_network(*args, **kwargs):
        raise OSError("no network in the tests")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    return tmp_path


def put_copy(folder: Path, content: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / SHAKESPEARE_FILE
    p.write_bytes(content)
    return p


def cached_path(tmp_path) -> Path:
    return tmp_path / "xdg" / "gpt-tiers" / SHAKESPEARE_FILE


# ---- the tokenizer ----


def test_tokenizer_round_trip():
    text = "Hello, World!\nTo be, or not to be."
    tok = CharTokenizer.from_text(text)
    ids = tok.encode(text)
    assert ids.dtype == np.int64 and ids.shape == (len(text),)
    assert tok.decode(ids) == text
    assert tok.decode(list(ids)) == text


def test_tokenizer_vocab_sorted():
    tok = CharTokenizer.from_text("banana\nBAND!")
    assert tok.chars == "\n!ABDNabn"
    assert tok.vocab_size == 9
    assert list(tok.chars) == sorted(tok.chars)
    np.testing.assert_array_equal(tok.encode("\n!ab"), [0, 1, 6, 7])


def test_tokenizer_json_round_trip():
    tok = CharTokenizer.from_text('quote " and backslash \\ and é')
    back = CharTokenizer.from_json(tok.to_json())
    assert back.chars == tok.chars
    assert back.stoi == tok.stoi


def test_tokenizer_unknown_char():
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(InputError, match=r"not in the tokenizer's vocabulary: 'z'"):
        tok.encode("abzc")
    with pytest.raises(InputError, match=r"'XZ'"):  # every unknown character, once each
        tok.encode("aZXZ")


def test_tokenizer_duplicate_chars():
    with pytest.raises(InputError, match=r"distinct"):
        CharTokenizer("abca")


@pytest.mark.parametrize("bad", [-1, 3, 100])
def test_tokenizer_decode_out_of_range(bad):
    # -1 must not wrap around to the last character
    tok = CharTokenizer("abc")
    with pytest.raises(InputError, match=rf"token id {bad} outside \[0, 3\)"):
        tok.decode([0, bad])


# ---- finding the corpus ----


def test_explicit_file_and_folder(clean_env, corpus_bytes):
    # a path given on the command line is the user's choice: any text, not verified
    p = put_copy(clean_env / "mine", b"my own text\n")
    assert shakespeare_path(p) == p
    assert shakespeare_path(str(p)) == p
    assert shakespeare_path(p.parent) == p


def test_explicit_path_missing(clean_env):
    with pytest.raises(DataError, match=r"nowhere\.txt: no such file"):
        shakespeare_path(clean_env / "nowhere.txt")
    (clean_env / "empty").mkdir()
    with pytest.raises(DataError, match=rf"empty: no such file .*folder holding {SHAKESPEARE_FILE}"):
        shakespeare_path(clean_env / "empty")


def test_env_file_and_folder(clean_env, corpus_bytes, monkeypatch):
    p = put_copy(clean_env / "env", corpus_bytes)
    monkeypatch.setenv(data.ENV_VAR, str(p))
    assert shakespeare_path() == p
    monkeypatch.setenv(data.ENV_VAR, str(p.parent))
    assert shakespeare_path() == p


def test_cache_dir(clean_env, corpus_bytes):
    p = put_copy(cached_path(clean_env).parent, corpus_bytes)
    assert shakespeare_path() == p


def test_cache_dir_defaults_to_home(clean_env, monkeypatch):
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(clean_env / "home"))
    assert data.cache_dir() == clean_env / "home" / ".cache" / "gpt-tiers"


def test_precedence(clean_env, corpus_bytes, monkeypatch):
    explicit = put_copy(clean_env / "explicit", corpus_bytes)
    env = put_copy(clean_env / "env", corpus_bytes)
    cached = put_copy(cached_path(clean_env).parent, corpus_bytes)
    monkeypatch.setenv(data.ENV_VAR, str(env))
    assert shakespeare_path(explicit) == explicit  # the command line first
    assert shakespeare_path() == env  # then the variable
    monkeypatch.delenv(data.ENV_VAR)
    assert shakespeare_path() == cached  # then the cache
    monkeypatch.setenv(data.ENV_VAR, "")  # an empty variable is no variable
    assert shakespeare_path() == cached


def test_env_missing(clean_env, corpus_bytes, monkeypatch):
    # a variable that points nowhere is an error, even with a good copy in the cache
    put_copy(cached_path(clean_env).parent, corpus_bytes)
    monkeypatch.setenv(data.ENV_VAR, str(clean_env / "gone"))
    with pytest.raises(DataError, match=rf"{data.ENV_VAR}=.*gone: no such file"):
        shakespeare_path()


def test_wrong_file_through_env(clean_env, corpus_bytes, monkeypatch):
    p = put_copy(clean_env / "env", corpus_bytes[:-1])  # one byte short
    monkeypatch.setenv(data.ENV_VAR, str(p))
    with pytest.raises(DataError, match=rf"has SHA-256 [0-9a-f]{{64}}, expected .*{SHAKESPEARE_SHA256}"):
        shakespeare_path()
    monkeypatch.setenv(data.ENV_VAR, str(p.parent))
    with pytest.raises(DataError, match=r"SHA-256"):
        shakespeare_path()


def test_wrong_file_in_cache(clean_env):
    put_copy(cached_path(clean_env).parent, b"not shakespeare\n")
    with pytest.raises(DataError, match=rf"{SHAKESPEARE_FILE} has SHA-256 .*expected"):
        shakespeare_path()


def test_nowhere_and_download_fails(clean_env):
    with pytest.raises(DataError) as e:
        shakespeare_path()
    msg = str(e.value)
    assert "download failed" in msg and "no network in the tests" in msg
    assert "--data" in msg
    assert data.ENV_VAR in msg
    assert str(cached_path(clean_env)) in msg
    assert SHAKESPEARE_URL in msg
    assert not cached_path(clean_env).exists()


def test_nowhere_without_download(clean_env):
    with pytest.raises(DataError) as e:
        shakespeare_path(download=False)
    msg = str(e.value)
    assert "--data" in msg and data.ENV_VAR in msg and str(cached_path(clean_env)) in msg


class FakeResponse:
    def __init__(self, body: bytes):
        self.body = body

    def read(self):
        return self.body

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_download_writes_the_cache(clean_env, corpus_bytes, monkeypatch):
    urls = []

    def fake_urlopen(url, timeout=None):
        urls.append(url)
        return FakeResponse(corpus_bytes)

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    p = shakespeare_path()
    assert urls == [SHAKESPEARE_URL]
    assert p == cached_path(clean_env)
    assert p.read_bytes() == corpus_bytes
    assert os.listdir(p.parent) == [SHAKESPEARE_FILE]  # no partial download left behind
    # the next call finds the cache and downloads nothing
    assert shakespeare_path() == p
    assert urls == [SHAKESPEARE_URL]


def test_download_with_wrong_bytes(clean_env, corpus_bytes, monkeypatch):
    monkeypatch.setattr(
        urllib.request, "urlopen", lambda url, timeout=None: FakeResponse(corpus_bytes[:1000])
    )
    with pytest.raises(DataError, match=rf"downloaded .* has SHA-256 .*expected {SHAKESPEARE_SHA256}"):
        shakespeare_path()
    assert not cached_path(clean_env).exists()


def test_sha256_constant_matches_the_corpus(corpus_bytes):
    assert hashlib.sha256(corpus_bytes).hexdigest() == SHAKESPEARE_SHA256


# ---- the real corpus ----


@pytest.fixture(scope="module")
def corpus_text(corpus_bytes) -> str:
    return corpus_bytes.decode("utf-8")


def test_real_corpus_through_shakespeare_path(clean_env, corpus_path, monkeypatch):
    # the copy this machine has, given through the variable: found, verified, and the corpus
    monkeypatch.setenv(data.ENV_VAR, str(corpus_path))
    p = shakespeare_path()
    assert p == corpus_path
    if p.name == SHAKESPEARE_FILE:  # and through the folder holding it
        monkeypatch.setenv(data.ENV_VAR, str(p.parent))
        assert shakespeare_path() == p
    text = p.read_text(encoding="utf-8")
    assert len(text) == CORPUS_CHARS
    assert len(set(text)) == CORPUS_VOCAB


def test_real_corpus_dataset(corpus_text, tmp_path):
    p = tmp_path / SHAKESPEARE_FILE
    p.write_text(corpus_text, encoding="utf-8")
    ds = CharDataset.from_file(p)
    assert ds.tokenizer.vocab_size == CORPUS_VOCAB
    assert ds.tokenizer.chars == "".join(sorted(set(corpus_text)))
    assert len(ds.train) == int(0.9 * CORPUS_CHARS) == 1_003_854
    assert len(ds.val) == CORPUS_CHARS - 1_003_854
    assert ds.tokenizer.decode(ds.train[:14]) == "First Citizen:"
    assert ds.tokenizer.decode(ds.val[-10:]) == corpus_text[-10:]


# ---- dataset, batches ----


def test_dataset_split_90_10():
    text = "".join(chr(ord("a") + i % 26) for i in range(1000))
    ds = CharDataset(text)
    assert len(ds.train) == 900 and len(ds.val) == 100
    np.testing.assert_array_equal(np.concatenate([ds.train, ds.val]), ds.tokenizer.encode(text))
    assert ds.split("train") is ds.train
    assert ds.split("val") is ds.val


def test_dataset_with_given_tokenizer():
    tok = CharTokenizer("abcdefghij")
    ds = CharDataset("abcabcabca", tokenizer=tok)
    assert ds.tokenizer is tok
    with pytest.raises(InputError, match=r"'z'"):
        CharDataset("abz" * 5, tokenizer=tok)


def test_dataset_too_short():
    with pytest.raises(DataError, match=r"too short"):
        CharDataset("a")


@pytest.mark.parametrize("B, T", [(1, 1), (4, 8), (3, 17)])
def test_get_batch(B, T):
    # tokens 0, 1, 2, ...: a window is identified by its first token
    split = np.arange(50, dtype=np.int64)
    x, y = get_batch(split, B, T, np.random.default_rng(0))
    assert x.shape == y.shape == (B, T)
    assert x.dtype == y.dtype == np.int64
    for b in range(B):
        i = x[b, 0]
        np.testing.assert_array_equal(x[b], split[i : i + T])
        np.testing.assert_array_equal(y[b], split[i + 1 : i + 1 + T])  # the next token of each
        np.testing.assert_array_equal(x[b, 1:], y[b, :-1])


def test_get_batch_covers_every_window():
    split = np.arange(12, dtype=np.int64)
    T = 4
    x, y = get_batch(split, 2000, T, np.random.default_rng(1))
    assert set(x[:, 0].tolist()) == set(range(len(split) - T))  # the last window ends at the last token
    assert y.max() == len(split) - 1


def test_get_batch_split_too_short():
    with pytest.raises(DataError, match=r"has 8 tokens, too few for block_size 8"):
        get_batch(np.arange(8), 2, 8, np.random.default_rng(0))
    x, _ = get_batch(np.arange(9), 2, 8, np.random.default_rng(0))  # one token more is enough
    assert x.shape == (2, 8)


def test_batch_rng_determinism():
    split = np.arange(10_000, dtype=np.int64)
    a = get_batch(split, 8, 16, batch_rng(1337, 5))
    b = get_batch(split, 8, 16, batch_rng(1337, 5))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    c = get_batch(split, 8, 16, batch_rng(1337, 6))
    d = get_batch(split, 8, 16, batch_rng(1338, 5))
    assert not np.array_equal(a[0], c[0])
    assert not np.array_equal(a[0], d[0])


def test_batch_rng_independent_of_history():
    # a resumed run at step 5 draws what the uninterrupted run drew there
    split = np.arange(10_000, dtype=np.int64)
    run = [get_batch(split, 4, 8, batch_rng(0, s))[0] for s in range(6)]
    resumed = get_batch(split, 4, 8, batch_rng(0, 5))[0]
    np.testing.assert_array_equal(run[5], resumed)
