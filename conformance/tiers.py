# Every tier the suite checks: name -> (module, dtype). A new tier joins with one line here.
import importlib

import numpy as np

from shared.tolerances import bounds_for

TIERS = {
    "numpy": ("impl_numpy", np.float32),
    "numpy-float64": ("impl_numpy", np.float64),
    "c": ("impl_c", np.float32),
    "tinygrad": ("impl_tinygrad", np.float32),
}

# the tinygrad tier in mixed precision (SPEC.md "Mixed precision"): name -> (module, compute dtype),
# held to the same truth with bounds of their own by conformance/test_mixed_precision.py
MIXED_TIERS = {
    "tinygrad-float16": ("impl_tinygrad", "float16"),
    "tinygrad-bfloat16": ("impl_tinygrad", "bfloat16"),
}

BUILT_IN = tuple(TIERS)  # the project's own tiers (`pytest --tier-module` adds a user's to TIERS)

# the stand-in truth where no outside values exist (random problems, a user's checkpoint): the float64
# numpy tier, itself held to the outside truth like every tier (SPEC.md "Tolerances")
REFERENCE = ("impl_numpy", np.float64)


def tier_module(name: str):
    module, _ = TIERS[name]
    return importlib.import_module(module)


def load(name: str, path, adamw=None):
    if name in MIXED_TIERS:
        module, precision = MIXED_TIERS[name]
        return importlib.import_module(module).load(path, adamw=adamw, mixed_precision=precision)
    module, dtype = TIERS[name]
    return importlib.import_module(module).load(path, dtype=dtype, adamw=adamw)


def bounds(name: str, regime: str = "default") -> dict[str, float]:
    """The tolerances tier `name` (TIERS or MIXED_TIERS) is held to on a case of `regime`."""
    if name in MIXED_TIERS:
        return bounds_for(np.float32, regime, MIXED_TIERS[name][1])
    return bounds_for(TIERS[name][1], regime)


def load_reference(path, adamw=None):
    module, dtype = REFERENCE
    return importlib.import_module(module).load(path, dtype=dtype, adamw=adamw)
