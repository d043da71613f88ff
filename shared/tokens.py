# SPEC.md "Token files": a corpus as token ids behind a fixed 1024-byte header (llm.c's .bin files), so
# that a corpus of any size is written chunk by chunk and read through np.memmap: training on it takes
# memory for a batch, not for the corpus. impl_c/tokens.c reads the same files.
#
#   python -m shared.tokens info FILE                      print a token file's header
#   python -m shared.tokens from-nanogpt IN OUT --vocab-size V --kind K
#                                                          convert a headerless nanoGPT uint16 file
import argparse
import os
import re
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shared.errors import DataError

MAGIC = 0x4B4F5447  # the bytes "GTOK"; not llm.c's 20240520, whose header has other fields in [2..]
VERSION = 1
HEADER_BYTES = 1024  # 256 little-endian int32
KIND_START, KIND_END = 24, 40  # header ints [6..9]: the tokenizer kind, ASCII, NUL-padded
KIND_PATTERN = re.compile(r"[a-z0-9_-]{1,15}")  # at most 15 bytes: always NUL-terminated for C
MAX_VOCAB = 2**31 - 1  # a positive int32, as C reads it
UINT16_VOCAB = 65536  # the largest vocabulary whose ids fit in uint16
WRITE_CHUNK = 1 << 20  # ids checked, converted and written per step


@dataclass(frozen=True)
class TokenHeader:
    vocab_size: int
    count: int  # tokens in the file
    kind: str  # the tokenizer kind ("char", "bpe", "word")

    @property
    def dtype(self) -> np.dtype:
        return token_dtype(self.vocab_size)


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits (vocab_size <= 65536), else uint32; little-endian either way."""
    return np.dtype("<u2") if vocab_size <= UINT16_VOCAB else np.dtype("<u4")


def encode_header(vocab_size: int, count: int, kind: str) -> bytes:
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, (int, np.integer)):
        raise DataError(f"vocab_size must be an int, got {type(vocab_size).__name__}")
    if not 1 <= vocab_size <= MAX_VOCAB:
        raise DataError(f"vocab_size {vocab_size} outside [1, {MAX_VOCAB}]")
    if not 0 <= count < 2**64:
        raise DataError(f"token count {count} outside [0, 2**64)")
    if not isinstance(kind, str) or not KIND_PATTERN.fullmatch(kind):
        raise DataError(f"tokenizer kind {kind!r} must be 1 to 15 characters of a-z, 0-9, _ and -")
    h = np.zeros(HEADER_BYTES // 4, dtype="<u4")
    h[:6] = MAGIC, VERSION, token_dtype(vocab_size).itemsize, vocab_size, count & 0xFFFFFFFF, count >> 32
    buf = bytearray(h.tobytes())
    buf[KIND_START : KIND_START + len(kind)] = kind.encode("ascii")
    return bytes(buf)


def decode_header(buf: bytes, name="<header>", file_size: int | None = None) -> TokenHeader:
    """The header at the start of buf, after every check the header alone allows; name labels the
    messages, file_size (when known) sharpens the one for a file that is not a token file."""
    if len(buf) < 4 or int.from_bytes(buf[:4], "little") != MAGIC:
        raise DataError(f"{name}: not a token file (it does not start with 'GTOK'){_hint(buf, file_size)}")
    if len(buf) < HEADER_BYTES:
        raise DataError(f"{name}: truncated header, {len(buf)} of {HEADER_BYTES} bytes")
    h = np.frombuffer(buf[:HEADER_BYTES], dtype="<u4")
    version, width, vocab_size = int(h[1]), int(h[2]), int(h[3])
    if version != VERSION:
        raise DataError(f"{name}: token file version {version}; this reader knows version {VERSION}")
    if width not in (2, 4):
        raise DataError(f"{name}: {width} bytes per token; expected 2 (uint16) or 4 (uint32)")
    if not 1 <= vocab_size <= MAX_VOCAB:
        raise DataError(f"{name}: vocab_size {vocab_size} outside [1, {MAX_VOCAB}]")
    if width != token_dtype(vocab_size).itemsize:
        raise DataError(
            f"{name}: {width} bytes per token for vocab_size {vocab_size}; the format uses "
            f"{token_dtype(vocab_size).itemsize} (uint16 up to {UINT16_VOCAB} ids, else uint32)"
        )
    raw = bytes(buf[KIND_START:KIND_END])
    kind = raw.rstrip(b"\0").decode("ascii", "replace")
    if not KIND_PATTERN.fullmatch(kind):  # a NUL inside the name, or 16 bytes with none, fail it too
        raise DataError(f"{name}: the tokenizer kind {raw!r} is not a NUL-padded name of a-z, 0-9, _ and -")
    if any(buf[KIND_END:HEADER_BYTES]):
        raise DataError(f"{name}: header bytes {KIND_END}..{HEADER_BYTES - 1} are not zero (a newer format?)")
    return TokenHeader(vocab_size=vocab_size, count=int(h[4]) | int(h[5]) << 32, kind=kind)


def _hint(buf: bytes, file_size: int | None) -> str:
    """What a file that is not a token file may be, and how to make one from it."""
    head = bytes(buf[:HEADER_BYTES])
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as e:  # a character cut by the end of the first 1024 bytes is still text
        text = head[: e.start].decode("utf-8") if e.start >= len(head) - 3 and e.end == len(head) else None
    if text and all(c.isprintable() or c.isspace() for c in text):
        return "; it looks like text: make token files with `python transformer.py prepare ...`"
    if file_size is not None and file_size % 2 == 0 and file_size > 0:
        return (
            "; if it is a headerless nanoGPT file (uint16 ids, no header), convert it with "
            "`python -m shared.tokens from-nanogpt FILE OUT --vocab-size V --kind KIND`"
        )
    return ""


def read_tokens(path) -> tuple[np.ndarray, TokenHeader]:
    """The tokens as a read-only np.memmap (uint16 or uint32, nothing read until indexed) and the
    header, after every check: the header's own, then the file size against the count."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(HEADER_BYTES)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: a folder, not a token file") from None
    header = decode_header(head, path, size)
    width = header.dtype.itemsize
    expected = HEADER_BYTES + header.count * width
    if size != expected:
        raise DataError(
            f"{path}: {size} bytes, but its header says {header.count} tokens of {width} bytes "
            f"({expected} bytes with the header): {'truncated' if size < expected else 'trailing bytes'}"
        )
    if header.count == 0:  # np.memmap cannot map zero bytes
        return np.zeros(0, dtype=header.dtype), header
    return np.memmap(path, dtype=header.dtype, mode="r", offset=HEADER_BYTES, shape=(header.count,)), header


class TokenWriter:
    """Appends ids to a temporary file beside `path`; commit() writes the count into the header and
    renames the file over `path` (SPEC.md "Checkpoints", atomic save), abort() removes it. As a context
    manager it commits on success and aborts on an exception, so `path` is never left half written."""

    def __init__(self, path, vocab_size: int, kind: str):
        encode_header(vocab_size, 0, kind)  # the arguments are checked before any file is made
        self.path, self.vocab_size, self.kind = Path(path), int(vocab_size), kind
        self.dtype = token_dtype(self.vocab_size)
        self.count = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # as shared/checkpoint.py: a unique name, created exclusively, with the mode open() would give
        # (tempfile.mkstemp's files are private, 0600, and the rename would pass that on)
        self._tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(8)}.part")
        fd = os.open(self._tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        self._f = os.fdopen(fd, "w+b")
        self._f.write(bytes(HEADER_BYTES))  # the real header, with the count, is written by commit

    def write(self, ids) -> None:
        a = np.asarray(ids)
        if a.ndim == 0:
            a = a.reshape(1)
        if a.ndim != 1:
            raise DataError(f"{self.path}: token ids must be 1-D, got shape {a.shape}")
        if a.size and a.dtype.kind not in "iu":
            raise DataError(f"{self.path}: token ids must be integers, got {a.dtype}")
        for start in range(0, len(a), WRITE_CHUNK):
            chunk = a[start : start + WRITE_CHUNK]
            if chunk.min() < 0 or chunk.max() >= self.vocab_size:
                i = int(np.flatnonzero((chunk < 0) | (chunk >= self.vocab_size))[0])
                raise DataError(
                    f"{self.path}: token id {chunk[i]} at position {self.count + i} "
                    f"outside [0, {self.vocab_size})"
                )
            self._f.write(chunk.astype(self.dtype).tobytes())
            self.count += len(chunk)

    def read(self, start: int, stop: int) -> np.ndarray:
        """Ids already written, [start, stop): prepare moves the last ones into val.bin."""
        self._f.flush()
        self._f.seek(HEADER_BYTES + start * self.dtype.itemsize)
        data = self._f.read((stop - start) * self.dtype.itemsize)
        self._f.seek(0, os.SEEK_END)
        return np.frombuffer(data, dtype=self.dtype)

    def truncate(self, count: int) -> None:
        """Keeps the first `count` ids."""
        self._f.flush()
        self._f.truncate(HEADER_BYTES + count * self.dtype.itemsize)
        self._f.seek(0, os.SEEK_END)
        self.count = count

    def commit(self) -> TokenHeader:
        header = TokenHeader(self.vocab_size, self.count, self.kind)
        try:
            self._f.seek(0)
            self._f.write(encode_header(self.vocab_size, self.count, self.kind))
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()
            os.replace(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise
        return header

    def abort(self) -> None:
        self._f.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.commit()
        else:
            self.abort()
        return False


def write_tokens(path, ids, vocab_size: int, kind: str) -> TokenHeader:
    """Writes a token file from an array (a memmap too: it is read chunk by chunk) or an iterable of
    chunks (each an array or list of ids), streaming, so a corpus bigger than memory can be written.
    Every id must be in [0, vocab_size); on any error the file at `path`, if any, is left as it was."""
    whole = isinstance(ids, np.ndarray) or (
        isinstance(ids, (list, tuple)) and all(np.ndim(i) == 0 for i in ids)
    )
    chunks = [ids] if whole else ids
    with TokenWriter(path, vocab_size, kind) as w:
        for chunk in chunks:
            w.write(chunk)
    return TokenHeader(int(vocab_size), w.count, kind)


# ---- command line ----


def _file_chunks(f):
    """A headerless file's uint16 ids, read a chunk at a time (not mapped: a mapping read through
    keeps the whole file resident)."""
    while len(chunk := np.fromfile(f, dtype="<u2", count=WRITE_CHUNK)):
        yield chunk


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m shared.tokens", description="token files (SPEC.md)")
    sub = p.add_subparsers(dest="command", required=True)
    i = sub.add_parser("info", help="print a token file's header")
    i.add_argument("file")
    c = sub.add_parser("from-nanogpt", help="convert a headerless nanoGPT file (uint16 ids) to a token file")
    c.add_argument("input")
    c.add_argument("output")
    c.add_argument("--vocab-size", type=int, required=True, help="50257 for GPT-2's BPE")
    c.add_argument("--kind", required=True, help="the tokenizer kind: char, bpe, word")
    args = p.parse_args(argv)
    try:
        if args.command == "info":
            _, h = read_tokens(args.file)
            print(
                f"{args.file}: {h.count:,} tokens, {h.dtype.name}, vocab_size {h.vocab_size}, kind {h.kind}"
            )
        else:
            size = os.path.getsize(args.input)
            if size % 2:
                raise DataError(f"{args.input}: {size} bytes, an odd number: not uint16 ids")
            with open(args.input, "rb") as f:
                h = write_tokens(args.output, _file_chunks(f), args.vocab_size, args.kind)
            print(f"{args.output}: {h.count:,} tokens")
    except (DataError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
