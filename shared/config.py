# SPEC.md "Config": one frozen dataclass, validated on construction, with named presets.
import dataclasses
import json
from dataclasses import dataclass

import numpy as np

from shared.errors import ConfigError


@dataclass(frozen=True)
class GPTConfig:
    n_layer: int
    n_head: int
    n_embd: int
    block_size: int
    vocab_size: int

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            # bool is an int in Python; True layers is a bug, not a config
            if not isinstance(value, (int, np.integer)) or isinstance(value, (bool, np.bool_)):
                raise ConfigError(f"config.{field.name} must be an int, got {type(value).__name__} {value!r}")
            object.__setattr__(self, field.name, int(value))  # a numpy int becomes a plain int
            if value <= 0:
                raise ConfigError(f"config.{field.name} must be positive, got {value}")
        if self.n_embd % self.n_head != 0:
            raise ConfigError(f"config.n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "GPTConfig":
        """Accepts our own keys and Hugging Face's GPT2Config keys (n_positions for block_size)."""
        if not isinstance(d, dict):
            raise ConfigError(f"config must be a JSON object, got {type(d).__name__}")
        d = dict(d)
        if "block_size" not in d and "n_positions" in d:
            d["block_size"] = d["n_positions"]
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [n for n in names if n not in d]
        if missing:
            raise ConfigError(f"config is missing {', '.join(missing)}")
        return cls(**{n: d[n] for n in names})

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
