# GPT-2's byte-level BPE (openai/gpt-2 src/encoder.py), read from and written to the files Hugging Face
# uses (vocab.json + merges.txt, or a `tokenizers` tokenizer.json), and a trainer that learns the merges
# Hugging Face `tokenizers`' BpeTrainer learns. shared/tokenizer.py is the interface; this is the BPE.
#
# Text -> ids, as GPT-2 does it:
#   1. the special tokens (<|endoftext|>) are cut out of the text wherever they appear, as Hugging Face's
#      GPT-2 tokenizer does (encoder.py itself never met the literal string);
#   2. the rest is cut into pieces by PATTERN (pre-tokenization), so that no token spans two words;
#   3. each piece's UTF-8 bytes become printable characters, one per byte (bytes_to_unicode), and
#   4. merges apply inside each piece: repeatedly the adjacent pair of lowest rank (its line in merges.txt).
# ids -> text undoes 3: every token's characters back to bytes, then the bytes decoded as UTF-8 with
# errors="replace" (encoder.py's and Hugging Face's choice), so that any id sequence decodes.
import heapq
import json
import os
import stat
from collections import Counter, defaultdict
from itertools import pairwise
from pathlib import Path

import numpy as np
import regex

from shared.errors import InputError

ENDOFTEXT = "<|endoftext|>"
VERSION_LINE = "#version: 0.2"  # merges.txt's first line, as GPT-2 and Hugging Face write it

# encoder.py's pattern: English contractions, then a run of letters, of digits or of other symbols, each
# with at most one space before it; whitespace runs give their last space to the word after them
# (\s+(?!\S)). It needs the `regex` package for \p{L} and \p{N}. Its Unicode tables are newer than those
# of Hugging Face's Oniguruma (Unicode 15.1): a character first assigned in Unicode 16 or later
# (4,657 code points, e.g. U+088F) is a letter or digit here and "other" there.
PATTERN = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")

CACHE_SIZE = 1 << 17  # pieces whose ids are remembered (Tiny Shakespeare has about 25,000 distinct)


def bytes_to_unicode() -> dict[int, str]:
    """encoder.py's bytes_to_unicode: a printable character for every byte, so that a token is a plain
    string in vocab.json and merges.txt (a space or a control byte would break those files). The 188
    bytes that print as themselves keep their character; the other 68 get U+0100 onwards in byte order
    (the space, byte 32, becomes "Ġ", U+0120)."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    chars = {b: chr(b) for b in printable}
    others = [b for b in range(256) if b not in chars]
    chars |= {b: chr(256 + n) for n, b in enumerate(others)}
    return dict(sorted(chars.items()))


BYTE_CHARS = bytes_to_unicode()  # byte -> character
CHAR_BYTES = {c: b for b, c in BYTE_CHARS.items()}


def token_bytes(token: str) -> bytes:
    # Hugging Face's ByteLevel decoder: a token with a character outside the 256 (a special token with a
    # space, say) stands for its own UTF-8 bytes
    if all(c in CHAR_BYTES for c in token):
        return bytes(CHAR_BYTES[c] for c in token)
    return token.encode("utf-8")


def merge_pair(word: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Every occurrence of pair in word replaced by new_id, left to right without overlap ("aaa" with
    (a, a) gives "aa a"), as encoder.py's bpe() and Hugging Face's Word::merge do."""
    a, b = pair
    out, i = [], 0
    while i < len(word):
        if word[i] == a and i + 1 < len(word) and word[i + 1] == b:
            out.append(new_id)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return out


NO_MERGE = (float("inf"), -1)  # the rank of a pair that merges.txt does not list


class BPETokenizer:
    kind = "bpe"

    def __init__(
        self,
        vocab: dict[str, int],
        merges: list[tuple[str, str]],
        special_tokens: list[str] | None = None,
        ignore_merges: bool = False,
        *,
        files: tuple[str, str] = ("vocab", "merges"),
    ):
        """vocab: token -> id, the ids 0..N-1; merges: pairs of tokens, highest priority first;
        special_tokens: cut out of the text before anything else, None for GPT2TokenizerFast's rule
        (<|endoftext|> when the vocabulary has it); ignore_merges: a tokenizer.json option (a piece that
        is a token as a whole is that token); files: what error messages call vocab and merges."""
        check_vocab(vocab, files[0])
        self.vocab = dict(sorted(vocab.items(), key=lambda kv: kv[1]))
        self.id_to_token = list(self.vocab)
        self.merges = check_merges(merges, self.vocab, files[1])
        # pair of ids -> (rank, id of the merged token); a pair listed twice keeps its later rank, as
        # encoder.py's dict(zip(merges, range(len(merges)))) and Hugging Face's merge map do
        self.ranks = {(vocab[a], vocab[b]): (rank, vocab[a + b]) for rank, (a, b) in enumerate(self.merges)}
        if special_tokens is None:
            special_tokens = [ENDOFTEXT] if ENDOFTEXT in vocab else []
        for t in special_tokens:
            if t == "":
                raise InputError(f"{files[0]}: a special token cannot be empty")
            if t not in vocab:
                raise InputError(f"{files[0]}: the special token {t!r} is not in the vocabulary")
        self.special_tokens = list(special_tokens)
        # the longest first, so that where two start at the same place the longer is cut (Hugging Face
        # matches added tokens leftmost-longest)
        by_length = sorted(special_tokens, key=len, reverse=True)
        self.special_split = (
            regex.compile("(" + "|".join(map(regex.escape, by_length)) + ")") if by_length else None
        )
        self.ignore_merges = ignore_merges
        self.byte_ids = [self.vocab.get(BYTE_CHARS[b]) for b in range(256)]
        self.id_bytes = [token_bytes(t) for t in self.id_to_token]
        self.cache: dict[str, list[int]] = {}

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def encode(self, s: str) -> np.ndarray:
        parts = self.special_split.split(s) if self.special_split else [s]
        ids = []
        for i, part in enumerate(parts):
            if i % 2:  # split() with a group: every other part is a special token
                ids.append(self.vocab[part])
                continue
            for piece in PATTERN.findall(part):
                piece_ids = self.cache.get(piece)
                if piece_ids is None:
                    if len(self.cache) >= CACHE_SIZE:
                        self.cache.clear()
                    piece_ids = self.cache[piece] = self.bpe(piece)
                ids.extend(piece_ids)
        return np.array(ids, dtype=np.int64)

    def bpe(self, piece: str) -> list[int]:
        """One piece's ids: encoder.py's bpe(), on ids rather than strings."""
        try:
            data = piece.encode("utf-8")
        except UnicodeEncodeError as e:
            raise InputError(
                f"the text holds {piece[e.start]!r}, a lone surrogate that UTF-8 cannot encode"
            ) from None
        if self.ignore_merges and (whole := "".join(BYTE_CHARS[b] for b in data)) in self.vocab:
            return [self.vocab[whole]]
        word = [self.byte_ids[b] for b in data]
        if None in word:
            b = data[word.index(None)]
            raise InputError(
                f"byte 0x{b:02x} of {piece!r} has no token ({BYTE_CHARS[b]!r} is not in the vocabulary)"
            )
        while len(word) > 1:
            # the adjacent pair of lowest rank, merged everywhere in the piece, until no pair has a rank
            pair = min(pairwise(word), key=lambda p: self.ranks.get(p, NO_MERGE))
            if pair not in self.ranks:
                break
            word = merge_pair(word, pair, self.ranks[pair][1])
        return word

    def decode(self, ids) -> str:
        ids = check_ids(ids, self.vocab_size)
        return b"".join(self.id_bytes[i] for i in ids).decode("utf-8", errors="replace")

    # ---- files and JSON ----

    def to_json(self) -> str:
        return json.dumps(
            {
                "kind": "bpe",
                "vocab": self.vocab,
                "merges": [list(m) for m in self.merges],
                "special_tokens": self.special_tokens,
                "ignore_merges": self.ignore_merges,
            },
            ensure_ascii=False,
        )

    @classmethod
    def from_dict(cls, d: dict, where: str = "tokenizer JSON") -> "BPETokenizer":
        """to_json()'s object, parsed."""
        if not isinstance(d.get("vocab"), dict) or not isinstance(d.get("merges"), list):
            raise InputError(f"{where}: a bpe tokenizer needs a 'vocab' object and a 'merges' list")
        specials = d.get("special_tokens", [])
        if not isinstance(specials, list) or not all(isinstance(t, str) for t in specials):
            raise InputError(f"{where}: 'special_tokens' must be a list of strings")
        ignore_merges = check_flag(d.get("ignore_merges", False), "ignore_merges", where)
        return cls(d["vocab"], d["merges"], specials, ignore_merges, files=(where, where))

    @classmethod
    def from_json(cls, s: str) -> "BPETokenizer":
        d = parse_json(s, "tokenizer JSON")
        if not isinstance(d, dict) or d.get("kind") != "bpe":
            raise InputError("tokenizer JSON: not a bpe tokenizer (expected an object with kind 'bpe')")
        return cls.from_dict(d)

    def save(self, folder) -> None:
        """vocab.json + merges.txt, byte for byte as Hugging Face `tokenizers` writes them (its
        BPE.save): what GPT2TokenizerFast, ByteLevelBPETokenizer and encoder.py read."""
        if self.special_tokens != ([ENDOFTEXT] if ENDOFTEXT in self.vocab else []) or self.ignore_merges:
            raise InputError(
                "vocab.json + merges.txt cannot say which tokens are special beyond <|endoftext|>, nor "
                "ignore_merges: keep this tokenizer as to_json()"
            )
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        vocab = json.dumps(self.vocab, ensure_ascii=False, separators=(",", ":"))
        (folder / "vocab.json").write_bytes(vocab.encode())
        merges = "".join(f"{a} {b}\n" for a, b in self.merges)
        (folder / "merges.txt").write_bytes(f"{VERSION_LINE}\n{merges}".encode())

    @classmethod
    def from_files(cls, vocab_path, merges_path) -> "BPETokenizer":
        """GPT-2's vocab.json + merges.txt (Hugging Face's layout; the #version line is optional)."""
        vocab = read_json(vocab_path)
        return cls(vocab, read_merges(merges_path), files=(str(vocab_path), str(merges_path)))

    @classmethod
    def from_hf_dict(cls, d: dict, where: str) -> "BPETokenizer":
        """A Hugging Face `tokenizers` tokenizer.json, parsed: GPT-2's kind only (check_hf_pipeline);
        its added tokens are the special tokens."""
        check_hf_pipeline(d, where)
        model = d["model"]
        vocab, merges = model.get("vocab"), model.get("merges")
        if not isinstance(vocab, dict) or not isinstance(merges, list):
            raise InputError(f"{where}: the model needs a 'vocab' object and a 'merges' list")
        vocab = dict(vocab)
        # merges are "a b" strings in files before tokenizers 0.20, [a, b] lists since
        merges = [m.split(" ") if isinstance(m, str) else m for m in merges]
        specials = []
        added = d.get("added_tokens") or []
        if not isinstance(added, list):
            raise InputError(f"{where}: 'added_tokens' must be a list, got {type(added).__name__}")
        for t in added:
            if (
                not isinstance(t, dict)
                or not isinstance(t.get("content"), str)
                or type(t.get("id")) is not int
            ):
                raise InputError(f"{where}: an added token must have a string 'content' and an integer 'id'")
            if t.get("lstrip") or t.get("rstrip") or t.get("single_word"):
                raise InputError(
                    f"{where}: added token {t['content']!r}: lstrip, rstrip, single_word not supported"
                )
            if vocab.setdefault(t["content"], t["id"]) != t["id"]:
                raise InputError(
                    f"{where}: added token {t['content']!r} has id {t['id']}, the model {vocab[t['content']]}"
                )
            specials.append(t["content"])
        ignore_merges = check_flag(model.get("ignore_merges") or False, "the model's ignore_merges", where)
        return cls(vocab, merges, specials, ignore_merges, files=(where, where))

    # ---- training ----

    @classmethod
    def train(
        cls, text: str, vocab_size: int, min_frequency: int = 0, progress: bool | None = None
    ) -> "BPETokenizer":
        """A byte-level BPE learned from text, with the merges, order and ids of Hugging Face's
        BpeTrainer configured alike (tokenizers/src/models/bpe/trainer.rs: a ByteLevel pre-tokenizer
        without prefix space, initial_alphabet=ByteLevel.alphabet(), special_tokens=[<|endoftext|>],
        the same min_frequency). Ids: <|endoftext|> 0, the 256 byte characters 1..256 in code point
        order, then one per merge. Merges stop at vocab_size tokens, or when the most frequent pair
        occurs fewer than max(1, min_frequency) times. progress: a tqdm bar over the merges (None: on
        a terminal, for 1,000 merges or more)."""
        if type(vocab_size) is not int or vocab_size < 257:
            raise InputError(
                f"vocab_size must be an int >= 257 (<|endoftext|> and 256 bytes), got {vocab_size!r}"
            )
        # the text counts only through its distinct pieces. Unlike Hugging Face's trainer, which feeds
        # the literal <|endoftext|> to the pre-tokenizer like any text, it is cut out first, as encode does
        counts = Counter()
        for part in text.split(ENDOFTEXT):
            counts.update(PATTERN.findall(part))
        tokens = [ENDOFTEXT, *sorted(BYTE_CHARS.values())]
        merges = learn_merges(counts, tokens, vocab_size, min_frequency, progress)
        return cls({t: i for i, t in enumerate(tokens)}, merges, [ENDOFTEXT])


def learn_merges(counts: Counter, tokens: list[str], vocab_size: int, min_frequency: int, progress) -> list:
    """BpeTrainer::do_train's merge loop. tokens (id -> string) starts as the alphabet and grows by one
    per merge; returns the merges as pairs of strings. Pair counts are kept up to date incrementally
    over the distinct pieces, each weighted by its count, with an index from a pair to the pieces that
    hold it, so that a merge costs only the pieces it changes."""
    from tqdm import tqdm

    ids = {t: i for i, t in enumerate(tokens)}
    words = [[ids[BYTE_CHARS[b]] for b in piece.encode("utf-8")] for piece in counts]
    weights = list(counts.values())
    pair_counts, where = defaultdict(int), defaultdict(set)
    for w, word in enumerate(words):
        for pair in pairwise(word):
            pair_counts[pair] += weights[w]
            where[pair].add(w)
    # the most frequent pair first; on equal counts the smaller pair of ids (trainer.rs's Ord for Merge).
    # Entries go stale as counts fall: one popped with an old count goes back with the current one.
    heap = [(-n, pair) for pair, n in pair_counts.items()]
    heapq.heapify(heap)
    merges = []
    total = vocab_size - len(tokens)
    # tqdm's disable=None: shown on a terminal only
    disable = (None if total >= 1000 else True) if progress is None else not progress
    with tqdm(total=total, desc="BPE merges", unit="merge", disable=disable) as bar:
        while len(tokens) < vocab_size and heap:
            n, pair = heapq.heappop(heap)
            if -n != pair_counts[pair]:
                heapq.heappush(heap, (-pair_counts[pair], pair))
                continue
            if -n < max(min_frequency, 1):
                break
            a, b = pair
            merged = tokens[a] + tokens[b]
            if merged not in ids:  # a string made before by another pair keeps its id (trainer.rs does so)
                ids[merged] = len(tokens)
                tokens.append(merged)
                bar.update()
            merges.append((tokens[a], tokens[b]))
            for p in apply_merge(pair, ids[merged], words, weights, pair_counts, where):
                heapq.heappush(heap, (-pair_counts[p], p))
    return merges


def apply_merge(pair, new_id: int, words, weights, pair_counts, where) -> set:
    """Merges pair in every piece that holds it and updates the counts and the index; returns the new
    pairs (those with new_id), which the heap does not hold yet."""
    new_pairs = set()
    for w in where.pop(pair):
        word = words[w]
        merged = merge_pair(word, pair, new_id)
        if len(merged) == len(word):  # the index is a superset: an earlier merge took the pair away
            continue
        for p in pairwise(word):
            pair_counts[p] -= weights[w]
        for p in pairwise(merged):
            pair_counts[p] += weights[w]
            where[p].add(w)
            if new_id in p:
                new_pairs.add(p)
        words[w] = merged
    return {p for p in new_pairs if pair_counts[p] > 0}


def check_hf_pipeline(d: dict, where: str) -> None:
    """A tokenizer.json that encodes as GPT-2: a BPE model without GPT-2-foreign options, the ByteLevel
    pre-tokenizer with GPT-2's pattern, no normalizer, and a post-processor that adds no tokens (ByteLevel,
    or transformers' template of the text alone). Anything else would encode differently, so it is
    refused rather than misread."""
    model = d.get("model")
    if not isinstance(model, dict) or model.get("type") != "BPE":
        raise InputError(
            f"{where}: the model is {model.get('type') if isinstance(model, dict) else model!r}, not BPE"
        )
    for key in ("dropout", "continuing_subword_prefix", "end_of_word_suffix", "byte_fallback"):
        if model.get(key):
            raise InputError(f"{where}: the model's {key} {model[key]!r} is not supported (GPT-2 has none)")
    pre = d.get("pre_tokenizer") or {}
    if not isinstance(pre, dict) or (
        pre.get("type"),
        pre.get("add_prefix_space", False),
        pre.get("use_regex", True),
    ) != ("ByteLevel", False, True):
        raise InputError(
            f"{where}: the pre-tokenizer must be GPT-2's (ByteLevel, add_prefix_space false, use_regex "
            f"true), got {json.dumps(pre)[:200]}"
        )
    if d.get("normalizer") is not None:
        raise InputError(f"{where}: a normalizer is not supported (GPT-2 has none)")
    post = d.get("post_processor") or {}
    single = post.get("single", []) if isinstance(post, dict) else None
    if (
        not isinstance(post, dict)
        or post.get("type") not in (None, "ByteLevel", "TemplateProcessing")
        or not isinstance(single, list)
        or any(not isinstance(item, dict) or "SpecialToken" in item for item in single)
    ):
        raise InputError(
            f"{where}: a post-processor that adds tokens is not supported, got {json.dumps(post)[:200]}"
        )


# ---- checks and file reading, shared with shared/tokenizer.py ----


def check_ids(ids, vocab_size: int) -> list[int]:
    ids = [int(i) for i in ids]
    bad = [i for i in ids if not 0 <= i < vocab_size]
    if bad:  # a negative id would otherwise index from the end and decode silently
        raise InputError(f"token id {bad[0]} outside [0, {vocab_size})")
    return ids


def check_vocab(vocab, where: str) -> None:
    if not isinstance(vocab, dict) or not all(
        isinstance(k, str) and type(v) is int for k, v in vocab.items()
    ):
        raise InputError(f"{where}: the vocabulary must be a JSON object of token -> integer id")
    if not vocab:
        raise InputError(f"{where}: the vocabulary is empty")
    for t in vocab:
        try:
            t.encode("utf-8")  # what decode does with a token outside the 256 byte characters
        except UnicodeEncodeError:
            raise InputError(f"{where}: token {t!r} holds a lone surrogate, which is not text") from None
    if sorted(vocab.values()) != list(range(len(vocab))):
        twice = [i for i, n in Counter(vocab.values()).items() if n > 1]
        missing = sorted(set(range(len(vocab))) - set(vocab.values()))
        problem = f"id {min(twice)} is given twice" if twice else f"id {missing[0]} is missing"
        raise InputError(f"{where}: the ids must be 0..{len(vocab) - 1}, each once, but {problem}")


def check_merges(merges, vocab: dict[str, int], where: str) -> list[tuple[str, str]]:
    out = []
    for i, m in enumerate(merges, 1):
        if not (isinstance(m, list | tuple) and len(m) == 2 and all(isinstance(t, str) for t in m)):
            raise InputError(f"{where}: merge {i} is {m!r}, not a pair of tokens")
        a, b = m
        for t in (a, b):
            if t not in vocab:
                raise InputError(f"{where}: merge {i} ({a} {b}) names {t!r}, which is not in the vocabulary")
        if a + b not in vocab:
            raise InputError(f"{where}: merge {i} ({a} {b}) makes {a + b!r}, which is not in the vocabulary")
        out.append((a, b))
    return out


def read_text(path) -> str:
    # a regular file only: reading a FIFO or /dev/zero would never end (opened without blocking, and
    # checked on the open descriptor, so the file checked is the file read)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except OSError as e:
        raise InputError(f"{path}: cannot be read ({e.strerror})") from None
    except ValueError:  # a NUL byte in the path
        raise InputError(f"{path!r}: not a path (it holds a NUL byte)") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise InputError(f"{path}: not a regular file")
    try:
        with os.fdopen(fd, encoding="utf-8") as f:  # text mode, as Path.read_text: "\r\n" is "\n"
            return f.read()
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise InputError(f"{path}: cannot be read ({e.strerror})") from None


def parse_json(s: str, where: str):
    """JSON text -> value; anything that is not JSON, or that json.loads cannot hold (nesting deeper than
    the stack, an integer of more than 4300 digits), or an object with a key twice (which value is
    meant?), is an InputError."""
    if not isinstance(s, (str, bytes, bytearray)):
        raise InputError(f"{where}: expected JSON text, got {type(s).__name__}")
    try:
        return json.loads(s, object_pairs_hook=_object)
    except json.JSONDecodeError as e:
        raise InputError(f"{where}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    except RecursionError:
        raise InputError(f"{where}: not valid JSON (nested too deeply)") from None
    except InputError as e:
        raise InputError(f"{where}: {e}") from None
    except (ValueError, UnicodeDecodeError) as e:  # an integer of too many digits; bytes not UTF-8
        raise InputError(f"{where}: not valid JSON ({e})") from None


def _object(pairs: list) -> dict:
    d = dict(pairs)
    if len(d) != len(pairs):
        twice = next(k for k, n in Counter(k for k, _ in pairs).items() if n > 1)
        raise InputError(f"the key {twice!r} appears twice in one object")
    return d


def check_flag(value, name: str, where: str) -> bool:
    if not isinstance(value, bool):
        raise InputError(f"{where}: {name} must be true or false, got {value!r}")
    return value


def read_json(path):
    return parse_json(read_text(path), str(path))


def read_merges(path) -> list[tuple[str, str]]:
    lines = read_text(path).split("\n")
    if lines[-1] == "":  # after the last line's newline
        lines.pop()
    start = 1 if lines and lines[0].startswith("#version") else 0
    merges = []
    for n, line in enumerate(lines[start:], start + 1):
        pair = line.removesuffix("\r").split(" ")
        if len(pair) != 2 or "" in pair:
            raise InputError(f"{path} line {n}: {line!r} is not a merge (two tokens and one space between)")
        merges.append((pair[0], pair[1]))
    return merges
