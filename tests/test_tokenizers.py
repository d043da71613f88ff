# shared/tokenizer.py and shared/bpe.py against outside tokenizers, never against themselves: Hugging Face
# `tokenizers` trained its byte-level BPE on Tiny Shakespeare and encoded the corpus and hard strings with
# it (tests/tokenizer_reference/shakespeare/, made by make_reference.py; only those committed files are
# read here). Our BPETokenizer reading Hugging Face's files must give its ids token for token and decode
# as it does; our trainer must write Hugging Face's files byte for byte. The word tokenizer is checked
# against re.split and a hand-written expectation; all three round-trip through JSON and folders.
import hashlib
import json
import lzma
import re
import shutil
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.bpe import BYTE_CHARS, ENDOFTEXT, PATTERN, BPETokenizer, bytes_to_unicode
from shared.errors import InputError
from shared.tokenizer import CharTokenizer, WordTokenizer, load_tokenizer, tokenizer_from_json

REF_DIR = Path(__file__).resolve().parent / "tokenizer_reference" / "shakespeare"
REFERENCE = json.loads((REF_DIR / "reference.json").read_text(encoding="utf-8"))
VOCABS = [512, 8192]
HARD = [h["text"] for h in REFERENCE["hard"]["512"]]


@pytest.fixture(scope="module")
def corpus(corpus_path) -> str:
    return corpus_path.read_text(encoding="utf-8")


@cache
def hf_bpe(V: int) -> BPETokenizer:
    """Hugging Face's trained tokenizer, read by us from its vocab.json + merges.txt."""
    return BPETokenizer.from_files(REF_DIR / f"bpe{V}" / "vocab.json", REF_DIR / f"bpe{V}" / "merges.txt")


@cache
def hf_corpus_ids(V: int) -> np.ndarray:
    data = lzma.decompress((REF_DIR / f"bpe{V}.ids.xz").read_bytes())
    return np.frombuffer(data, dtype="<u2").astype(np.int64)


@cache
def trained(text: str, V: int, min_frequency: int = 0) -> BPETokenizer:
    return BPETokenizer.train(text, V, min_frequency=min_frequency, progress=False)


# how each committed vocabulary is read: Hugging Face's GPT-2 files, and for 512 its tokenizer.json too
SOURCES = [(512, "vocab.json + merges.txt"), (512, "tokenizer.json"), (8192, "vocab.json + merges.txt")]


def read_as(V: int, source: str) -> BPETokenizer:
    if source == "tokenizer.json":
        return tokenizer_from_json((REF_DIR / f"bpe{V}" / "tokenizer.json").read_text(encoding="utf-8"))
    return hf_bpe(V)


def first_difference(ours: np.ndarray, ref: np.ndarray) -> str:
    n = min(len(ours), len(ref))
    i = int(np.flatnonzero(ours[:n] != ref[:n])[0]) if (ours[:n] != ref[:n]).any() else n
    return f"{len(ours)} ids, Hugging Face {len(ref)}; first difference at {i}: ours {ours[i : i + 5]}, HF {ref[i : i + 5]}"


# ---- byte-level BPE against Hugging Face ----


def test_bytes_to_unicode():
    # encoder.py's mapping, spot-checked on what GPT-2's vocabulary shows: space "Ġ", newline "Ċ"
    m = bytes_to_unicode()
    assert (m[ord(" ")], m[ord("\n")], m[ord("a")], m[0], m[0xAD], m[0xFF]) == ("Ġ", "Ċ", "a", "Ā", "Ń", "ÿ")
    assert len(set(m.values())) == 256 and all(c.isprintable() for c in m.values())


@pytest.mark.parametrize(("V", "source"), SOURCES)
def test_corpus_token_for_token(corpus, V, source):
    tok = read_as(V, source)
    ours, ref = tok.encode(corpus), hf_corpus_ids(V)
    assert len(ours) == len(ref) and np.array_equal(ours, ref), first_difference(ours, ref)
    assert tok.decode(ours) == corpus


@pytest.mark.parametrize("V", VOCABS)
@pytest.mark.parametrize("i", range(len(HARD)), ids=lambda i: repr(HARD[i][:20]))
def test_hard_strings_token_for_token(V, i):
    ref = REFERENCE["hard"][str(V)][i]
    tok = hf_bpe(V)
    ids = tok.encode(ref["text"])
    assert ids.dtype == np.int64 and ids.tolist() == ref["ids"]
    assert tok.decode(ids) == ref["decoded"] == ref["text"]
    # each token alone: a lone byte of a multi-byte character is U+FFFD, as Hugging Face decodes it
    assert [tok.decode([i]) for i in ids] == ref["each"]


def test_tokenizer_json_reads_as_the_files():
    from_files, from_json = read_as(512, "vocab.json + merges.txt"), read_as(512, "tokenizer.json")
    assert from_files.vocab == from_json.vocab and from_files.merges == from_json.merges
    assert from_files.special_tokens == from_json.special_tokens == [ENDOFTEXT]
    for ref in REFERENCE["hard"]["512"]:
        assert from_json.encode(ref["text"]).tolist() == ref["ids"]


@pytest.mark.parametrize("V", VOCABS)
def test_invalid_utf8_decodes_as_hugging_face(V):
    # truncated, overlong and surrogate sequences, stray bytes, then random ids: never an error, and the
    # same U+FFFD replacements as Hugging Face's String::from_utf8_lossy
    tok = hf_bpe(V)
    for case in REFERENCE["decode"][str(V)]:
        assert tok.decode(case["ids"]) == case["decoded"], case["ids"]
    assert "\ufffd" in tok.decode([tok.vocab[BYTE_CHARS[0xC3]]])


def test_endoftext_is_one_token_and_decodes_back():
    tok = hf_bpe(512)
    assert tok.encode(ENDOFTEXT).tolist() == [0]
    assert tok.encode("a" + ENDOFTEXT + ENDOFTEXT + "b").tolist()[1:3] == [0, 0]
    assert tok.decode([0]) == ENDOFTEXT
    # not special without it in the vocabulary: plain text, cut by the pattern like any other
    plain = BPETokenizer({t: i for i, t in enumerate(sorted(BYTE_CHARS.values()))}, [])
    assert plain.special_tokens == [] and len(plain.encode(ENDOFTEXT)) == len(ENDOFTEXT)


def test_pattern_pieces():
    # encoder.py's pre-tokenization, by hand: contractions, one leading space, whitespace runs that give
    # their last space to the next word
    assert PATTERN.findall("I'm here  now\n\n 42x") == ["I", "'m", " here", " ", " now", "\n\n", " 42", "x"]
    assert PATTERN.findall("they're's   ") == ["they", "'re", "'s", "   "]


# ---- the trainer against Hugging Face's BpeTrainer ----


@pytest.mark.parametrize("V", VOCABS)
def test_trainer_writes_hugging_face_files(corpus, V, tmp_path):
    trained(corpus, V).save(tmp_path)
    for name in ("vocab.json", "merges.txt"):
        ours, hf = (tmp_path / name).read_bytes(), (REF_DIR / f"bpe{V}" / name).read_bytes()
        if ours != hf:
            ours_lines, hf_lines = ours.decode().split("\n"), hf.decode().split("\n")
            i = next((i for i, (a, b) in enumerate(zip(ours_lines, hf_lines)) if a != b), None)
            pytest.fail(
                f"{name} differs from Hugging Face's: line {i}: ours {ours_lines[i]!r}, HF {hf_lines[i]!r}"
            )


@pytest.mark.parametrize(
    "case",
    REFERENCE["trainer"],
    ids=lambda c: f"{c['text'][:12]!r}-V{c['vocab_size']}-min{c['min_frequency']}",
)
def test_trainer_matches_hugging_face(corpus, case, tmp_path):
    # the whole corpus until every piece is one token (ties at count 1 decide thousands of merges),
    # min_frequency 2, and small texts of few characters where most merges are ties
    text = corpus if case["text"] == "tinyshakespeare" else case["text"]
    tok = trained(text, case["vocab_size"], case["min_frequency"])
    assert tok.vocab_size == case["tokens"]
    tok.save(tmp_path)
    for name in ("vocab.json", "merges.txt"):
        data = (tmp_path / name).read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        assert (digest, len(data)) == (case[name]["sha256"], case[name]["bytes"]), (
            f"{name} is not Hugging Face's"
        )


@pytest.mark.parametrize("V", VOCABS)
def test_hugging_face_reads_our_files_as_we_do(corpus, V, tmp_path):
    # what GPT2TokenizerFast made of the files our trainer writes, against our tokenizer read back from them
    trained(corpus, V).save(tmp_path)
    tok = load_tokenizer(tmp_path)
    ref = REFERENCE["our_files"][str(V)]
    ids = tok.encode(corpus)
    assert len(ids) == ref["corpus"]["tokens"]
    assert hashlib.sha256(ids.astype("<u2").tobytes()).hexdigest() == ref["corpus"]["sha256"]
    assert [tok.encode(s).tolist() for s in HARD] == ref["hard"]


def test_trainer_ids_and_stopping():
    tok = BPETokenizer.train("abab abab ab", 260, progress=False)
    # <|endoftext|>, the 256 byte characters in code point order ("Ġ" is 221), then one id per merge
    assert (
        tok.id_to_token[:3] == [ENDOFTEXT, "!", '"'] and tok.id_to_token[256] == "Ń" and tok.vocab["Ġ"] == 221
    )
    # pieces "abab", " abab", " ab": (a, b) 5 times; then (Ġ, ab) and (ab, ab) 2 each: the smaller pair of
    # ids wins the tie, (221, 257) before (257, 257); then (ab, ab) and (Ġab, ab) once each: (257, 257)
    assert tok.merges == [("a", "b"), ("Ġ", "ab"), ("ab", "ab")] and tok.vocab_size == 260
    # stops early when no pair is left or the best is below min_frequency
    assert BPETokenizer.train("ab", 1000, progress=False).merges == [("a", "b")]
    assert BPETokenizer.train("ab ab cd", 1000, min_frequency=2, progress=False).merges == [("a", "b")]


# ---- round trips ----

WHITESPACE_HEAVY = st.text(
    alphabet=st.sampled_from(list(" \t\n\r\x0b\x0c\u00a0\u3000\u2028\u0085a'sé😀<|>endoftext"))
)
TEXT = st.one_of(
    st.text(), WHITESPACE_HEAVY, st.lists(st.sampled_from([ENDOFTEXT, " ", "a", "'s", "\n"])).map("".join)
)


@pytest.mark.parametrize("V", VOCABS)
@settings(max_examples=150, deadline=None)
@given(s=TEXT)
def test_bpe_round_trip(V, s):
    assert hf_bpe(V).decode(hf_bpe(V).encode(s)) == s


@settings(max_examples=40, deadline=None)
@given(text=st.text(min_size=1, max_size=200), s=TEXT)
def test_trained_bpe_round_trip(text, s):
    tok = BPETokenizer.train(text, 300, progress=False)
    assert tok.decode(tok.encode(s)) == s and tok.decode(tok.encode(text)) == text


@settings(max_examples=100, deadline=None)
@given(s=TEXT)
def test_char_and_word_round_trip(s):
    char = CharTokenizer.from_text(s)
    assert char.decode(char.encode(s)) == s
    word = WordTokenizer.train(s, 10_000)
    assert word.decode(word.encode(s)) == s


# ---- the word tokenizer ----


def test_word_tokenizer_by_hand():
    text = "the cat and the hat. The cat!"
    tok = WordTokenizer.train(text, 6)
    # pieces: the, " ", cat, " ", and, " ", the, " ", hat, ". ", The, " ", cat, "!"
    # " " 5 times, the 2, cat 2, then and, hat, ". " once each: ties in order of first appearance
    assert tok.words == ["<unk>", " ", "the", "cat", "and", "hat"] and tok.vocab_size == 6
    assert tok.encode("the hat. The dog").tolist() == [2, 1, 5, 0, 0, 1, 0]
    assert tok.decode([2, 1, 5, 0, 0, 1, 0]) == "the hat<unk><unk> <unk>"
    assert WordTokenizer.train("", 5).vocab_size == 1 and WordTokenizer.train("a b", 100).vocab_size == 4


def test_word_tokenizer_is_re_split(corpus):
    tok = WordTokenizer.train(corpus, 5000)
    pieces = [p for p in re.split(r"\b", corpus) if p]
    ids = tok.encode(corpus)
    assert len(ids) == len(pieces)
    assert [tok.words[i] if i else p for i, p in zip(ids.tolist(), pieces)] == pieces
    assert all(i == 0 for i, p in zip(ids.tolist(), pieces) if p not in tok.stoi)
    everything = WordTokenizer.train(corpus, 1_000_000)
    assert everything.decode(everything.encode(corpus)) == corpus


# ---- JSON and folders ----


def all_kinds():
    return [
        CharTokenizer.from_text('quote " and backslash \\ and é'),
        WordTokenizer.train("one two two three three three é\n", 4),
        hf_bpe(512),
    ]


@pytest.mark.parametrize("i", range(3), ids=["char", "word", "bpe"])
def test_json_round_trip(i):
    tok = all_kinds()[i]
    s = "three two 'é' <|endoftext|> one" if tok.kind != "char" else 'and " é'
    for back in (type(tok).from_json(tok.to_json()), tokenizer_from_json(tok.to_json())):
        assert type(back) is type(tok) and back.kind == tok.kind and back.vocab_size == tok.vocab_size
        assert back.encode(s).tolist() == tok.encode(s).tolist()
        assert back.decode(range(tok.vocab_size)) == tok.decode(range(tok.vocab_size))


def test_char_json_is_what_checkpoints_always_held():
    tok = CharTokenizer("abc\n")
    assert tok.to_json() == json.dumps("abc\n")
    assert tokenizer_from_json('"abc\\n"').chars == "abc\n"


@pytest.mark.parametrize("i", range(3), ids=["char", "word", "bpe"])
def test_save_load_round_trip(i, tmp_path):
    tok = all_kinds()[i]
    tok.save(tmp_path)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == (["merges.txt", "vocab.json"] if tok.kind == "bpe" else ["tokenizer.json"])
    if tok.kind != "bpe":
        assert json.loads((tmp_path / "tokenizer.json").read_text(encoding="utf-8"))["kind"] == tok.kind
    back = load_tokenizer(tmp_path)
    assert type(back) is type(tok) and back.decode(range(tok.vocab_size)) == tok.decode(range(tok.vocab_size))


@pytest.mark.parametrize("i", range(3), ids=["char", "word", "bpe"])
def test_load_reads_to_json_text(i, tmp_path):
    # a token folder's tokenizer.json is the tokenizer's to_json() (shared/data.py), a bare string for char
    tok = all_kinds()[i]
    (tmp_path / "tokenizer.json").write_text(tok.to_json(), encoding="utf-8")
    back = load_tokenizer(tmp_path)
    assert type(back) is type(tok) and back.decode(range(tok.vocab_size)) == tok.decode(range(tok.vocab_size))


def test_load_prefers_tokenizer_json(tmp_path):
    # a Hugging Face download holds tokenizer.json beside vocab.json + merges.txt: tokenizer.json is read
    shutil.copytree(REF_DIR / "bpe512", tmp_path, dirs_exist_ok=True)
    (tmp_path / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")  # no merges: would differ
    assert load_tokenizer(tmp_path).merges == hf_bpe(512).merges


def test_tokenizer_json_options(tmp_path):
    # transformers' GPT2TokenizerFast saves a template of the text alone: it adds nothing, so it is read
    template = {"type": "TemplateProcessing", "single": [{"Sequence": {"id": "A", "type_id": 0}}], "pair": []}
    assert tokenizer_from_json(hf_json(post_processor=template)).merges == hf_bpe(512).merges
    # ignore_merges: a piece that is a token is that token, whatever the merges would make of it. Here the
    # merges make "abc" into "a" "bc"; with ignore_merges it is "abc", while " abc" ("Ġabc", not a token)
    # still goes through the merges (what Hugging Face gives, too)
    vocab = BYTES | {"bc": 256, "ab": 257, "abc": 258}
    merges = [["b", "c"], ["a", "b"], ["ab", "c"]]
    for ignore, ids in [(False, [64, 256, 220, 64, 256]), (True, [258, 220, 64, 256])]:
        text = hf_json(model__vocab=vocab, model__merges=merges, model__ignore_merges=ignore, added_tokens=[])
        assert tokenizer_from_json(text).encode("abc abc").tolist() == ids


# ---- bad input ----


def bpe_files(folder: Path, vocab, merges: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    vocab_text = vocab if isinstance(vocab, str) else json.dumps(vocab)
    (folder / "vocab.json").write_text(vocab_text, encoding="utf-8")
    (folder / "merges.txt").write_text(merges, encoding="utf-8")
    return folder


BYTES = {c: i for i, c in enumerate(sorted(BYTE_CHARS.values()))}
GOOD_VOCAB = BYTES | {"ab": 256}


@pytest.mark.parametrize(
    ("vocab", "merges", "error"),
    [
        (
            GOOD_VOCAB,
            "#version: 0.2\na b\nx zz\n",
            r"merges.txt: merge 2 \(x zz\) names 'zz', which is not in the vocabulary",
        ),
        (GOOD_VOCAB, "a b\nb a\n", r"merges.txt: merge 2 \(b a\) makes 'ba', which is not in the vocabulary"),
        (
            BYTES | {"ab": 257},
            "a b\n",
            r"vocab.json: the ids must be 0..256, each once, but id 256 is missing",
        ),
        (
            BYTES | {"ab": 3},
            "a b\n",
            r"vocab.json: the ids must be 0..256, each once, but id 3 is given twice",
        ),
        ('{"a": 0,', "", r"vocab.json: not valid JSON"),
        (["a"], "", r"vocab.json: the vocabulary must be a JSON object of token -> integer id"),
        ({"a": "0"}, "", r"vocab.json: the vocabulary must be a JSON object"),
        (GOOD_VOCAB, "a b\nab\n", r"merges.txt line 2: 'ab' is not a merge"),
        (GOOD_VOCAB, "a  b\n", r"merges.txt line 1: 'a  b' is not a merge"),
    ],
)
def test_bad_bpe_files(tmp_path, vocab, merges, error):
    folder = bpe_files(tmp_path / "tok", vocab, merges)
    with pytest.raises(InputError, match=error):
        load_tokenizer(folder)


def test_missing_files(tmp_path):
    with pytest.raises(InputError, match=r"nowhere: no such folder"):
        load_tokenizer(tmp_path / "nowhere")
    with pytest.raises(InputError, match=r"holds no tokenizer.json, nor vocab.json and merges.txt"):
        load_tokenizer(tmp_path)
    (tmp_path / "vocab.json").write_text(json.dumps(GOOD_VOCAB), encoding="utf-8")
    with pytest.raises(InputError, match=r"merges.txt: no such file"):
        load_tokenizer(tmp_path)
    (tmp_path / "merges.txt").write_bytes(b"a b\n\xff\n")
    with pytest.raises(InputError, match=r"merges.txt: not UTF-8 text"):
        load_tokenizer(tmp_path)


def hf_json(**changes) -> str:
    d = json.loads((REF_DIR / "bpe512" / "tokenizer.json").read_text(encoding="utf-8"))
    for path, value in changes.items():
        *outer, key = path.split("__")
        target = d
        for k in outer:
            target = target[k]
        target[key] = value
    return json.dumps(d)


BOS_TEMPLATE = [{"SpecialToken": {"id": ENDOFTEXT, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}]


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('{"model": ', r"tokenizer.json: not valid JSON \(Expecting value at line 1 column 11\)"),
        ("{}", r"tokenizer.json: neither a tokenizer of ours \(no 'kind'\) nor Hugging Face's"),
        ("[1, 2]", r"neither a tokenizer of ours"),
        ('{"kind": "sentencepiece"}', r"unknown tokenizer kind 'sentencepiece' \(known: char, bpe, word\)"),
        ('{"kind": "word", "words": "abc"}', r"a word tokenizer needs a 'words' list"),
        ('{"kind": "word", "words": ["a", "a"]}', r"distinct"),
        ('{"kind": "char", "chars": 5}', r"a char tokenizer is a JSON string"),
        ('{"kind": "bpe", "vocab": {}}', r"a bpe tokenizer needs a 'vocab' object and a 'merges' list"),
        (hf_json(model__type="WordPiece"), r"tokenizer.json: the model is 'WordPiece', not BPE"),
        (hf_json(pre_tokenizer={"type": "Metaspace"}), r"the pre-tokenizer must be GPT-2's"),
        (hf_json(pre_tokenizer__add_prefix_space=True), r"the pre-tokenizer must be GPT-2's"),
        (hf_json(normalizer={"type": "NFC"}), r"a normalizer is not supported"),
        (hf_json(post_processor={"type": "BertProcessing"}), r"a post-processor that adds tokens"),
        (hf_json(post_processor={"type": "TemplateProcessing", "single": BOS_TEMPLATE}), r"adds tokens"),
        (hf_json(model__continuing_subword_prefix="##"), r"continuing_subword_prefix '##' is not supported"),
        (
            hf_json(model__merges=[["Ġ", "zz"]]),
            r"merge 1 \(Ġ zz\) names 'zz', which is not in the vocabulary",
        ),
        (
            hf_json(added_tokens=[{"id": 0, "content": ENDOFTEXT, "lstrip": True}]),
            r"lstrip, rstrip, single_word",
        ),
        (hf_json(added_tokens=[{"id": 5, "content": ENDOFTEXT}]), r"has id 5, the model 0"),
    ],
)
def test_bad_tokenizer_json(tmp_path, text, error):
    (tmp_path / "tokenizer.json").write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match=error):
        load_tokenizer(tmp_path)


@pytest.mark.parametrize("i", range(3), ids=["char", "word", "bpe"])
@pytest.mark.parametrize("bad", [-1, "V", 10**9])
def test_decode_out_of_range(i, bad):
    tok = all_kinds()[i]
    bad = tok.vocab_size if bad == "V" else bad
    with pytest.raises(InputError, match=rf"token id {bad} outside \[0, {tok.vocab_size}\)"):
        tok.decode([0, bad])


def test_bad_encode_and_train_arguments():
    with pytest.raises(InputError, match=r"lone surrogate"):
        hf_bpe(512).encode("a\ud800b")
    no_a = {c: i for i, c in enumerate(c for c in sorted(BYTE_CHARS.values()) if c != "a")}
    with pytest.raises(InputError, match=r"byte 0x61 of 'cat' has no token"):
        BPETokenizer(no_a, []).encode("cat")
    with pytest.raises(InputError, match=r"vocab_size must be an int >= 257"):
        BPETokenizer.train("abc", 256)
    with pytest.raises(InputError, match=r"vocab_size must be an int >= 1"):
        WordTokenizer.train("abc", 0)
    with pytest.raises(InputError, match=r"'<unk>' is the unknown token"):
        WordTokenizer(["a", "<unk>"])
    with pytest.raises(InputError, match=r"special token 'xyz' is not in the vocabulary"):
        BPETokenizer(BYTES, [], ["xyz"])


def test_save_refuses_what_the_files_cannot_hold(tmp_path):
    tok = BPETokenizer(BYTES | {"<pad>": 256}, [], ["<pad>"])
    with pytest.raises(InputError, match=r"cannot say which tokens are special"):
        tok.save(tmp_path)
    assert tokenizer_from_json(tok.to_json()).special_tokens == ["<pad>"]
