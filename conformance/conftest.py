# `pytest conformance --tier-module mypkg.mytier`: the conformance suite for someone else's tier, any
# importable module that follows shared/tier.py, checked in float32. The module joins conformance/
# tiers.py's TIERS under its own name before the test files are collected (they parametrize over TIERS),
# and every test of a built-in tier is deselected, so what runs is the whole suite for that one tier
# plus the checks of the truth itself. README, "Checking your own implementation".
import importlib

import numpy as np
import pytest

from conformance.tiers import BUILT_IN, TIERS


def pytest_addoption(parser):
    parser.addoption(
        "--tier-module",
        action="append",
        default=[],
        metavar="MODULE",
        help="run the conformance suite on this importable module (shared/tier.py) instead of the "
        "built-in tiers; repeatable",
    )


def pytest_configure(config):
    for module in config.getoption("--tier-module"):
        try:
            tier = importlib.import_module(module)
        except ImportError as e:
            raise pytest.UsageError(f"--tier-module {module}: cannot import it ({e})") from None
        if not callable(getattr(tier, "load", None)) or not callable(getattr(tier, "from_state_dict", None)):
            raise pytest.UsageError(
                f"--tier-module {module}: not a tier, it needs load() and from_state_dict() (shared/tier.py)"
            )
        TIERS[module] = (module, np.float32)


def pytest_collection_modifyitems(config, items):
    if not config.getoption("--tier-module"):
        return
    # the built-in tiers' tests, and the tinygrad tier's mixed precision (test_mixed_precision.py)
    built_in = [
        i
        for i in items
        if (getattr(i, "callspec", None) and i.callspec.params.get("tier") in BUILT_IN)
        or i.path.name == "test_mixed_precision.py"
    ]
    if built_in:
        config.hook.pytest_deselected(items=built_in)
        items[:] = [i for i in items if i not in built_in]


def pytest_report_header(config):
    modules = config.getoption("--tier-module")
    if modules:
        return f"conformance: checking {', '.join(modules)} (float32) instead of the built-in tiers"
