# The whole suite's view of the machine it runs on: whether the tinygrad tier can run here, and where
# Tiny Shakespeare is.
#
# Without clang on PATH tinygrad's CPU backend cannot compile a kernel, and every test of the tinygrad
# tier would fail with the same error. Instead the session checks once, with the tier's own check
# (impl_tinygrad.gpt.default_device, which raises NO_CLANG), and skips the tests that need the tier with
# that one reason, which the short test summary (-ra) shows as one line. A test that needs the tier
# says so by its file, by a parameter that names the tier, or by the mark tinygrad (benchmarks/
# test_benchmarks.py's variants, tinygrad-xN among them, whose names are not known in advance).
#
# The same for the tier's bfloat16 mixed precision, which its CPU backend compiles only with clang 15 or
# later (impl_tinygrad.gpt.check_compute_dtype): the tests that need it (parametrized with
# "tinygrad-bfloat16" or "bfloat16", or marked bfloat16) skip with that one reason.
#
# GPT_TIERS_REQUIRE_ALL=1 (CI sets it, .ci/run): a tier that cannot run is a failure, not a skip. The
# session stops before any test runs, with that one line and exit status 1.
import os

import pytest

from conformance.tiers import MIXED_TIERS
from shared.data import ENV_VAR, SHAKESPEARE_FILE, cache_dir, shakespeare_path
from shared.errors import DataError

REQUIRE_ALL = "GPT_TIERS_REQUIRE_ALL"

# how a test names the tinygrad tier: conformance/tiers.py and transformer.py's TIERS key, the module,
# or one of its mixed precisions (conformance/tiers.py MIXED_TIERS); and its bfloat16 mixed precision
TINYGRAD = {"tinygrad", "impl_tinygrad", *MIXED_TIERS}
BFLOAT16 = {name for name, (_, precision) in MIXED_TIERS.items() if precision == "bfloat16"} | {"bfloat16"}

# set in pytest_collection_modifyitems on the items that need the tier, where it cannot run: why not
CANNOT_RUN = pytest.StashKey[str]()


def tinygrad_unavailable() -> str | None:
    """Why the tinygrad tier cannot run on this machine (impl_tinygrad.gpt.NO_CLANG), or None where
    it can, or where tinygrad fails for another reason: that one the tests themselves report."""
    from impl_tinygrad.gpt import NO_CLANG, default_device

    try:
        default_device()
    except RuntimeError as e:
        return f"the tinygrad tier cannot run: {NO_CLANG}" if str(e) == NO_CLANG else None
    return None


def bfloat16_unavailable() -> str | None:
    """Why the tinygrad tier cannot compute in bfloat16 here (clang 14 or older), or None."""
    from impl_tinygrad.gpt import check_compute_dtype, device_names
    from shared.errors import InputError

    try:
        check_compute_dtype(device_names(), "bfloat16")
    except InputError as e:
        return str(e)
    return None


def _named(item, names) -> bool:
    # parametrized with one of names: by the name itself, by a module's name (alone or in a (module,
    # dtype) pair), or by the module itself
    params = item.callspec.params.values() if hasattr(item, "callspec") else ()
    for value in params:
        for v in value if isinstance(value, tuple | list) else (value,):
            if (v if isinstance(v, str) else getattr(v, "__name__", None)) in names:
                return True
    return False


def needs_tinygrad(item) -> bool:
    # a test in the tier's own files, one parametrized with the tier, or one marked tinygrad
    if item.path.name in ("test_tinygrad_tier.py", "test_mixed_precision.py"):
        return True
    return item.get_closest_marker("tinygrad") is not None or _named(item, TINYGRAD)


def needs_bfloat16(item) -> bool:
    return item.get_closest_marker("bfloat16") is not None or _named(item, BFLOAT16)


@pytest.hookimpl(trylast=True)  # on what is left after -k, -m and conformance/conftest.py's deselection
def pytest_collection_modifyitems(config, items):
    needing = [item for item in items if needs_tinygrad(item)]
    why = tinygrad_unavailable() if needing else None
    if why is None:  # the tier runs: does its bfloat16?
        needing = [item for item in needing if needs_bfloat16(item)]
        why = bfloat16_unavailable() if needing else None
    if why is None:
        return
    if os.environ.get(REQUIRE_ALL, "") not in ("", "0"):
        pytest.exit(f"{why}; {REQUIRE_ALL} is set, so that is a failure", returncode=1)
    for item in needing:
        item.stash[CANNOT_RUN] = why
    config.stash[CANNOT_RUN] = why


def pytest_runtest_setup(item):
    # skipped here rather than with a skip mark: a mark's skip is reported at each test's own line, this
    # one at this line, so that the short test summary folds them all into one line
    if CANNOT_RUN in item.stash:
        pytest.skip(item.stash[CANNOT_RUN])


def pytest_terminal_summary(terminalreporter, config):
    # the one line, where the short test summary does not list skips
    chars = config.option.reportchars
    if CANNOT_RUN in config.stash and not {"s", "a", "A"} & set(chars):
        terminalreporter.write_line(config.stash[CANNOT_RUN])


@pytest.fixture(scope="session")
def corpus_path():
    """Tiny Shakespeare where this machine has it, found by the loader (shared/data.py's
    shakespeare_path) under the user's own environment, before any test's monkeypatch: TINYSHAKESPEARE,
    else the cache, else a download into the cache. Only a corpus that is nowhere skips; a
    TINYSHAKESPEARE that points at nothing or at another file, or a bad copy in the cache, fails."""
    present = os.environ.get(ENV_VAR) or (cache_dir() / SHAKESPEARE_FILE).is_file()
    try:
        return shakespeare_path()
    except DataError:
        if present:
            raise
        pytest.skip(
            f"Tiny Shakespeare is not on this machine and could not be downloaded: set {ENV_VAR} "
            f"to it or to a folder holding {SHAKESPEARE_FILE}"
        )
