# The words question (experiments/words.py): the arithmetic that puts a char, a BPE and a word model on
# one scale (bits per character, the <unk>'s spelling charge, tokens per character, every validation
# token scored once), checked on hand-made examples, and the command writing its figure and numbers.
# The command's short form is cheap as it is: the BPE trainer learns 1,024 tokens from the 1M
# characters in about half a second, and --steps 2 trains each model for two steps.
import json
import math
from types import SimpleNamespace

import matplotlib.image
import numpy as np
import pytest

import transformer
from experiments.words import measure, spelling_cost, spelling_costs, split_loss, unk_charges, window_charge
from shared.data import CharDataset, estimate_loss
from shared.tokenizer import CharTokenizer, WordTokenizer

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class MeanTarget:
    """A stand-in model whose loss on a batch is the mean of its target ids, and which records what it
    was asked: on data = 0, 1, 2, ... a loss is an average of positions."""

    def __init__(self, block_size: int):
        self.config = SimpleNamespace(block_size=block_size)
        self.batches = []

    def forward(self, x, y):
        self.batches.append((x, y))
        return None, float(np.mean(y))


@pytest.mark.parametrize("n", [2, 9, 64, 65, 1000, 1001])
def test_every_token_but_the_first_is_predicted_once_from_the_one_before(n):
    model = MeanTarget(block_size=8)
    loss = split_loss(model, np.arange(n), batch_size=3)
    targets = np.concatenate([y.ravel() for _, y in model.batches])
    assert targets.tolist() == list(range(1, n))  # in order, none twice, none left out
    for x, y in model.batches:
        assert x.shape == y.shape and x.shape[1] <= 8 and (x == y - 1).all()
    assert loss == pytest.approx(n / 2)  # the mean of 1 .. n-1: batches weighted by their tokens


@pytest.mark.parametrize("split, offset", [("train", 1), ("val", 2)])  # train_variant's seeds
def test_the_loss_during_training_and_the_charge_see_the_same_windows(split, offset):
    s = SimpleNamespace(batch_size=5, seed=11, eval_iters=4)
    positions = np.arange(500)
    expected = estimate_loss(MeanTarget(16), positions, s.batch_size, s.eval_iters, s.seed + offset)
    assert window_charge(positions.astype(float), s, 16, split) == pytest.approx(expected)


def test_the_spelling_model_is_a_distribution_with_an_end_symbol():
    # "ab a" splits into "ab", " ", "a": 4 characters and 3 ends; add-one over the alphabet " abc" gives
    # q(a) = 3/11, q(b) = 2/11, q(" ") = 2/11, q(c) = 1/11 (never seen) and q(end) = 3/11
    costs = spelling_costs("ab a", " abc")
    chars, end = costs
    assert {c: math.exp(-v) * 11 for c, v in chars.items()} == pytest.approx({"a": 3, "b": 2, " ": 2, "c": 1})
    assert math.exp(-end) == pytest.approx(3 / 11)
    assert sum(math.exp(-v) for v in chars.values()) + math.exp(-end) == pytest.approx(1.0)
    assert spelling_cost("ca", costs) == pytest.approx(math.log(11) + 2 * math.log(11 / 3))


def test_only_unk_tokens_are_charged_and_each_its_own_word():
    costs = spelling_costs("the cat the dog", " acdeghostw")
    words = WordTokenizer.train("the cat the dog", 3)  # " " and "the", and <unk>
    text = "the cow sat"
    ids = words.encode(text)
    assert ids.tolist() == [2, 1, 0, 1, 0]
    charges = unk_charges(words, ids, text, costs)
    assert charges.tolist() == pytest.approx(
        [0, 0, spelling_cost("cow", costs), 0, spelling_cost("sat", costs)]
    )
    assert charges[2] != charges[4]
    chars = CharTokenizer.from_text(text)
    assert not unk_charges(chars, chars.encode(text), text, costs).any()  # no <unk> by character


def test_bits_per_character_with_and_without_the_unk_charge():
    # trained on "ab, " x 90, validated on "cd, " x 10: 40 characters, 20 tokens (cd, ", ", ...), 19 of
    # them predicted, of which the 9 "cd" after the first are <unk>
    text = "ab, " * 90 + "cd, " * 10
    dataset = CharDataset(text, WordTokenizer.train(text[:360], 3))
    costs = spelling_costs(text[:360], CharTokenizer.from_text(text).chars)
    cd = 2 * math.log(546) + math.log(546 / 180)  # 360 characters + 6 + 180 ends = 546; "cd": c, d, end
    assert spelling_cost("cd", costs) == pytest.approx(cd)
    model = SimpleNamespace(config=SimpleNamespace(block_size=4), forward=lambda x, y: (None, 1.0))
    m = measure(model, dataset, unk_charges(dataset.tokenizer, dataset.val, text[360:], costs))
    assert m["tokens_per_char"] == 0.5 and m["context_chars"] == 8.0
    assert m["unk_share"] == pytest.approx(9 / 19)
    # every predicted token costs 1 nat, each <unk> cd more: bits over the 40 characters
    assert m["val_loss"] == pytest.approx(1.0)
    assert m["bits_per_char"] == pytest.approx(19 / 40 / math.log(2))
    assert m["fair_bits_per_char"] == pytest.approx((19 + 9 * cd) / 40 / math.log(2))


def test_question_command_writes_its_figure_and_data(tmp_path, capsys):
    argv = ["question", "words", "--impl", "c", "--steps", "2", "--out", str(tmp_path)]
    assert transformer.main(argv) == 0
    path = tmp_path / "questions-words.png"
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    assert matplotlib.image.imread(path).shape[1] > 1000
    runs = json.loads((tmp_path / "questions-words.json").read_text())["runs"]
    assert [r["vocab_size"] for r in runs.values()] == [65, 1024, 4096, 12672]
    assert [r["kind"] for r in runs.values()] == ["char", "bpe", "word", "word"]
    for r in runs.values():
        assert r["curves"]["step"] == [0, 2] and np.isfinite(r["fair_bits_per_char"])
        assert (r["unk_share"] > 0) == (r["kind"] == "word")
        assert (r["fair_bits_per_char"] > r["bits_per_char"]) == (r["kind"] == "word")
    assert runs["char"]["tokens_per_char"] == 1.0
    out = capsys.readouterr().out
    assert str(path) in out and "--- word 4096: sample" in out
