# `pytest conformance --tier-module MODULE` (conformance/conftest.py), as the README's worked example
# runs it: a copy of the numpy tier passes the suite under its own name, the same copy with one line
# broken fails it (and the finder names the layer), and a module that is not a tier is one clear line.
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import impl_numpy
from conformance.mutate import ROOT

SUITE = ["conformance/test_conformance.py", "-k", "tiny-B2-T16 or odd-B1-T1 or clip"]


def copy_numpy_tier(folder: Path, name: str = "mytier") -> Path:
    dest = folder / name
    shutil.copytree(Path(impl_numpy.__file__).parent, dest, ignore=shutil.ignore_patterns("__pycache__"))
    for f in dest.glob("*.py"):
        f.write_text(f.read_text().replace("impl_numpy.", f"{name}."))
    return dest


def run(args, folder: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(folder), str(ROOT)])}
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=600
    )


@pytest.fixture(scope="module")
def own_tier(tmp_path_factory):
    folder = tmp_path_factory.mktemp("own-tier")
    copy_numpy_tier(folder)
    return folder


def pytest_args(*extra):
    return ["-m", "pytest", *SUITE, "-q", "-p", "no:cacheprovider", *extra]


def test_a_copied_tier_passes_and_only_it_runs(own_tier):
    r = run(pytest_args("--tier-module", "mytier", "-rA"), own_tier)
    assert r.returncode == 0, r.stdout[-3000:]
    passed = [line for line in r.stdout.splitlines() if line.startswith("PASSED")]
    assert passed and all("mytier" in line or "truth" in line for line in passed), passed[:5]
    assert not any(f"[{t}-" in line for line in passed for t in ("numpy", "c", "tinygrad"))


def test_a_broken_copy_fails_and_the_finder_names_the_layer(tmp_path):
    tier = copy_numpy_tier(tmp_path, "brokentier")
    model = tier / "model.py"
    model.write_text(model.read_text().replace("eps=1e-5", "eps=1e-6"))
    r = run(pytest_args("--tier-module", "brokentier"), tmp_path)
    assert r.returncode == 1
    assert (
        "FAILED conformance/test_conformance.py::test_against_truth[brokentier-activations-tiny-B2-T16]"
        in r.stdout
    )
    r = run(["-m", "conformance.diff", "--tier-module", "brokentier"], tmp_path)
    assert r.returncode == 1
    assert "first divergence: brokentier: activation h.0.ln_1:" in r.stdout


def test_a_module_that_is_not_a_tier_is_one_line(tmp_path):
    (tmp_path / "notatier.py").write_text("x = 1\n")
    for module, message in [
        ("notatier", "--tier-module notatier: not a tier, it needs load() and from_state_dict()"),
        ("no_such_module_here", "--tier-module no_such_module_here: cannot import it"),
    ]:
        r = run(pytest_args("--tier-module", module), tmp_path)
        assert r.returncode != 0
        assert message in r.stderr
        assert "Traceback" not in r.stderr + r.stdout
