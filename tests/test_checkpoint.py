# shared/checkpoint.py: our single-file format, training checkpoints, the atomic writer, Hugging Face
# style directories, and every defect a checkpoint can have (SPEC.md "Checkpoints", "Bad input").
import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import impl_numpy
from shared.checkpoint import FORMAT, OptimizerState, load_checkpoint, save_checkpoint
from shared.config import ABLATIONS, GPTConfig, get_config
from shared.errors import CheckpointError, ConfigError, GPTError
from shared.params import init_state_dict, param_shapes
from shared.tokenizer import CharTokenizer

CONFIG = get_config("tiny")

# every loader the project has: shared.checkpoint directly, and a tier's load that goes through it
LOADERS = {
    "load_checkpoint": load_checkpoint,
    "impl_numpy.load": impl_numpy.load,
}


@pytest.fixture(params=list(LOADERS))
def loader(request):
    return LOADERS[request.param]


def random_state(config=CONFIG, seed=0, dtype=np.float32):
    # every tensor random (biases and gains too), so a swapped or zeroed tensor cannot go unnoticed
    rng = np.random.default_rng(seed)
    return {n: rng.standard_normal(s).astype(dtype) for n, s in param_shapes(config).items()}


def assert_same_state(got: dict, want: dict):
    assert list(got) == list(want)
    for n, w in want.items():
        assert got[n].dtype == w.dtype, n
        np.testing.assert_array_equal(got[n], w, err_msg=n)


def read_header(path) -> dict:
    data = Path(path).read_bytes()
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + n])


@pytest.fixture
def saved(tmp_path):
    """A valid checkpoint file, its state and its bytes."""
    path = tmp_path / "model.safetensors"
    state = random_state()
    save_checkpoint(path, CONFIG, state)
    return path, state, path.read_bytes()


# ---- our single-file format ----


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip(tmp_path, dtype):
    path = tmp_path / "ckpt.safetensors"
    state = random_state(dtype=dtype)
    save_checkpoint(path, CONFIG, state)
    ckpt = load_checkpoint(path)
    assert ckpt.config == CONFIG
    assert ckpt.optimizer is None
    assert_same_state(ckpt.state, state)


def test_round_trip_other_config(tmp_path):
    config = GPTConfig(n_layer=3, n_head=3, n_embd=12, block_size=5, vocab_size=7)
    path = tmp_path / "ckpt.safetensors"
    state = random_state(config, seed=3)
    save_checkpoint(path, config, state)
    ckpt = load_checkpoint(path)
    assert ckpt.config == config
    assert_same_state(ckpt.state, state)


def test_config_in_metadata_and_tensors_in_canonical_order(saved):
    path, _, _ = saved
    header = read_header(path)
    meta = header["__metadata__"]
    assert meta["format"] == FORMAT
    assert GPTConfig.from_dict(json.loads(meta["config"])) == CONFIG
    # exactly the canonical tensors under their canonical names and shapes (safetensors itself
    # decides where in the file each one's bytes go: it sorts them by name)
    names = [n for n in header if n != "__metadata__"]
    assert sorted(names) == sorted(param_shapes(CONFIG))
    for n, shape in param_shapes(CONFIG).items():
        assert tuple(header[n]["shape"]) == shape
        assert header[n]["dtype"] == "F32"
    # and the loader hands them back in the canonical order, whatever order the file holds them in
    assert list(load_checkpoint(path).state) == list(param_shapes(CONFIG))


def test_metadata_passthrough(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    tok = CharTokenizer("abc\n !")
    save_checkpoint(path, CONFIG, random_state(), metadata={"tokenizer": tok.to_json(), "note": "hello"})
    ckpt = load_checkpoint(path)
    assert ckpt.metadata["tokenizer"] == tok.to_json()
    assert CharTokenizer.from_json(ckpt.metadata["tokenizer"]).chars == tok.chars
    assert ckpt.metadata["note"] == "hello"
    assert ckpt.metadata["format"] == FORMAT


@pytest.mark.parametrize("key", ["config", "format", "step", "adamw"])
def test_user_metadata_cannot_use_the_checkpoints_own_keys(tmp_path, key):
    path = tmp_path / "ckpt.safetensors"
    with pytest.raises(CheckpointError, match=f"metadata keys {key} are the checkpoint's own"):
        save_checkpoint(path, CONFIG, random_state(), metadata={key: "x"})
    assert not path.exists()


def test_save_rejects_bad_optimizer_moments(tmp_path):
    opt = OptimizerState(1, random_state(), {n: a[..., :1] for n, a in random_state().items()})
    with pytest.raises(CheckpointError, match="optimizer second moments"):
        save_checkpoint(tmp_path / "c.safetensors", CONFIG, random_state(), opt)


def _moments(seed=1):
    return random_state(seed=seed), {n: np.abs(a) for n, a in random_state(seed=seed + 1).items()}


@pytest.mark.parametrize(
    "damage, match",
    [
        (
            lambda s, m, v: s["h.0.ln_1.bias"].__setitem__(2, np.inf),
            r"^h\.0\.ln_1\.bias holds NaN or infinite",
        ),
        (
            lambda s, m, v: m["wte.weight"].__setitem__((0, 0), np.nan),
            r"first moments: wte\.weight holds NaN",
        ),
        (
            lambda s, m, v: v["wpe.weight"].__setitem__((1, 1), np.inf),
            r"second moments: wpe\.weight holds NaN",
        ),
        (
            lambda s, m, v: v["ln_f.weight"].__setitem__(3, -2.0),
            r"second moments: ln_f\.weight holds -2\.0; a second moment is >= 0",
        ),
    ],
    ids=["inf-weight", "nan-m", "inf-v", "negative-v"],
)
def test_save_refuses_what_the_readers_reject(tmp_path, damage, match):
    # SPEC.md "Limits": a writer never writes what a reader would refuse
    path = tmp_path / "c.safetensors"
    state, (m, v) = random_state(), _moments()
    damage(state, m, v)
    with pytest.raises(CheckpointError, match=match):
        save_checkpoint(path, CONFIG, state, OptimizerState(1, m, v))
    assert not path.exists() and os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "step, match",
    [
        (-1, r"step -1 is negative; allowed: 0 \.\. 9007199254740992 \(2\^53\)"),
        (2**53 + 1, r"step 9007199254740993 is too large; allowed: 0 \.\. 9007199254740992 \(2\^53\)"),
        (True, r"step must be an int, got bool True"),
        (3.0, r"step must be an int, got float 3\.0"),
        ("3", r"step must be an int, got str '3'"),
    ],
)
def test_save_refuses_a_step_outside_the_limits(tmp_path, step, match):
    path = tmp_path / "c.safetensors"
    with pytest.raises(CheckpointError, match=match):
        save_checkpoint(path, CONFIG, random_state(), OptimizerState(step, *_moments()))
    assert not path.exists()


@pytest.mark.parametrize("metadata", [{"tokenizer": 3}, {1: "x"}, ["tokenizer"]])
def test_save_refuses_metadata_that_is_not_strings(tmp_path, metadata):
    with pytest.raises(CheckpointError, match=r"metadata must be a dict of str -> str"):
        save_checkpoint(tmp_path / "c.safetensors", CONFIG, random_state(), metadata=metadata)


@pytest.mark.parametrize("step", [0, 2**53, np.int64(7)])
def test_save_step_edges(tmp_path, step):
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, CONFIG, random_state(), OptimizerState(step, *_moments()))
    assert load_checkpoint(path).optimizer.step == step


def test_save_creates_parent_folders(tmp_path):
    path = tmp_path / "a" / "b" / "ckpt.safetensors"
    save_checkpoint(path, CONFIG, random_state())
    assert load_checkpoint(path).config == CONFIG


def test_save_overwrites(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    save_checkpoint(path, CONFIG, random_state(seed=1))
    state = random_state(seed=2)
    save_checkpoint(path, CONFIG, state)
    assert_same_state(load_checkpoint(path).state, state)
    assert os.listdir(tmp_path) == ["ckpt.safetensors"]


def test_save_rejects_a_bad_state(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    state = random_state()
    del state["h.1.ln_2.bias"]
    with pytest.raises(CheckpointError, match=r"missing h\.1\.ln_2\.bias"):
        save_checkpoint(path, CONFIG, state)
    assert not path.exists()


# ---- training checkpoints ----


def test_training_checkpoint_round_trip(tmp_path):
    path = tmp_path / "train.safetensors"
    state = random_state(seed=0)
    opt = OptimizerState(
        step=17, m=random_state(seed=1), v={n: np.abs(a) for n, a in random_state(seed=2).items()}
    )
    save_checkpoint(path, CONFIG, state, opt, metadata={"tokenizer": '"abc"'})
    ckpt = load_checkpoint(path)
    assert ckpt.config == CONFIG
    assert_same_state(ckpt.state, state)  # the moments are not parameters
    assert ckpt.optimizer is not None
    assert ckpt.optimizer.step == 17
    assert_same_state(ckpt.optimizer.m, opt.m)
    assert_same_state(ckpt.optimizer.v, opt.v)
    assert ckpt.metadata["step"] == "17"
    assert ckpt.metadata["tokenizer"] == '"abc"'


def test_training_checkpoint_through_the_numpy_tier(tmp_path):
    # a model that took steps saves its moments, and load restores them exactly
    model = impl_numpy.from_state_dict(CONFIG, init_state_dict(CONFIG, seed=0))
    rng = np.random.default_rng(0)
    idx = rng.integers(0, CONFIG.vocab_size, size=(2, 8))
    targets = rng.integers(0, CONFIG.vocab_size, size=(2, 8))
    for _ in range(2):
        model.train_step(idx, targets, 1e-3)
    path = tmp_path / "train.safetensors"
    model.save(path)
    loaded = impl_numpy.load(path)
    assert loaded.step == 2
    assert_same_state(loaded.state_dict(), model.state_dict())
    want = model.optimizer_state()
    got = loaded.optimizer_state()
    assert_same_state(got.m, want.m)
    assert_same_state(got.v, want.v)
    # and training goes on identically from the loaded copy
    assert loaded.train_step(idx, targets, 1e-3) == model.train_step(idx, targets, 1e-3)
    assert_same_state(loaded.state_dict(), model.state_dict())


def test_untrained_model_saves_no_optimizer(tmp_path):
    model = impl_numpy.from_state_dict(CONFIG, init_state_dict(CONFIG, seed=0))
    path = tmp_path / "m.safetensors"
    model.save(path)
    assert load_checkpoint(path).optimizer is None


def _training_file(tmp_path, edit):
    """Saves a training checkpoint, lets `edit(tensors, metadata)` damage it, writes it back."""
    path = tmp_path / "train.safetensors"
    opt = OptimizerState(
        step=3, m=random_state(seed=1), v={n: np.abs(a) for n, a in random_state(seed=2).items()}
    )
    save_checkpoint(path, CONFIG, random_state(), opt)
    tensors = load_file(path)
    metadata = read_header(path)["__metadata__"]
    edit(tensors, metadata)
    save_file(tensors, path, metadata=metadata)
    return path


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda t, m: m.pop("step"), r"integer 'step'"),
        (lambda t, m: m.update(step="three"), r"integer 'step'"),
        (lambda t, m: m.update(step="-1"), r"step -1 is negative"),
        (lambda t, m: t.pop("optim.m.wpe.weight"), r"first moments.*missing wpe\.weight"),
        (lambda t, m: t.pop("optim.v.ln_f.bias"), r"second moments.*missing ln_f\.bias"),
        (lambda t, m: t["optim.v.ln_f.bias"].__setitem__(0, np.nan), r"second moments.*ln_f\.bias holds NaN"),
    ],
    ids=["no-step", "step-not-int", "negative-step", "missing-m", "missing-v", "nan-v"],
)
def test_bad_training_checkpoint(tmp_path, loader, edit, match):
    path = _training_file(tmp_path, edit)
    with pytest.raises(CheckpointError, match=match):
        loader(path)


# ---- atomic save ----


def test_atomic_save_crash_leaves_no_file(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.safetensors"

    def crash(src, dst):
        raise OSError("simulated crash during rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        save_checkpoint(path, CONFIG, random_state())
    assert not path.exists()
    assert os.listdir(tmp_path) == []  # no stray .tmp file


def test_atomic_save_crash_keeps_the_old_file(tmp_path, monkeypatch, saved):
    path, state, before = saved

    def crash(src, dst):
        raise OSError("simulated crash during rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        save_checkpoint(path, CONFIG, random_state(seed=99))
    assert path.read_bytes() == before
    assert os.listdir(path.parent) == [path.name]
    monkeypatch.undo()
    assert_same_state(load_checkpoint(path).state, state)


def test_atomic_save_interrupted_write(tmp_path, monkeypatch, saved):
    # a crash while the bytes are written (KeyboardInterrupt included) must not touch the old file
    path, _, before = saved

    def interrupt(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupt)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, CONFIG, random_state(seed=99))
    assert path.read_bytes() == before
    assert os.listdir(path.parent) == [path.name]


def test_saved_file_is_readable_like_any_new_file(tmp_path):
    # the temporary file is created private (0600); the checkpoint must end with the usual
    # permissions (0666 less the umask), as if written with open()
    path = tmp_path / "ckpt.safetensors"
    save_checkpoint(path, CONFIG, random_state())
    plain = tmp_path / "plain"
    plain.write_bytes(b"")
    assert (path.stat().st_mode & 0o777) == (plain.stat().st_mode & 0o777)


# ---- Hugging Face style directories ----


def hf_config(config=CONFIG, **overrides) -> dict:
    cfg = {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "activation_function": "gelu_new",
        "n_layer": config.n_layer,
        "n_head": config.n_head,
        "n_embd": config.n_embd,
        "n_positions": config.block_size,
        "n_ctx": config.block_size,
        "vocab_size": config.vocab_size,
        "layer_norm_epsilon": 1e-5,
    }
    cfg.update(overrides)
    return cfg


def hf_tensors(state, config=CONFIG, prefix="transformer.", lm_head=True, mask_dtype=np.float32) -> dict:
    """The tensors as GPT2LMHeadModel.save_pretrained writes them: prefixed names, the causal mask
    buffers of each block, and the tied lm_head."""
    T = config.block_size
    tensors = {prefix + n: a for n, a in state.items()}
    for i in range(config.n_layer):
        tensors[f"{prefix}h.{i}.attn.bias"] = np.tril(np.ones((T, T))).astype(mask_dtype)[None, None]
        tensors[f"{prefix}h.{i}.attn.masked_bias"] = np.array(-1e4, dtype=np.float32)
    if lm_head:
        tensors["lm_head.weight"] = state["wte.weight"].copy()
    return tensors


def write_hf_dir(folder, tensors=None, cfg=None, state=None):
    folder.mkdir(parents=True, exist_ok=True)
    if cfg is not False:
        (folder / "config.json").write_text(json.dumps(cfg or hf_config()))
    if tensors is not False:
        save_file(
            tensors if tensors is not None else hf_tensors(state or random_state()),
            folder / "model.safetensors",
        )
    return folder


@pytest.mark.parametrize(
    "prefix, lm_head, mask_dtype",
    [
        ("transformer.", True, np.float32),
        ("transformer.", True, np.bool_),
        ("transformer.", False, np.float32),
        ("", True, np.float32),
        ("", False, np.uint8),
    ],
    ids=["prefixed", "prefixed-bool-mask", "prefixed-no-lm_head", "bare", "bare-no-lm_head-uint8-mask"],
)
def test_hf_directory(tmp_path, loader, prefix, lm_head, mask_dtype):
    state = random_state(seed=5)
    folder = write_hf_dir(
        tmp_path / "gpt2", hf_tensors(state, prefix=prefix, lm_head=lm_head, mask_dtype=mask_dtype)
    )
    if loader is load_checkpoint:
        ckpt = load_checkpoint(folder)
        assert ckpt.config == CONFIG
        assert ckpt.optimizer is None
        assert list(ckpt.state) == list(param_shapes(CONFIG))  # buffers and lm_head dropped
        for n in state:
            np.testing.assert_array_equal(ckpt.state[n], state[n], err_msg=n)
    else:
        model = loader(folder)
        assert model.config == CONFIG
        got = model.state_dict()
        for n in state:
            np.testing.assert_array_equal(got[n], state[n], err_msg=n)


def test_hf_directory_equals_our_file(tmp_path):
    # the same weights through both layouts give the same model, logits included
    state = random_state(seed=6)
    folder = write_hf_dir(tmp_path / "hf", hf_tensors(state))
    ours = tmp_path / "ours.safetensors"
    save_checkpoint(ours, CONFIG, state)
    idx = np.arange(10).reshape(2, 5) % CONFIG.vocab_size
    a, _ = impl_numpy.load(folder).forward(idx)
    b, _ = impl_numpy.load(ours).forward(idx)
    np.testing.assert_array_equal(a, b)


def test_hf_config_with_block_size_key(tmp_path):
    cfg = hf_config()
    del cfg["n_positions"], cfg["n_ctx"]
    cfg["block_size"] = CONFIG.block_size
    folder = write_hf_dir(tmp_path / "hf", cfg=cfg)
    assert load_checkpoint(folder).config == CONFIG


def test_hf_config_without_activation_defaults_to_gelu_new(tmp_path):
    cfg = hf_config()
    del cfg["activation_function"]
    folder = write_hf_dir(tmp_path / "hf", cfg=cfg)
    assert load_checkpoint(folder).config == CONFIG


# ---- bad checkpoints: each raises the right class with a message naming the problem ----


def _resave(path, state, config=CONFIG):
    """Writes `state` with `config` in the metadata, bypassing save_checkpoint's own checks."""
    save_file(state, path, metadata={"format": FORMAT, "config": config.to_json()})
    return path


def test_missing_tensor(tmp_path, loader):
    state = random_state()
    del state["h.0.attn.c_proj.weight"]
    path = _resave(tmp_path / "m.safetensors", state)
    with pytest.raises(CheckpointError, match=r"missing h\.0\.attn\.c_proj\.weight") as e:
        loader(path)
    assert str(path) in str(e.value)


def test_many_missing_tensors_are_summarized(tmp_path, loader):
    state = {n: a for n, a in random_state().items() if not n.startswith("h.")}
    path = _resave(tmp_path / "m.safetensors", state)
    with pytest.raises(CheckpointError, match=r"missing h\.0\.ln_1\.weight, .* and \d+ more"):
        loader(path)


def test_extra_tensor(tmp_path, loader):
    state = random_state()
    state["h.0.attn.rotary.weight"] = np.zeros(3, np.float32)
    path = _resave(tmp_path / "m.safetensors", state)
    with pytest.raises(CheckpointError, match=r"unexpected h\.0\.attn\.rotary\.weight"):
        loader(path)


def test_duplicate_tensor_with_and_without_prefix(tmp_path, loader):
    state = random_state()
    tensors = hf_tensors(state)
    tensors["wpe.weight"] = state["wpe.weight"]
    folder = write_hf_dir(tmp_path / "hf", tensors)
    with pytest.raises(CheckpointError, match=r"wpe\.weight appears twice"):
        loader(folder)


def test_wrong_shaped_tensor(tmp_path, loader):
    state = random_state()
    state["h.1.mlp.c_fc.weight"] = state["h.1.mlp.c_fc.weight"].T.copy()  # (4C, C) for (C, 4C)
    path = _resave(tmp_path / "m.safetensors", state)
    with pytest.raises(
        ConfigError, match=r"h\.1\.mlp\.c_fc\.weight has shape \(64, 16\) but the config needs \(16, 64\)"
    ):
        loader(path)


def test_config_does_not_match_the_weights(tmp_path, loader):
    # the metadata says n_embd 32; the weights are 16 wide
    path = _resave(tmp_path / "m.safetensors", random_state(), config=get_config("tiny", n_embd=32))
    with pytest.raises(
        ConfigError, match=r"wte\.weight has shape \(29, 16\) but the config needs \(29, 32\)"
    ):
        loader(path)


def test_hf_config_does_not_match_the_weights(tmp_path, loader):
    folder = write_hf_dir(tmp_path / "hf", cfg=hf_config(n_embd=32))
    with pytest.raises(ConfigError, match=r"does the config match the weights"):
        loader(folder)


def test_hf_config_with_more_layers_than_the_weights(tmp_path, loader):
    folder = write_hf_dir(tmp_path / "hf", cfg=hf_config(n_layer=3))
    with pytest.raises(GPTError, match=r"missing h\.2\."):
        loader(folder)


def test_corrupt_file(tmp_path, loader):
    path = tmp_path / "m.safetensors"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(CheckpointError, match=r"m\.safetensors: .*(truncated|corrupt|not safetensors)"):
        loader(path)


@pytest.mark.parametrize("cut", ["half", "header", "4-bytes", "empty"])
def test_truncated_file(saved, loader, cut):
    path, _, data = saved
    n = int.from_bytes(data[:8], "little")
    keep = {"half": len(data) // 2, "header": 8 + n // 2, "4-bytes": 4, "empty": 0}[cut]
    assert 0 <= keep < len(data)
    path.write_bytes(data[:keep])
    with pytest.raises(CheckpointError, match=r"truncated"):
        loader(path)


def test_header_length_larger_than_file(saved, loader):
    path, _, data = saved
    path.write_bytes((len(data) * 2).to_bytes(8, "little") + data[8:])
    with pytest.raises(CheckpointError, match=rf"header claims {len(data) * 2} bytes"):
        loader(path)


def test_header_not_json(tmp_path, loader):
    path = tmp_path / "m.safetensors"
    header = b"{this is not json}"
    path.write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 64)
    with pytest.raises(CheckpointError, match=r"corrupt safetensors header"):
        loader(path)


def test_header_not_an_object(tmp_path, loader):
    path = tmp_path / "m.safetensors"
    header = b"[1, 2, 3]"
    path.write_bytes(len(header).to_bytes(8, "little") + header)
    with pytest.raises(CheckpointError, match=r"corrupt safetensors header \(not a JSON object\)"):
        loader(path)


def test_no_config_in_metadata(tmp_path, loader):
    path = tmp_path / "m.safetensors"
    save_file(random_state(), path, metadata={"format": FORMAT})
    with pytest.raises(CheckpointError, match=r"no config in the safetensors __metadata__"):
        loader(path)


def test_no_metadata_at_all(tmp_path, loader):
    path = tmp_path / "m.safetensors"
    save_file(random_state(), path)
    with pytest.raises(CheckpointError, match=r"no config in the safetensors __metadata__"):
        loader(path)


def test_invalid_json_config_in_metadata(tmp_path, loader):
    path = tmp_path / "m.safetensors"
    save_file(random_state(), path, metadata={"config": '{"n_layer": 2,'})
    with pytest.raises(CheckpointError, match=r"config in __metadata__ is not valid JSON"):
        loader(path)


@pytest.mark.parametrize(
    "cfg, match",
    [
        ({"n_layer": 2, "n_head": 2, "n_embd": 16, "block_size": 16}, r"config is missing vocab_size"),
        (
            {"n_layer": 2, "n_head": 3, "n_embd": 16, "block_size": 16, "vocab_size": 29},
            r"divisible by n_head",
        ),
        (
            {"n_layer": 0, "n_head": 2, "n_embd": 16, "block_size": 16, "vocab_size": 29},
            r"n_layer must be positive",
        ),
        ([2, 2, 16, 16, 29], r"config must be a JSON object"),
    ],
    ids=["missing-key", "not-divisible", "zero-layers", "not-an-object"],
)
def test_invalid_config_in_metadata(tmp_path, loader, cfg, match):
    path = tmp_path / "m.safetensors"
    save_file(random_state(), path, metadata={"config": json.dumps(cfg)})
    with pytest.raises(ConfigError, match=match) as e:
        loader(path)
    assert str(path) in str(e.value)


def test_nonexistent_path(tmp_path, loader):
    with pytest.raises(CheckpointError, match=r"nope\.safetensors: no such checkpoint file"):
        loader(tmp_path / "nope.safetensors")


@pytest.mark.parametrize("missing", ["config.json", "model.safetensors", "both"])
def test_hf_dir_missing_a_file(tmp_path, loader, missing):
    folder = write_hf_dir(
        tmp_path / "hf",
        tensors=False if missing in ("model.safetensors", "both") else None,
        cfg=False if missing in ("config.json", "both") else None,
    )
    name = "config.json" if missing == "both" else missing
    with pytest.raises(
        CheckpointError, match=rf"needs config\.json and model\.safetensors; {name} is missing"
    ):
        loader(folder)


def test_hf_config_not_json(tmp_path, loader):
    folder = write_hf_dir(tmp_path / "hf")
    (folder / "config.json").write_text("{'n_layer': 2}")
    with pytest.raises(CheckpointError, match=r"config\.json: not valid JSON"):
        loader(folder)


def test_hf_config_not_an_object(tmp_path, loader):
    folder = write_hf_dir(tmp_path / "hf")
    (folder / "config.json").write_text("[]")
    with pytest.raises(ConfigError, match=r"config\.json: config must be a JSON object"):
        loader(folder)


def test_hf_weights_corrupt(tmp_path, loader):
    folder = write_hf_dir(tmp_path / "hf")
    (folder / "model.safetensors").write_bytes(b"\x01\x02\x03")
    with pytest.raises(CheckpointError, match=r"model\.safetensors: truncated \(3 bytes\)"):
        loader(folder)


def test_lm_head_differs_from_wte(tmp_path, loader):
    state = random_state()
    tensors = hf_tensors(state)
    tensors["lm_head.weight"] = tensors["lm_head.weight"] + np.float32(1e-3)
    folder = write_hf_dir(tmp_path / "hf", tensors)
    with pytest.raises(CheckpointError, match=r"lm_head\.weight differs from wte\.weight"):
        loader(folder)


def test_lm_head_of_another_shape(tmp_path, loader):
    tensors = hf_tensors(random_state())
    tensors["lm_head.weight"] = np.zeros((3, CONFIG.n_embd), np.float32)
    folder = write_hf_dir(tmp_path / "hf", tensors)
    with pytest.raises(CheckpointError, match=r"lm_head\.weight differs from wte\.weight"):
        loader(folder)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_weight(tmp_path, loader, bad):
    state = random_state()
    state["h.1.attn.c_attn.bias"][7] = bad
    path = _resave(tmp_path / "m.safetensors", state)
    with pytest.raises(CheckpointError, match=r"h\.1\.attn\.c_attn\.bias holds NaN or infinite values"):
        loader(path)


def test_non_finite_weight_in_hf_dir(tmp_path, loader):
    state = random_state()
    state["wpe.weight"][0, 0] = np.nan
    folder = write_hf_dir(tmp_path / "hf", hf_tensors(state))
    with pytest.raises(CheckpointError, match=r"wpe\.weight holds NaN"):
        loader(folder)


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint8, np.bool_])
def test_non_float_tensor(tmp_path, loader, dtype):
    state = random_state()
    state["ln_f.weight"] = np.ones(CONFIG.n_embd, dtype=dtype)
    path = _resave(tmp_path / "m.safetensors", state)
    with pytest.raises(
        CheckpointError, match=rf"ln_f\.weight has dtype {np.dtype(dtype)}, expected a float type"
    ):
        loader(path)


@pytest.mark.parametrize(
    "field, value",
    [
        ("activation_function", "gelu"),
        ("layer_norm_epsilon", 1e-6),
        ("scale_attn_by_inverse_layer_idx", True),
        ("tie_word_embeddings", False),
        ("n_inner", 3 * CONFIG.n_embd),
    ],
)
def test_hf_config_that_changes_the_numerics_is_rejected(tmp_path, loader, field, value):
    folder = write_hf_dir(tmp_path / "hf", cfg=hf_config(**{field: value}))
    with pytest.raises(ConfigError, match=f"{field} is {value!r}; the spec's GPT-2 needs"):
        loader(folder)


def test_hf_config_with_the_spec_values_spelled_out_loads(tmp_path, loader):
    cfg = hf_config(
        layer_norm_epsilon=1e-5, n_inner=4 * CONFIG.n_embd, scale_attn_weights=True, tie_word_embeddings=True
    )
    assert loader(write_hf_dir(tmp_path / "hf", cfg=cfg)).config == CONFIG


def test_hf_config_without_the_attention_scale_loads_as_that_ablation(tmp_path, loader):
    # Hugging Face's scale_attn_weights means what ours means (SPEC.md "Ablations")
    got = loader(write_hf_dir(tmp_path / "hf", cfg=hf_config(scale_attn_weights=False))).config
    assert got == dataclasses.replace(CONFIG, scale_attn_weights=False)


@pytest.mark.parametrize("ablation", ABLATIONS)
def test_an_ablated_config_survives_a_save_and_load(tmp_path, loader, ablation):
    config = dataclasses.replace(CONFIG, **{ablation: False})
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, config, random_state(config))
    assert loader(path).config == config


def test_errors_are_value_errors(tmp_path):
    # callers that catch ValueError keep working (shared/errors.py)
    with pytest.raises(ValueError):
        load_checkpoint(tmp_path / "missing.safetensors")


# GPT-2's four published config.json files (as the Hugging Face downloads hold them, dropout and all):
# each is a config every tier accepts, with the published parameter count
GPT2_CONFIGS = {
    "gpt2": (768, 12, 12, 124_439_808),
    "gpt2-medium": (1024, 24, 16, 354_823_168),
    "gpt2-large": (1280, 36, 20, 774_030_080),
    "gpt2-xl": (1600, 48, 25, 1_557_611_200),
}


@pytest.mark.parametrize("name", GPT2_CONFIGS)
def test_gpt2_published_configs(name):
    from shared.checkpoint import HF_REQUIRED
    from shared.config import GPTConfig
    from shared.params import num_params

    n_embd, n_layer, n_head, count = GPT2_CONFIGS[name]
    hf = {"activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"], "attn_pdrop": 0.1}
    hf |= {"bos_token_id": 50256, "embd_pdrop": 0.1, "eos_token_id": 50256, "initializer_range": 0.02}
    hf |= {"layer_norm_epsilon": 1e-05, "model_type": "gpt2", "n_ctx": 1024, "n_embd": n_embd}
    hf |= {"n_head": n_head, "n_layer": n_layer, "n_positions": 1024, "resid_pdrop": 0.1}
    hf |= {"summary_type": "cls_index", "summary_use_proj": True, "vocab_size": 50257}
    config = GPTConfig.from_dict(hf)
    assert (config.n_embd, config.n_layer, config.n_head, config.block_size) == (
        n_embd,
        n_layer,
        n_head,
        1024,
    )
    assert num_params(config) == count
    assert all(hf.get(key, value) == value for key, value in HF_REQUIRED.items())
