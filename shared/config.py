# SPEC.md "Config": one frozen dataclass, validated on construction, with named presets.
import dataclasses
import json
from dataclasses import dataclass

import numpy as np

from shared.errors import ConfigError

# SPEC.md "Ablations": switches that take one piece out of the model, for the curriculum's experiments.
# Each is True in GPT-2; a field left at True is not written by to_dict, so GPT-2's config reads as before.
ABLATIONS = ("scale_attn_weights", "residual", "position_embedding")

# SPEC.md "Limits": the one set of bounds every reader, writer and tier enforces (the C tier's copy is
# gpt_config_check in impl_c/gpt.c). They keep every size inside a C int and every count exact in a
# float64, and refuse a file's absurd config before anything is allocated from it.
LIMITS = {
    "n_layer": 2**16,
    "n_embd": 2**20,  # and n_head <= n_embd
    "block_size": 2**20,
    "vocab_size": 2**30,
    "parameters": 2**40,  # V C + T C + L (12 C^2 + 13 C) + 2 C
    "step": 2**53,  # AdamW steps taken: beyond it step + 1 is not exact in a float64
}


def limit_text(name: str) -> str:
    """A limit as the messages say it: "65536 (2^16)"."""
    return f"{LIMITS[name]} (2^{LIMITS[name].bit_length() - 1})"


def count_params(n_layer: int, n_embd: int, block_size: int, vocab_size: int) -> int:
    # SPEC.md "Config": the parameter count in closed form (shared.params.num_params sums the table)
    C = n_embd
    return vocab_size * C + block_size * C + n_layer * (12 * C * C + 13 * C) + 2 * C


@dataclass(frozen=True)
class GPTConfig:
    n_layer: int
    n_head: int
    n_embd: int
    block_size: int
    vocab_size: int
    scale_attn_weights: bool = True  # scores divided by sqrt(head_size) (Hugging Face's name)
    residual: bool = True  # x + f(LN(x)) in both halves of every block; False: f(LN(x))
    position_embedding: bool = True  # x = wte[idx] + wpe[pos]; False: wte[idx] (wpe unused)

    def __post_init__(self):
        for name in ABLATIONS:
            value = getattr(self, name)
            if not isinstance(value, (bool, np.bool_)):
                raise ConfigError(
                    f"config.{name} must be true or false, got {type(value).__name__} {value!r}"
                )
            object.__setattr__(self, name, bool(value))
        for field in dataclasses.fields(self):
            if field.name in ABLATIONS:
                continue
            value = getattr(self, field.name)
            # bool is an int in Python; True layers is a bug, not a config
            if not isinstance(value, (int, np.integer)) or isinstance(value, (bool, np.bool_)):
                raise ConfigError(f"config.{field.name} must be an int, got {type(value).__name__} {value!r}")
            object.__setattr__(self, field.name, int(value))  # a numpy int becomes a plain int
            if value <= 0:
                raise ConfigError(f"config.{field.name} must be positive, got {value}")
            if field.name in LIMITS and value > LIMITS[field.name]:
                raise ConfigError(f"config.{field.name} is {value}; allowed: 1 .. {limit_text(field.name)}")
        if self.n_head > self.n_embd:
            raise ConfigError(f"config.n_head is {self.n_head}; allowed: 1 .. n_embd ({self.n_embd})")
        if self.n_embd % self.n_head != 0:
            raise ConfigError(f"config.n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        n = count_params(self.n_layer, self.n_embd, self.block_size, self.vocab_size)
        if n > LIMITS["parameters"]:
            raise ConfigError(
                f"config has {n} parameters (n_layer {self.n_layer}, n_embd {self.n_embd}, block_size "
                f"{self.block_size}, vocab_size {self.vocab_size}); allowed: at most {limit_text('parameters')}"
            )

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    @property
    def ablated(self) -> tuple[str, ...]:
        """The ablations switched off, in ABLATIONS order; () for GPT-2."""
        return tuple(name for name in ABLATIONS if not getattr(self, name))

    def __repr__(self) -> str:
        fields = [
            f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self) if f.name not in ABLATIONS
        ]
        return f"GPTConfig({', '.join(fields + [f'{name}=False' for name in self.ablated])})"

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for name in ABLATIONS:
            if d[name]:
                del d[name]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "GPTConfig":
        """Accepts our own keys and Hugging Face's GPT2Config keys (n_positions for block_size)."""
        if not isinstance(d, dict):
            raise ConfigError(f"config must be a JSON object, got {type(d).__name__}")
        d = dict(d)
        if "block_size" not in d and "n_positions" in d:
            d["block_size"] = d["n_positions"]
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [n for n in names if n not in d and n not in ABLATIONS]
        if missing:
            raise ConfigError(f"config is missing {', '.join(missing)}")
        return cls(**{n: d[n] for n in names if n in d})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


PRESETS = {
    # small enough for finite-difference gradient checks in float64
    "tiny": GPTConfig(n_layer=2, n_head=2, n_embd=16, block_size=16, vocab_size=29),
    # nanoGPT's shakespeare_char CPU setting (README, "I only have a macbook")
    "shakespeare": GPTConfig(n_layer=4, n_head=4, n_embd=128, block_size=64, vocab_size=65),
    # GPT-2 small, 124M parameters
    "gpt2": GPTConfig(n_layer=12, n_head=12, n_embd=768, block_size=1024, vocab_size=50257),
}


def get_config(name: str, **overrides) -> GPTConfig:
    if name not in PRESETS:
        raise ConfigError(f"unknown config preset {name!r}; presets: {', '.join(PRESETS)}")
    unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(GPTConfig)})
    if unknown:
        raise ConfigError(f"unknown config field {', '.join(unknown)}")
    return dataclasses.replace(PRESETS[name], **overrides)
