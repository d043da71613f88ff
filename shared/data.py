# Tiny Shakespeare: found on disk or downloaded and verified, tokenized by character, split 90/10,
# and cut into batches by a seeded Generator. A corpus of any size: token files (SPEC.md "Token files"),
# written by prepare() and read through np.memmap by TokenDataset.
import codecs
import hashlib
import mmap
import os
import re
import urllib.request
from pathlib import Path

import numpy as np

from shared.errors import DataError, InputError
from shared.tokenizer import CharTokenizer, load_tokenizer
from shared.tokens import TokenWriter, read_tokens, token_dtype

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
    """A text split by characters, the first 90% for training and the rest for validation, each part
    tokenized (by character unless another tokenizer is given). By character this is the split of the
    text's tokens; with a bpe or word tokenizer the cut still falls between two characters, so that
    each split's character count is exact (bits per character, transformer.py)."""

    def __init__(self, text: str, tokenizer=None, train_fraction: float = 0.9):
        if len(text) < 2:
            raise DataError("the text is too short to train on")
        self.tokenizer = tokenizer or CharTokenizer.from_text(text)
        n = int(train_fraction * len(text))
        self.train, self.val = (
            _encode(self.tokenizer, text, 0, n),
            _encode(self.tokenizer, text, n, len(text)),
        )
        self._chars = {"train": n, "val": len(text) - n}

    def chars(self, name: str) -> int:
        """How many characters of text the split's tokens stand for."""
        self.split(name)
        return self._chars[name]

    @classmethod
    def from_file(cls, path) -> "CharDataset":
        return cls(Path(path).read_text(encoding="utf-8"))

    def split(self, name: str) -> np.ndarray:
        if name not in ("train", "val"):
            raise DataError(f"split must be 'train' or 'val', got {name!r}")
        return self.train if name == "train" else self.val


def _encode(tokenizer, text: str, start: int, end: int) -> np.ndarray:
    """text[start:end]'s ids in the smallest dtype that holds them (uint8 up to 256 tokens, else the token
    files' uint16 or uint32), for a char tokenizer a chunk at a time: a 200 MB text never has an int64 id
    per character at once (peak memory: README, "Bad input")."""
    dtype = np.uint8 if tokenizer.vocab_size <= 256 else token_dtype(tokenizer.vocab_size)
    if getattr(tokenizer, "kind", None) != "char":  # a word or BPE piece may straddle a chunk's edge
        return tokenizer.encode(text[start:end]).astype(dtype)
    ids = np.empty(end - start, dtype=dtype)
    for i in range(start, end, TEXT_CHUNK):
        ids[i - start : min(i + TEXT_CHUNK, end) - start] = tokenizer.encode(
            text[i : min(i + TEXT_CHUNK, end)]
        )
    return ids


def get_batch(data: np.ndarray, batch_size: int, block_size: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """B random windows of block_size tokens, x and the next-token targets y, both (B, T) int64."""
    if len(data) <= block_size:
        raise DataError(f"the split has {len(data)} tokens, too few for block_size {block_size}")
    ix = rng.integers(0, len(data) - block_size, size=batch_size)
    # window by window into int64: data may be a uint16 or uint32 memmap (TokenDataset), of which only
    # these windows are read, through a mapping of this batch's own
    src = fresh_map(data)
    x = np.empty((batch_size, block_size), dtype=np.int64)
    y = np.empty((batch_size, block_size), dtype=np.int64)
    for b, i in enumerate(ix):
        x[b] = src[i : i + block_size]
        y[b] = src[i + 1 : i + 1 + block_size]
    return x, y


def fresh_map(data: np.ndarray) -> np.ndarray:
    """A memmap of a whole file (TokenDataset's splits) mapped anew, to be dropped after use, as
    nanoGPT's get_batch does: the pages a mapping has touched stay resident until it is unmapped, and
    Linux maps a large folio of the file (up to megabytes) per touch, so one mapping used for a whole
    run grows toward the file's size (benchmarks/token_memory.py). Anything else comes back as it is."""
    if isinstance(data, np.memmap) and isinstance(data.base, mmap.mmap):  # not a slice: offset holds
        return np.memmap(data.filename, dtype=data.dtype, mode="r", offset=data.offset, shape=data.shape)
    return data


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


# ---- token files (SPEC.md "Token files"): a corpus of any size, kept on disk ----

TRAIN_FILE, VAL_FILE = "train.bin", "val.bin"
TOKENIZER_FILE = (
    "tokenizer.json"  # the tokenizer's to_json(), beside the token files (train_gpt reads it too)
)
WORD_CHAR = re.compile(r"\w")
TEXT_CHUNK = 1 << 22  # characters (or bytes) of text per encode call: its int64 ids are 8 bytes each


class TokenDataset:
    """A corpus in token files: FOLDER/train.bin and FOLDER/val.bin, read through np.memmap (the corpus
    stays on disk, and a batch reads only its windows), and the tokenizer saved beside them. It has
    CharDataset's attributes, so training, get_batch and estimate_loss take either."""

    def __init__(self, folder):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise DataError(
                f"{folder}: no such folder (token files are a folder holding {TRAIN_FILE}, {VAL_FILE} "
                "and the tokenizer; prepare() writes one)"
            )
        self.train, train_header = read_tokens(self.folder / TRAIN_FILE)
        self.val, val_header = read_tokens(self.folder / VAL_FILE)
        self.tokenizer = _load_tokenizer(self.folder)
        self._chars = {}
        V, kind = self.tokenizer.vocab_size, getattr(self.tokenizer, "kind", "char")
        for name, h in ((TRAIN_FILE, train_header), (VAL_FILE, val_header)):
            if (h.vocab_size, h.kind) != (V, kind):
                raise DataError(
                    f"{self.folder / name}: vocab_size {h.vocab_size} and kind {h.kind!r}, but the tokenizer "
                    f"beside it has vocab_size {V} and kind {kind!r}"
                )

    def split(self, name: str) -> np.ndarray:
        if name not in ("train", "val"):
            raise DataError(f"split must be 'train' or 'val', got {name!r}")
        return self.train if name == "train" else self.val

    def chars(self, name: str) -> int:
        """How many characters the split's tokens decode to, a chunk at a time (once per split): exact
        for char, for bpe to within a character per chunk (a chunk may cut a character's bytes); a word tokenizer's <unk> counts as its own 5 characters, not the word's."""
        if name not in self._chars:
            data, n = self.split(name), 0
            for start in range(0, len(data), TEXT_CHUNK):
                n += len(self.tokenizer.decode(np.asarray(data[start : start + TEXT_CHUNK])))
            self._chars[name] = n
        return self._chars[name]


def _load_tokenizer(folder: Path):
    try:
        return load_tokenizer(folder)
    except InputError as e:  # a token folder without a readable tokenizer is a bad dataset
        raise DataError(f"{folder}: the tokenizer beside the token files: {e}") from None


def _save_tokenizer(tokenizer, folder: Path):
    # to_json(), the form checkpoints carry in their "tokenizer" metadata, not save()'s: load_tokenizer
    # reads it for every kind, and train_gpt copies it into its checkpoints as it is
    path = folder / TOKENIZER_FILE
    tmp = path.with_name(f".{TOKENIZER_FILE}.part")
    tmp.write_text(tokenizer.to_json(), encoding="utf-8")
    os.replace(tmp, path)


def prepare(
    text_path,
    out_folder,
    tokenizer=None,
    val_fraction: float = 0.1,
    chunk_bytes: int = TEXT_CHUNK,
    progress: bool = True,
) -> TokenDataset:
    """Tokenizes a UTF-8 text file of any size into OUT/train.bin and OUT/val.bin and saves the
    tokenizer beside them. Of the text's N tokens, the first int((1 - val_fraction) * N) are train and
    the rest val, as CharDataset splits. tokenizer None: the character tokenizer of the text's own
    characters (one more pass over the text). Memory: one chunk of text and its ids at a time."""
    from tqdm import tqdm

    text_path, out = Path(text_path), Path(out_folder)
    if not 0 < val_fraction < 1:
        raise DataError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if not text_path.is_file():
        raise DataError(f"{text_path}: no such file")
    if tokenizer is None:
        tokenizer = CharTokenizer("".join(sorted(_characters(text_path, chunk_bytes))))
    V, kind = tokenizer.vocab_size, getattr(tokenizer, "kind", "char")
    bar = tqdm(
        total=text_path.stat().st_size, unit="B", unit_scale=True, desc=text_path.name, disable=not progress
    )
    # the ids are written to train.bin's temporary file as they come, since N is known only at the end;
    # then the last ones move to val.bin and train.bin is cut. Either file appears only when complete.
    with bar, TokenWriter(out / TRAIN_FILE, V, kind) as train, TokenWriter(out / VAL_FILE, V, kind) as val:
        for piece in _text_pieces(text_path, chunk_bytes, bar, word=kind == "word"):
            train.write(tokenizer.encode(piece))
        if train.count < 2:
            raise DataError(f"{text_path}: {train.count} tokens, too few to train on")
        n = int((1 - val_fraction) * train.count)
        for start in range(n, train.count, TEXT_CHUNK):
            val.write(train.read(start, min(start + TEXT_CHUNK, train.count)))
        train.truncate(n)
    _save_tokenizer(tokenizer, out)  # last: token files without their tokenizer are refused, not misread
    return TokenDataset(out)


def _characters(path: Path, chunk_bytes: int) -> set:
    decoder, chars = codecs.getincrementaldecoder("utf-8")(), set()
    try:
        with open(path, "rb") as f:
            while block := f.read(chunk_bytes):
                chars.update(decoder.decode(block))
            chars.update(decoder.decode(b"", final=True))
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason})") from None
    return chars


def _text_pieces(path: Path, chunk_bytes: int, bar, word: bool = False):
    """The text in pieces of about chunk_bytes, each cut just before a newline that a non-whitespace
    character follows, where tokenizing piece by piece gives the ids of the whole text:
    - the char tokenizer: any cut between characters is exact;
    - GPT-2's pre-tokenizer ('s|'t|...| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+): a whitespace
      run W ending in that newline, with a non-space after it, is cut into W[:-1] (\\s+(?!\\S) stops
      before the last whitespace) and the newline alone (no alternative joins a newline to the letter,
      digit or symbol after it). So the whole text has piece boundaries exactly there; each side alone
      gives the same pieces, and BPE merges stay inside pieces. A cut just *after* a newline is not
      exact: "\\n  x" is "\\n ", " x" whole but "\\n" | " ", " x" cut, and "\\n\\n" is one piece at the end;
    - the word tokenizer (word=True: re.split(r"\b")): there "foo!\nbar" is "foo", "!\n", "bar", so a
      cut before the newline is not exact; the cut goes just *after* a newline that a word character
      follows, a \b boundary of the whole text where each side alone splits the same way.
    A newline byte never sits inside a UTF-8 character, so the byte cut is a character cut. A stretch
    with no such newline (one huge line) is held whole, however long, until the next one."""
    buf, offset = b"", 0  # offset: where buf starts in the file
    with open(path, "rb") as f:
        while block := f.read(chunk_bytes):
            bar.update(len(block))
            # a newline up to 4 bytes before the old end may have just got its next character whole
            start = max(0, len(buf) - 4)
            buf += block
            cut = _last_cut(buf, start, word)
            if cut:
                yield _decode(buf[:cut], path, offset)
                buf, offset = buf[cut:], offset + cut
    if buf:
        yield _decode(buf, path, offset)


def _last_cut(buf: bytes, start: int = 0, word: bool = False) -> int:
    """The last i > 0, i >= start, where buf[i] is a newline with a non-whitespace character after it;
    0 if there is none. str.isspace covers the \\s of the tokenizers' patterns (and U+001C..U+001F).
    word: the place just after the last newline with a word character (re's \\w) after it."""
    end = len(buf)
    while (i := buf.rfind(b"\n", start, end)) > 0:
        after = buf[i + 1 : i + 5].decode("utf-8", "ignore")[:1]  # "" if cut short by the end
        if word and WORD_CHAR.match(after):
            return i + 1
        if not word and after and not after.isspace():
            return i
        end = i
    return 0


def _decode(piece: bytes, path: Path, offset: int) -> str:
    try:
        return piece.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text at byte {offset + e.start} ({e.reason})") from None


def token_counts(data: np.ndarray, vocab_size: int, chunk: int = 1 << 22) -> np.ndarray:
    """How often each id occurs in data, int64 (vocab_size,), counted a chunk at a time: np.bincount
    on a whole uint16 memmap would first make an int64 copy four times the size of the file, and a
    memmap read through would keep the whole file resident."""
    counts = np.zeros(vocab_size, dtype=np.int64)
    for start in range(0, len(data), chunk):
        c = np.bincount(fresh_map(data)[start : start + chunk], minlength=vocab_size)  # see fresh_map
        if len(c) > vocab_size:
            raise DataError(f"token id {len(c) - 1} outside [0, {vocab_size})")
        counts += c
    return counts
