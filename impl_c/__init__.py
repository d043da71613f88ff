"""The C tier: GPT-2 in plain C (gpt.c, matmul.c, safetensors.c) with hand-written backward passes,
used from Python through ctypes. The library is built on first use (build.py)."""

from impl_c.gpt import GPT, from_state_dict, load, set_num_threads

__all__ = ["GPT", "from_state_dict", "load", "set_num_threads"]
