# SPEC.md "The tier interface": what every tier's module and model offer, written once so the
# conformance suite, the benchmarks and transformer.py are written once.
from typing import Protocol

import numpy as np

from shared.checkpoint import OptimizerState
from shared.config import GPTConfig
from shared.schedule import AdamWConfig


class Model(Protocol):
    config: GPTConfig
    step: int  # AdamW steps taken

    def forward(self, idx: np.ndarray, targets: np.ndarray | None = None) -> tuple[np.ndarray, float | None]:
        """idx int (B, T) -> logits (B, T, V) as a numpy array in the model's dtype, and the loss
        (a float) when targets are given (-1 marks an ignored position)."""

    def grads(self, idx: np.ndarray, targets: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
        """The loss and d loss / d parameter for every canonical name, in the parameter's shape."""

    def backward(self, idx: np.ndarray, targets: np.ndarray) -> float:
        """Forward and backward with the gradients kept inside the model (what grads() copies out):
        the pass the benchmarks time."""

    def train_step(self, idx: np.ndarray, targets: np.ndarray, lr: float) -> float:
        """One AdamW step per the spec (clip, decay, update); returns the loss before the step."""

    def apply_grads(self, grads: dict[str, np.ndarray], lr: float) -> None:
        """The optimizer half of train_step, on the given gradients: clip, decay, AdamW update.
        The conformance suite feeds every tier the reference's gradients through it."""

    def optimizer_state(self) -> OptimizerState:
        """step and the AdamW moments m, v (numpy copies, canonical names)."""

    def state_dict(self) -> dict[str, np.ndarray]:
        """Canonical name -> a numpy copy of the parameter."""

    def save(self, path, metadata: dict[str, str] | None = None) -> None:
        """Atomic safetensors checkpoint, with the optimizer state once a step has been taken."""

    def activations(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        """The spec's named activations (shared/activations.py) for one forward pass."""

    def attention_forward(self, x: np.ndarray, layer: int = 0) -> np.ndarray:
        """Block `layer`'s attention on its own (c_attn, the heads, c_proj): its LayerNorm-ed input
        x (B, T, C) -> (B, T, C). The benchmarks time it."""

    def block_forward(self, x: np.ndarray, layer: int = 0) -> np.ndarray:
        """The whole block `layer` on its own: the residual stream x (B, T, C) -> (B, T, C)."""

    def decode(self, idx: np.ndarray, n_prefill: int = 1) -> np.ndarray:
        """Logits (B, T, V) computed through the KV cache: the first n_prefill positions in one call,
        then one position per call. They must equal forward's logits."""

    def generate(
        self,
        idx: np.ndarray,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        seed: int = 0,
    ) -> np.ndarray:
        """idx (B, T) followed by max_new_tokens sampled tokens, (B, T + max_new_tokens)."""


class Tier(Protocol):
    """A tier's module: `import impl_numpy as tier`."""

    def load(self, path, dtype=np.float32, adamw: AdamWConfig | None = None) -> Model:
        """A checkpoint (shared/checkpoint.py), optimizer state and AdamW settings included when it is a
        training checkpoint; `adamw` overrides the settings. A dtype the tier cannot compute in raises."""

    def from_state_dict(
        self,
        config: GPTConfig,
        state: dict[str, np.ndarray],
        dtype=np.float32,
        adamw: AdamWConfig | None = None,
    ) -> Model: ...
