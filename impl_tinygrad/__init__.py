"""The tinygrad tier: GPT-2 on tinygrad Tensors, with tinygrad's autograd and the training step and
the KV-cache decode step compiled once (TinyJit) and replayed."""

from impl_tinygrad.gpt import GPT, from_state_dict, load

__all__ = ["GPT", "from_state_dict", "load"]
