"""The numpy tier: GPT-2 on numpy, trained through the small autograd engine in engine.py."""

from impl_numpy.gpt import GPT, from_state_dict, load

__all__ = ["GPT", "from_state_dict", "load"]
