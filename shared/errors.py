# SPEC.md "Bad input": every rejection is one of these, with a message naming the problem.
# They subclass ValueError so callers that catch ValueError keep working.


class GPTError(ValueError):
    """Base class of every error the project raises on bad input."""


class ConfigError(GPTError):
    """A config that is invalid, or does not match the weights it is used with."""


class InputError(GPTError):
    """Token ids or targets that a model cannot take (range, rank, dtype, length, empty)."""


class CheckpointError(GPTError):
    """A checkpoint that is missing, corrupt, truncated, or holds the wrong tensors."""


class DataError(GPTError):
    """A dataset that cannot be found, downloaded or verified."""


class DivergenceError(GPTError):
    """A training step whose loss or gradient norm is not finite: the run diverged. Raised before the
    step changes any weight, moment or the step counter (SPEC.md "Limits")."""
