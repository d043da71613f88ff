# SPEC.md "Checkpoints": safetensors only (a format that cannot run code, unlike pickle).
# One reader for both layouts (our single file with the config in __metadata__, and a Hugging Face
# directory), one atomic writer. Tiers convert the numpy arrays to and from their own engines.
import dataclasses
import errno
import json
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from shared.config import LIMITS, GPTConfig, count_params, limit_text
from shared.errors import CheckpointError, ConfigError, GPTError
from shared.params import check_state_dict, iter_param_shapes, param_shapes
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
    _check_to_save(path, config, state, optimizer, metadata)
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


def _check_to_save(path, config, state, optimizer, metadata) -> None:
    # SPEC.md "Limits": a writer never writes what the readers would refuse
    check_state_dict(config, state)
    if metadata is not None and (
        not isinstance(metadata, dict)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
    ):
        raise CheckpointError("metadata must be a dict of str -> str (safetensors' __metadata__)")
    reserved = sorted(RESERVED_METADATA & set(metadata or {}))
    if reserved:
        raise CheckpointError(
            f"metadata keys {', '.join(reserved)} are the checkpoint's own; choose other names"
        )
    if optimizer is None:
        return
    if type(optimizer.step) is bool or not isinstance(optimizer.step, (int, np.integer)):
        raise CheckpointError(f"step must be an int, got {type(optimizer.step).__name__} {optimizer.step!r}")
    check_optimizer(path, config, int(optimizer.step), optimizer.m, optimizer.v)
    if optimizer.adamw is not None and not isinstance(optimizer.adamw, AdamWConfig):
        raise CheckpointError(f"optimizer.adamw must be an AdamWConfig, got {type(optimizer.adamw).__name__}")


def load_checkpoint(path) -> Checkpoint:
    """Reads our single-file format or a Hugging Face style directory (config.json + model.safetensors).
    Every defect raises CheckpointError or ConfigError naming the file and the problem. The
    __metadata__ (str -> str; the tokenizer travels there) is returned as `metadata`."""
    path = Path(path)
    if path.is_dir():
        return _load_hf_dir(path)
    data = read_regular_file(path)
    header, metadata = _header(path, data)
    if "config" not in metadata:
        raise CheckpointError(
            f"{path}: no config in the safetensors __metadata__; "
            f"pass a Hugging Face directory ({HF_CONFIG} + {HF_WEIGHTS}) or a file saved by this project"
        )
    config = _config(path, _json(path, metadata["config"], "the config in __metadata__"))
    _check_size(path, config, header, data)
    tensors = _tensors(path, data)
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
        if not os.path.lexists(p):
            raise CheckpointError(
                f"{path}: a Hugging Face style directory needs {HF_CONFIG} and {HF_WEIGHTS}; {p.name} is missing"
            )
    try:
        text = read_regular_file(cfg_path).decode("utf-8")
    except UnicodeDecodeError as e:
        raise CheckpointError(
            f"{cfg_path}: not valid JSON (not UTF-8: {e.reason} at byte {e.start})"
        ) from None
    cfg = _json(cfg_path, text)
    config = _config(cfg_path, cfg)
    for key, value in HF_REQUIRED.items():
        got = cfg.get(key, value)
        if key == "n_inner" and got == 4 * config.n_embd:
            continue
        if got != value:
            raise ConfigError(f"{cfg_path}: {key} is {got!r}; the spec's GPT-2 needs {value!r}")
    data = read_regular_file(weights)
    header, _ = _header(weights, data)
    _check_size(weights, config, header, data)
    state = _check(weights, config, _canonical(weights, _tensors(weights, data)))
    return Checkpoint(config, state, None)


# what os.stat's mode says a path is, for the messages
FILE_KINDS = {
    stat.S_ISDIR: "a directory",
    stat.S_ISFIFO: "a FIFO",
    stat.S_ISCHR: "a character device",
    stat.S_ISBLK: "a block device",
    stat.S_ISSOCK: "a socket",
}


def read_regular_file(path: Path) -> bytes:
    """The bytes of a regular file (a symlink to one is fine). Anything else is refused before a byte is
    read: reading /dev/zero or a FIFO never ends. Opened without blocking (a FIFO's open would wait for a
    writer) and checked on the open descriptor, so the file checked is the file read."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint file") from None
    except OSError as e:
        reason = "too many levels of symbolic links" if e.errno == errno.ELOOP else e.strerror
        raise CheckpointError(f"{path}: cannot be read ({reason})") from None
    except ValueError:  # a NUL byte in the path
        raise CheckpointError(f"{path!r}: not a path (it holds a NUL byte)") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = next((k for is_kind, k in FILE_KINDS.items() if is_kind(mode)), "a special file")
        raise CheckpointError(f"{path}: not a regular file ({kind}); a checkpoint is read from a file")
    with os.fdopen(fd, "rb") as f:
        try:
            return f.read()
        except OSError as e:
            raise CheckpointError(f"{path}: cannot be read ({e.strerror})") from None


def _json(path, text, what: str = ""):
    where = f"{path}: {what} is" if what else f"{path}:"
    try:
        return json.loads(text)
    except RecursionError:  # nested deeper than Python's stack
        raise CheckpointError(f"{where} not valid JSON (nested too deeply)") from None
    except ValueError as e:  # JSONDecodeError, or an integer of more digits than int() takes
        raise CheckpointError(f"{where} not valid JSON ({e})") from None


def _config(path, d) -> GPTConfig:
    try:
        return GPTConfig.from_dict(d)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def _header(path: Path, data: bytes) -> tuple[dict, dict]:
    """The safetensors header (an 8-byte little-endian length, then that many bytes of JSON) and its
    __metadata__, read before any tensor is."""
    if len(data) < 8:
        raise CheckpointError(f"{path}: truncated ({len(data)} bytes), not a safetensors file")
    n = int.from_bytes(data[:8], "little")
    if n > len(data) - 8:
        raise CheckpointError(
            f"{path}: header claims {n} bytes but the file has {len(data) - 8} after the length; truncated or not safetensors"
        )
    try:
        header = json.loads(data[8 : 8 + n])
    except RecursionError:
        raise CheckpointError(f"{path}: corrupt safetensors header (JSON nested too deeply)") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: corrupt safetensors header ({e})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: corrupt safetensors header (not a JSON object)")
    metadata = header.get("__metadata__") or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise CheckpointError(
            f"{path}: corrupt safetensors header (__metadata__ is not an object of strings)"
        )
    return header, metadata


def _check_size(path: Path, config: GPTConfig, header: dict, data: bytes) -> None:
    """SPEC.md "Limits": a file's config is held to the file before the parameter table is built from
    it, so that a small file cannot make the reader build a table of a billion names. Where it fails,
    the message names what the file lacks (walking the names, never storing the table)."""
    described = ", ".join(f"{k} {v}" for k, v in config.to_dict().items())
    need = 4 + 12 * config.n_layer
    have = sum(1 for k in header if k != "__metadata__")
    listed = {k.removeprefix("transformer."): v for k, v in header.items() if k != "__metadata__"}
    if have < need:
        missing, count = [], 0
        for name, _ in iter_param_shapes(config):
            if name not in listed:
                count += 1
                missing += [name] if len(missing) < 5 else []
        shown = ", ".join(missing) + (f" and {count - len(missing)} more" if count > len(missing) else "")
        raise CheckpointError(
            f"{path}: the config ({described}) needs {need} tensors; the file has {have} (missing {shown})"
        )
    # 2 bytes a parameter: F16, the smallest float dtype read
    need = 2 * count_params(config.n_layer, config.n_embd, config.block_size, config.vocab_size)
    have = len(data) - 8 - int.from_bytes(data[:8], "little")  # the data section, after the header
    if have < need:
        # the usual cause: the weights belong to another config, which a tensor's shape shows
        for name, shape in iter_param_shapes(config):
            entry = listed.get(name)
            got = entry.get("shape") if isinstance(entry, dict) else None
            if isinstance(got, list) and tuple(got) != shape:
                raise ConfigError(
                    f"{path}: {name} has shape {tuple(got)} but the config needs {shape} "
                    f"(does the config match the weights?)"
                )
        raise CheckpointError(
            f"{path}: the config ({described}) needs {need} bytes of weights (2 a parameter); the file has {have}"
        )


def _tensors(path: Path, data: bytes) -> dict[str, np.ndarray]:
    try:
        return st_load(data)
    except (SafetensorError, ValueError, TypeError, KeyError) as e:  # KeyError: a dtype numpy lacks (BF16)
        raise CheckpointError(f"{path}: corrupt or truncated safetensors file ({e})") from None


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
        step = int(metadata.get("step", ""))  # Python's int(): the C reader parses the same strings
    except ValueError:
        raise CheckpointError(
            f"{path}: a training checkpoint needs an integer 'step' in __metadata__"
        ) from None
    m = {n.removeprefix("optim.m."): t for n, t in moments.items() if n.startswith("optim.m.")}
    v = {n.removeprefix("optim.v."): t for n, t in moments.items() if n.startswith("optim.v.")}
    check_optimizer(path, config, step, m, v)
    adamw = None
    if "adamw" in metadata:
        adamw = _adamw(path, _json(path, metadata["adamw"], "the AdamW settings in __metadata__"))
    order = param_shapes(config)
    return OptimizerState(step, {n: m[n] for n in order}, {n: v[n] for n in order}, adamw)


def check_optimizer(path, config: GPTConfig, step: int, m: dict, v: dict) -> None:
    """SPEC.md "Limits": what a training checkpoint's optimizer state must be, read or written: step
    in 0 .. 2^53, every moment present, of its parameter's shape and finite, and v >= 0 (a mean of
    squares; a negative one would make the next step's sqrt(v) NaN)."""
    if not 0 <= step <= LIMITS["step"]:
        raise CheckpointError(
            f"{path}: step {step} is {'negative' if step < 0 else 'too large'}; allowed: 0 .. {limit_text('step')}"
        )
    for label, d in (("optimizer first moments", m), ("optimizer second moments", v)):
        try:
            check_state_dict(config, d)
        except GPTError as e:
            raise CheckpointError(f"{path}: {label}: {e}") from None
    for name, a in v.items():
        if a.size and a.min() < 0:
            raise CheckpointError(
                f"{path}: optimizer second moments: {name} holds {float(a.min())!r}; a second moment is >= 0"
            )


def _adamw(path, d) -> AdamWConfig:
    # the keys of AdamWConfig, each optional (the default), nothing else
    if not isinstance(d, dict):
        raise CheckpointError(f"{path}: unreadable AdamW settings in __metadata__ (not a JSON object)")
    unknown = sorted(set(d) - {f.name for f in dataclasses.fields(AdamWConfig)})
    if unknown:
        raise CheckpointError(
            f"{path}: unreadable AdamW settings in __metadata__ (unexpected key {unknown[0]!r})"
        )
    try:
        return AdamWConfig(**d)
    except ConfigError as e:
        raise CheckpointError(f"{path}: unreadable AdamW settings in __metadata__ ({e})") from None


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
