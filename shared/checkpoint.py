# SPEC.md "Checkpoints": safetensors only (a format that cannot run code, unlike pickle).
# One reader for both layouts (our single file with the config in __metadata__, and a Hugging Face
# directory), one atomic writer. Tiers convert the numpy arrays to and from their own engines.
import dataclasses
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from shared.config import GPTConfig
from shared.errors import CheckpointError, ConfigError, GPTError
from shared.params import check_state_dict, param_shapes
from shared.schedule import AdamWConfig

FORMAT = "gpt-tiers/1"
HF_WEIGHTS = "model.safetensors"
HF_CONFIG = "config.json"
OPTIM_PREFIXES = ("optim.m.", "optim.v.")
RESERVED_METADATA = {"format", "config", "step", "adamw"}
# Hugging Face GPT2Config fields that would change the numerics, with the only values the spec computes
HF_REQUIRED = {
    "activation_function": "gelu_new",
    "layer_norm_epsilon": 1e-5,
    "scale_attn_by_inverse_layer_idx": False,
    "tie_word_embeddings": True,
    "n_inner": None,  # None means 4 * n_embd
}


@dataclass
class OptimizerState:
    step: int  # AdamW steps taken so far (the next step's bias correction uses step + 1)
    m: dict[str, np.ndarray] = field(default_factory=dict)  # first moments, canonical names
    v: dict[str, np.ndarray] = field(default_factory=dict)  # second moments
    adamw: AdamWConfig | None = None  # the hyperparameters, so a resumed run uses the same ones


@dataclass
class Checkpoint:
    config: GPTConfig
    state: dict[str, np.ndarray]
    optimizer: OptimizerState | None = None
    metadata: dict[str, str] = field(default_factory=dict)


def save_checkpoint(
    path,
    config: GPTConfig,
    state: dict,
    optimizer: OptimizerState | None = None,
    metadata: dict | None = None,
):
    """Writes one .safetensors file: the weights (safetensors stores them sorted by name; loading puts
    them back in canonical order), the config in __metadata__, and with `optimizer` the AdamW moments,
    settings and step (a training checkpoint). `metadata` adds str -> str entries of the caller's (the
    tokenizer, the training settings). Atomic: a temporary file in the same folder is written, flushed
    to disk and renamed over `path`."""
    check_state_dict(config, state)
    reserved = sorted(RESERVED_METADATA & set(metadata or {}))
    if reserved:
        raise CheckpointError(
            f"metadata keys {', '.join(reserved)} are the checkpoint's own; choose other names"
        )
    if optimizer is not None:
        for label, moments in (
            ("optimizer first moments", optimizer.m),
            ("optimizer second moments", optimizer.v),
        ):
            try:
                check_state_dict(config, moments)
            except GPTError as e:
                raise CheckpointError(f"{label}: {e}") from None
    tensors = {n: np.ascontiguousarray(state[n]) for n in param_shapes(config)}
    metadata = {**(metadata or {}), "format": FORMAT, "config": config.to_json()}
    if optimizer is not None:
        metadata["step"] = str(int(optimizer.step))
        if optimizer.adamw is not None:
            metadata["adamw"] = json.dumps(dataclasses.asdict(optimizer.adamw))
        for n in param_shapes(config):
            tensors["optim.m." + n] = np.ascontiguousarray(optimizer.m[n])
            tensors["optim.v." + n] = np.ascontiguousarray(optimizer.v[n])
    data = st_save(tensors, metadata=metadata)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # not tempfile.mkstemp: its files are private (0600), and the rename would pass that on to the
    # checkpoint; mode 0666 less the umask is what open() would have given it
    tmp = path.with_name(f"{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def load_checkpoint(path) -> Checkpoint:
    """Reads our single-file format or a Hugging Face style directory (config.json + model.safetensors).
    Every defect raises CheckpointError or ConfigError naming the file and the problem. The
    __metadata__ (str -> str; the tokenizer travels there) is returned as `metadata`."""
    path = Path(path)
    if path.is_dir():
        return _load_hf_dir(path)
    tensors, metadata = _read_safetensors(path)
    if "config" not in metadata:
        raise CheckpointError(
            f"{path}: no config in the safetensors __metadata__; "
            f"pass a Hugging Face directory ({HF_CONFIG} + {HF_WEIGHTS}) or a file saved by this project"
        )
    try:
        config = GPTConfig.from_dict(json.loads(metadata["config"]))
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: the config in __metadata__ is not valid JSON ({e})") from None
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    optimizer = None
    moments = {n: t for n, t in tensors.items() if n.startswith(OPTIM_PREFIXES)}
    if moments or "step" in metadata:
        optimizer = _optimizer_state(path, config, metadata, moments)
        tensors = {n: t for n, t in tensors.items() if n not in moments}
    state = _check(path, config, _canonical(path, tensors))
    return Checkpoint(config, state, optimizer, metadata)


def _load_hf_dir(path: Path) -> Checkpoint:
    cfg_path, weights = path / HF_CONFIG, path / HF_WEIGHTS
    for p in (cfg_path, weights):
        if not p.is_file():
            raise CheckpointError(
                f"{path}: a Hugging Face style directory needs {HF_CONFIG} and {HF_WEIGHTS}; {p.name} is missing"
            )
    try:
        cfg = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{cfg_path}: not valid JSON ({e})") from None
    try:
        config = GPTConfig.from_dict(cfg)
    except ConfigError as e:
        raise ConfigError(f"{cfg_path}: {e}") from None
    for key, value in HF_REQUIRED.items():
        got = cfg.get(key, value)
        if key == "n_inner" and got == 4 * config.n_embd:
            continue
        if got != value:
            raise ConfigError(f"{cfg_path}: {key} is {got!r}; the spec's GPT-2 needs {value!r}")
    tensors, _ = _read_safetensors(weights)
    state = _check(weights, config, _canonical(weights, tensors))
    return Checkpoint(config, state, None)


def _read_safetensors(path: Path):
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    data = path.read_bytes()
    # the header: 8-byte little-endian length, then that many bytes of JSON
    if len(data) < 8:
        raise CheckpointError(f"{path}: truncated ({len(data)} bytes), not a safetensors file")
    n = int.from_bytes(data[:8], "little")
    if n > len(data) - 8:
        raise CheckpointError(
            f"{path}: header claims {n} bytes but the file has {len(data) - 8} after the length; truncated or not safetensors"
        )
    try:
        header = json.loads(data[8 : 8 + n])
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: corrupt safetensors header ({e})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: corrupt safetensors header (not a JSON object)")
    metadata = header.get("__metadata__") or {}
    try:
        tensors = st_load(data)
    except (SafetensorError, ValueError, TypeError, KeyError) as e:  # KeyError: a dtype numpy lacks (BF16)
        raise CheckpointError(f"{path}: corrupt or truncated safetensors file ({e})") from None
    return tensors, metadata


def _canonical(path: Path, tensors: dict) -> dict[str, np.ndarray]:
    """Hugging Face names -> ours: drop the `transformer.` prefix, the attention mask buffers
    (`attn.bias`, `attn.masked_bias`) and a tied `lm_head.weight`."""
    out = {}
    for name, t in tensors.items():
        key = name.removeprefix("transformer.")
        if key.endswith((".attn.bias", ".attn.masked_bias")):
            continue
        if key in out:
            raise CheckpointError(f"{path}: tensor {key} appears twice (with and without 'transformer.')")
        out[key] = t
    lm_head = out.pop("lm_head.weight", None)
    wte = out.get("wte.weight")
    if (
        lm_head is not None
        and wte is not None
        and (lm_head.shape != wte.shape or not np.array_equal(lm_head, wte))
    ):
        raise CheckpointError(f"{path}: lm_head.weight differs from wte.weight; the spec's GPT-2 ties them")
    return out


def _optimizer_state(path, config, metadata, moments) -> OptimizerState:
    try:
        step = int(metadata.get("step", ""))
    except ValueError:
        raise CheckpointError(
            f"{path}: a training checkpoint needs an integer 'step' in __metadata__"
        ) from None
    if step < 0:
        raise CheckpointError(f"{path}: step {step} is negative")
    m = {n.removeprefix("optim.m."): t for n, t in moments.items() if n.startswith("optim.m.")}
    v = {n.removeprefix("optim.v."): t for n, t in moments.items() if n.startswith("optim.v.")}
    for label, d in (("optimizer first moments", m), ("optimizer second moments", v)):
        try:
            check_state_dict(config, d)
        except GPTError as e:
            raise CheckpointError(f"{path}: {label}: {e}") from None
    adamw = None
    if "adamw" in metadata:
        try:
            adamw = AdamWConfig(**json.loads(metadata["adamw"]))
        except (json.JSONDecodeError, TypeError, ConfigError) as e:
            raise CheckpointError(f"{path}: unreadable AdamW settings in __metadata__ ({e})") from None
    order = param_shapes(config)
    return OptimizerState(step, {n: m[n] for n in order}, {n: v[n] for n in order}, adamw)


def _check(path, config, state) -> dict[str, np.ndarray]:
    """Checks the state dict and returns it in canonical order (safetensors returns its own order)."""
    try:
        check_state_dict(config, state)
    except GPTError as e:
        raise type(e)(f"{path}: {e}") from None
    return {n: state[n] for n in param_shapes(config)}


def load_model(make, path, dtype, adamw):
    """Every tier's `load`: make(config, state, dtype, adamw) builds the tier's model, and a training
    checkpoint's step, moments and AdamW settings (unless `adamw` overrides them) are restored."""
    ckpt = load_checkpoint(path)
    if adamw is None and ckpt.optimizer is not None:
        adamw = ckpt.optimizer.adamw
    model = make(ckpt.config, ckpt.state, dtype, adamw)
    if ckpt.optimizer is not None:
        model.load_optimizer_state(ckpt.optimizer)
    return model
