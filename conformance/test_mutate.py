# The mutation tool (conformance/mutate.py) stays usable: every bug still edits today's code, the list
# covers every tier and the shared code, the blame it reports follows the rule it states, and the
# premise of running the tinygrad tier's tests only for its own and the shared code's bugs holds (no
# tier imports another). CI runs a handful of the bugs themselves (`python -m conformance.mutate --ci`
# in .ci/run); the full table is in the README.
import ast

import pytest

from conformance.mutate import BUGS, CI_BUGS, EVERY_TIER, ROOT, Bug, Outcome

TIER_PACKAGES = {"numpy": "impl_numpy", "c": "impl_c", "tinygrad": "impl_tinygrad"}


@pytest.mark.parametrize("name", list(BUGS))
def test_every_bug_edits_today_s_code(name):
    bug = BUGS[name]
    text = (ROOT / bug.file).read_text()
    assert text.count(bug.old) == 1, f"{name}: {bug.file} changed; update the bug's edit"
    assert bug.new != bug.old
    if bug.tier in TIER_PACKAGES:
        assert bug.file.startswith(TIER_PACKAGES[bug.tier] + "/"), (
            f"{name}: a {bug.tier} bug outside its tier"
        )
    else:
        assert bug.file.startswith("shared/")


def test_bugs_cover_every_tier_and_the_listed_kinds():
    assert len(BUGS) >= 30
    assert {b.tier for b in BUGS.values()} == {*EVERY_TIER, "shared"}
    for kind in ("softmax-no-max", "mask-off-by-one", "clip-scales-up", "bias-correction", "head-untied"):
        assert all(f"{t}-{kind}" in BUGS for t in EVERY_TIER), kind
    assert set(CI_BUGS) <= set(BUGS) and {BUGS[n].tier for n in CI_BUGS} == {*EVERY_TIER, "shared"}


def _imports(package: str) -> set[str]:
    found = set()
    for path in (ROOT / package).glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("tier", EVERY_TIER)
def test_no_tier_imports_another(tier):
    others = {p for t, p in TIER_PACKAGES.items() if t != tier}
    assert not _imports(TIER_PACKAGES[tier]) & others


def _outcome(tier: str, failures) -> Outcome:
    bug = Bug(tier, "shared/params.py" if tier == "shared" else "x", "a", "b", "a bug")
    rows = [
        {"test": f"t{k}", "tier": t, "ambiguous": amb, "message": ""} for k, (t, amb) in enumerate(failures)
    ]
    return Outcome("bug", bug, rows, 0, 0.0)


def test_blame_follows_the_stated_rule():
    assert _outcome("c", [("c", False)]).right
    assert not _outcome("c", [("c", False), ("numpy", False)]).right  # a bug in C must not fail numpy
    assert _outcome("c", [("c", False), ("c", True)]).right  # the property tests: ambiguous, not counted
    assert _outcome("numpy", [("c", True)]).blamed == {"c or numpy"}
    assert not _outcome("numpy", [("c", True)]).right
    assert not _outcome("numpy", []).caught
    assert _outcome("shared", [("shared", False), ("numpy", False)]).right
    assert _outcome("shared", [(t, False) for t in EVERY_TIER]).right
    assert not _outcome("shared", [("numpy", False)]).right
