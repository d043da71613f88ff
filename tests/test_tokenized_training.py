# Training on GPT-2's byte-level BPE and on words, from text and from token files, in every tier; the
# checkpoint carries its tokenizer, so sample, eval and attention decode; bits per character put the
# three kinds on one scale; mistakes on the command line are one line each.
import math

import numpy as np
import pytest

import transformer
from shared.checkpoint import load_checkpoint
from shared.data import ENV_VAR, CharDataset
from shared.tokenizer import CharTokenizer, WordTokenizer, tokenizer_from_json

SMALL = ["--config", "tiny", "--batch-size", "2", "--steps", "3", "--eval-interval", "2", "--eval-iters", "1"]
SMALL += ["--final-eval-iters", "2", "--sample-tokens", "8"]


@pytest.fixture
def corpus_env(monkeypatch, corpus_path):
    monkeypatch.setenv(ENV_VAR, str(corpus_path))  # the copy the tests found, for the command line's loader


@pytest.mark.parametrize("impl", list(transformer.TIERS))
@pytest.mark.parametrize("kind", ["bpe", "word"])
def test_train_sample_eval_with_a_learned_tokenizer(tmp_path, capsys, corpus_env, impl, kind):
    args = ["--impl", impl, *SMALL, "--tokenizer", kind, "--vocab-size", "300", "--out", str(tmp_path)]
    assert transformer.main(args) == 0
    out = capsys.readouterr().out
    assert f"{kind} tokenizer" in out and "bits per character" in out
    ckpt = tmp_path / f"tiny-{impl}.safetensors"
    c = load_checkpoint(ckpt)
    tok = tokenizer_from_json(c.metadata["tokenizer"])
    assert tok.kind == kind and tok.vocab_size == c.config.vocab_size == 300
    use = ["--impl", impl, "--ckpt", str(ckpt)]
    # (a word model has "ROMEO" and ":\n" but not ":" alone, which would decode as <unk>)
    assert transformer.main(["sample", *use, "--tokens", "5", "--prompt", "ROMEO"]) == 0
    assert capsys.readouterr().out.startswith("ROMEO")
    assert transformer.main(["eval", *use, "--iters", "1", "--batch-size", "2"]) == 0
    assert "bits per character" in capsys.readouterr().out


def test_prepare_then_train_from_token_files(tmp_path, capsys, corpus_env):
    data = tmp_path / "data"
    assert transformer.main(["prepare", "--tokenizer", "bpe", "--vocab-size", "300", "--out", str(data)]) == 0
    assert "train with: python transformer.py --tokens" in capsys.readouterr().out
    assert transformer.main(["--impl", "c", *SMALL, "--tokens", str(data), "--out", str(tmp_path)]) == 0
    assert "(token files)" in capsys.readouterr().out
    ckpt = tmp_path / "tiny-c.safetensors"
    assert tokenizer_from_json(load_checkpoint(ckpt).metadata["tokenizer"]).kind == "bpe"
    # resumed from the same token files, and refused with another tokenizer's
    assert transformer.main(["--resume", str(ckpt), "--steps", "4", "--tokens", str(data)]) == 0
    other = tmp_path / "other"
    assert transformer.main(["prepare", "--out", str(other)]) == 0
    capsys.readouterr()
    assert transformer.main(["--resume", str(ckpt), "--steps", "5", "--tokens", str(other)]) == 2
    assert "not the one the checkpoint was trained with" in capsys.readouterr().err


def test_eval_text_counts_every_token_once(tmp_path, capsys, corpus_env):
    # the perplexity of a file against the mean loss computed by hand over the same windows
    assert transformer.main(["--impl", "numpy", *SMALL, "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    text = "First Citizen:\nBefore we proceed any further, hear me speak.\n" * 3
    (tmp_path / "t.txt").write_text(text)
    ckpt = str(tmp_path / "tiny-numpy.safetensors")
    args = ["eval", "--impl", "numpy", "--ckpt", ckpt, "--text", str(tmp_path / "t.txt"), "--batch-size", "3"]
    assert transformer.main(args) == 0
    out = capsys.readouterr().out
    import impl_numpy

    model, tok = impl_numpy.load(ckpt), tokenizer_from_json(load_checkpoint(ckpt).metadata["tokenizer"])
    ids, T = tok.encode(text), model.config.block_size
    losses = []
    for i in range(0, len(ids) - 1, T):
        w = ids[i : i + T + 1]
        _, loss = model.forward(w[None, :-1], w[None, 1:])
        losses += [loss] * (len(w) - 1)
    assert f"{len(ids) - 1:,} predicted" in out
    assert f"perplexity {math.exp(np.mean(losses)):.2f}" in out


def test_bits_per_character_are_exact_for_a_split_text():
    text = "abc abd, abe!\n" * 50
    for tok in (CharTokenizer.from_text(text), WordTokenizer.train(text, 5)):
        ds = CharDataset(text, tok)
        assert ds.chars("train") + ds.chars("val") == len(text)
        assert ds.chars("train") == int(0.9 * len(text))
    assert transformer.bits_per_char(math.log(2), 10, 10) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--tokenizer", "bpe"], "--tokenizer bpe needs --vocab-size"),
        (["--tokenizer", "char", "--vocab-size", "100"], "--vocab-size is for --tokenizer bpe or word"),
        (["--tokenizer", "bpe", "--vocab-size", "100"], "vocab"),
        (["--tokens", "no/such/folder"], "no such folder"),
    ],
)
def test_tokenizer_mistakes_are_one_line(tmp_path, capsys, corpus_env, args, message):
    assert transformer.main([*SMALL, *args, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not list(tmp_path.iterdir())  # nothing written


def test_sample_refuses_a_tokenizer_larger_than_the_model(tmp_path, capsys):
    import shutil

    from conformance.golden import BPE_DIR

    folder = tmp_path / "gpt2"
    shutil.copytree(BPE_DIR, folder)
    for name in ("tokenizer.json", "vocab.json", "merges.txt"):
        (folder / name).unlink()
    (folder / "tokenizer.json").write_text(CharTokenizer("".join(map(chr, range(600, 1200)))).to_json())
    assert transformer.main(["sample", "--ckpt", str(folder), "--prompt", "x"]) == 2
    assert "the model's vocab_size is only 512" in capsys.readouterr().err
