# Proof that the suite catches bugs: realistic bugs, each a small edit to the numpy tier's source, must
# fail the conformance measurement and be named, first, by the divergence finder at the tensor where
# they live, against the outside truth. A bug goes into a copy of the tier (a "mutant" package written
# to a temporary folder), registered as a tier of its own. `python -m conformance.mutate` does the same
# for every tier and the shared code, through the whole fast suite.
import importlib
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import impl_numpy
from conformance import diff, mutate
from conformance.cases import CASES, measure, measure_optimizer, write_checkpoint
from conformance.golden import truth
from conformance.tiers import TIERS
from impl_numpy.engine import _accumulate, _result
from shared.activations import activation_names
from shared.params import param_shapes

CASE = "tiny-B2-T16"


def erf(x):
    """erf as a primitive of the numpy tier's engine, which has none (GPT-2's GELU needs only tanh)."""
    out = np.vectorize(math.erf, otypes=[x.dtype])(x.data)

    def backward(g):
        _accumulate(x, g * ((2.0 / math.sqrt(math.pi)) * np.exp(-(x.data * x.data))))

    return _result(out, (x,), backward)


@dataclass
class Bug:
    file: str  # in impl_numpy/
    old: str  # the right code, found exactly once in the file
    new: str  # the bug
    quantity: str  # the conformance measurement (cases.py) that must fail
    located: tuple[str, str]  # (section, tensor): the divergence finder's first row beyond its bound


def planted(name: str, quantity: str, located: tuple[str, str]) -> Bug:
    """One of conformance.mutate's numpy bugs, with where the finder must locate it."""
    bug = mutate.BUGS[name]
    assert bug.tier == "numpy"
    return Bug(Path(bug.file).name, bug.old, bug.new, quantity, located)


BUGS = {
    "erf-GELU in place of tanh-GELU": Bug(
        "model.py",
        "return x * (0.5 + 0.5 * inner.tanh())",
        "return x * (0.5 + 0.5 * erf(x * (1.0 / math.sqrt(2.0))))",
        "activations",
        ("activation", "h.0.mlp.gelu"),
    ),
    "LayerNorm eps 1e-6": planted("numpy-layernorm-eps", "activations", ("activation", "h.0.ln_1")),
    "missing 1/sqrt(head size)": planted("numpy-no-scale", "activations", ("activation", "h.0.attn.att")),
    "causal mask off by one (each query sees the next key)": planted(
        "numpy-mask-off-by-one", "activations", ("activation", "h.0.attn.att")
    ),
    "weight decay applied to biases": Bug(
        "optim.py",
        "if is_decayed(name, p.shape):",
        "if is_decayed(name, p.shape) or name.endswith('.bias'):",
        "adamw",
        ("param", "h.0.ln_1.bias"),
    ),
    "Adam bias correction missing": planted("numpy-bias-correction", "adamw", ("param", "wte.weight")),
    "gradient clipping after the update": planted(
        "numpy-clip-after-update", "adamw", ("param", "wte.weight")
    ),
}


def write_mutant(folder: Path, name: str, bug: Bug | None) -> None:
    """A copy of impl_numpy as the package `name` in `folder`, with the bug's edit made. The engine is
    not copied (no bug lives there): the copy imports impl_numpy.engine."""
    source = Path(impl_numpy.__file__).parent
    modules = [f.stem for f in source.glob("*.py") if f.stem not in ("__init__", "engine")]
    (folder / name).mkdir()
    for f in source.glob("*.py"):
        if f.name == "engine.py":
            continue
        text = f.read_text()
        for m in modules:
            text = text.replace(f"impl_numpy.{m}", f"{name}.{m}")
        if bug is not None and f.name == bug.file:
            assert text.count(bug.old) == 1, f"impl_numpy/{bug.file} changed: update this bug's edit"
            text = text.replace(bug.old, bug.new)
        (folder / name / f.name).write_text(text)


@pytest.fixture
def mutant(tmp_path, monkeypatch):
    """make(bug) -> the name of a tier registered in TIERS: a copy of the numpy tier in float32 with the
    bug (None: no bug), importable by that name."""
    made = []

    def make(bug: Bug | None) -> str:
        name = f"mutant_numpy_{len(made)}"
        write_mutant(tmp_path, name, bug)
        monkeypatch.syspath_prepend(str(tmp_path))
        importlib.invalidate_caches()
        module = importlib.import_module(name)
        module.model.erf = erf  # the erf-GELU bug calls it
        monkeypatch.setitem(TIERS, name, (name, np.float32))
        made.append(name)
        return name

    yield make
    for name in made:
        for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
            del sys.modules[key]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_checkpoint(CASE, tmp_path_factory.mktemp("bugs"))


def exceeds(rows) -> list[str]:
    return [name for name, err, bound in rows if not err <= bound]


@pytest.mark.parametrize("what", list(BUGS))
def test_bug_is_caught_and_located(what, mutant, checkpoint):
    bug = BUGS[what]
    tier = mutant(bug)
    if bug.quantity == "adamw":  # the optimizer case on CASE's gradients, clipping engaged
        rows = measure_optimizer(tier, "clip-above", checkpoint)
    else:
        rows = measure(bug.quantity, tier, CASE, checkpoint)
    assert exceeds(rows), f"{what}: the suite does not catch it"
    idx, targets = truth(CASE)["idx"], truth(CASE)["targets"]
    rows = diff.diverge({tier: TIERS[tier]}, checkpoint, idx, targets, diff.truth_results(CASE))
    first = diff.first_divergence(rows)[tier]
    assert first is not None, f"{what}: the divergence finder finds nothing"
    assert (first.section, first.tensor) == bug.located, diff.summary(tier, first)


@pytest.mark.parametrize("tier", [*TIERS, "unedited copy"])
def test_no_bug_no_divergence(tier, mutant, checkpoint):
    # every registered tier, and the copy of the numpy tier with no edit (what the bugs break, the copy
    # had right), within every bound
    if tier == "unedited copy":
        tier = mutant(None)
    idx, targets = truth(CASE)["idx"], truth(CASE)["targets"]
    rows = diff.diverge({tier: TIERS[tier]}, checkpoint, idx, targets, diff.truth_results(CASE))
    first = diff.first_divergence(rows)[tier]
    assert first is None, diff.summary(tier, first)


def test_command_line_names_the_first_divergence(mutant, tmp_path, capsys):
    # a tier given as a module, the table, the JSON and a self-contained HTML page
    tier = mutant(BUGS["LayerNorm eps 1e-6"])
    out_json, out_html = tmp_path / "diff.json", tmp_path / "diff.html"
    argv = ["--tiers", "numpy", "--tier-module", tier, "--json", str(out_json), "--html", str(out_html)]
    assert diff.main(argv) == 1
    text = capsys.readouterr().out
    assert f"first divergence: {tier}: activation h.0.ln_1: error" in text
    assert "first divergence: numpy: none" in text
    assert [line.split()[0] for line in text.splitlines() if line.rstrip().endswith("FIRST")] == ["h.0.ln_1"]
    report = json.loads(out_json.read_text())
    assert report["first_divergence"] == {
        "numpy": None,
        tier: {"section": "activation", "tensor": "h.0.ln_1"},
    }
    config = CASES[CASE].config  # the command line's default case
    assert len(report["rows"]) == len(activation_names(config)) + 1 + 4 * len(param_shapes(config))
    page = out_html.read_text()
    assert "First divergence: activation h.0.ln_1" in page
    assert "<script" not in page and "http" not in page  # self-contained
    assert diff.main(["--tiers", "numpy", "c"]) == 0
