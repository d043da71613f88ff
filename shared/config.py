# SPEC.md "Config": one frozen dataclass, validated on construction, with named presets.
import dataclasses
import json
from dataclasses import dataclass

import numpy as np

from shared.errors import ConfigError

# SPEC.md "Ablations": switches that take one piece out of the model, for the curriculum's experiments.
# Each is True in GPT-2; a field left at True is not written by to_dict, so GPT-2's config reads as before.
ABLATIONS = ("scale_attn_weights", "residual", "position_embedding")


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
        if self.n_embd % self.n_head != 0:
            raise ConfigError(f"config.n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")

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
