# Every tier the suite checks: name -> (module, dtype). A new tier joins with one line here.
import importlib

import numpy as np

TIERS = {
    "numpy": ("impl_numpy", np.float32),
    "numpy-float64": ("impl_numpy", np.float64),
    "c": ("impl_c", np.float32),
    "tinygrad": ("impl_tinygrad", np.float32),
}

BUILT_IN = tuple(TIERS)  # the project's own tiers (`pytest --tier-module` adds a user's to TIERS)

# the stand-in truth where no outside values exist (random problems, a user's checkpoint): the float64
# numpy tier, itself held to the outside truth like every tier (SPEC.md "Tolerances")
REFERENCE = ("impl_numpy", np.float64)


def tier_module(name: str):
    module, _ = TIERS[name]
    return importlib.import_module(module)


def load(name: str, path, adamw=None):
    module, dtype = TIERS[name]
    return importlib.import_module(module).load(path, dtype=dtype, adamw=adamw)


def load_reference(path, adamw=None):
    module, dtype = REFERENCE
    return importlib.import_module(module).load(path, dtype=dtype, adamw=adamw)
