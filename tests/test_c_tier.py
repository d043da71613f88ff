# What the C tier promises beyond the conformance suite: results independent of the thread count and
# bit-identical from run to run, a checkpoint reader and writer in C that agree with shared/checkpoint.py,
# a standalone program that trains, resumes exactly and samples, and the ablations of SPEC.md "Ablations"
# seen through identities that need no reference.
import ctypes
import dataclasses
import json
import re
import subprocess
from ctypes import POINTER, c_char_p, c_float, c_int, c_int64
from pathlib import Path

import numpy as np
import pytest

import impl_c
from conformance.compare import random_state_dict
from impl_c.gpt import CConfig, library
from shared.checkpoint import OptimizerState, load_checkpoint, save_checkpoint
from shared.config import ABLATIONS, GPTConfig
from shared.data import prepare
from shared.errors import DivergenceError, InputError
from shared.params import param_shapes
from shared.schedule import AdamWConfig
from shared.tokenizer import WordTokenizer, tokenizer_from_json
from shared.tokens import write_tokens
from shared.tolerances import FLOAT32, rel_l2

CONFIG = GPTConfig(n_layer=2, n_head=3, n_embd=48, block_size=24, vocab_size=37)
IMPL_C = Path(impl_c.__file__).resolve().parent


def batch(config, B, T, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, config.vocab_size, (B, T)), rng.integers(0, config.vocab_size, (B, T))


def run_steps(threads: int):
    impl_c.set_num_threads(threads)
    try:
        model = impl_c.from_state_dict(CONFIG, random_state_dict(CONFIG, seed=1))
        x, y = batch(CONFIG, 3, CONFIG.block_size)
        losses = [model.train_step(x, y, 1e-2) for _ in range(3)]
        _, grads = model.grads(x, y)
        return losses, model.state_dict(), grads, model.forward(x)[0]
    finally:
        impl_c.set_num_threads(0)


def test_results_do_not_depend_on_the_thread_count():
    one, two, three = run_steps(1), run_steps(2), run_steps(3)
    for other in (two, three):
        assert one[0] == other[0]
        for name in one[1]:
            np.testing.assert_array_equal(one[1][name], other[1][name], err_msg=name)
            np.testing.assert_array_equal(one[2][name], other[2][name], err_msg=name)
        np.testing.assert_array_equal(one[3], other[3])


def test_repeated_runs_are_bit_identical():
    a, b = run_steps(2), run_steps(2)
    assert a[0] == b[0]
    for name in a[1]:
        np.testing.assert_array_equal(a[1][name], b[1][name], err_msg=name)


# ---- the C checkpoint reader and writer against shared/checkpoint.py ----


def flat(state: dict) -> np.ndarray:
    return np.concatenate([state[n].reshape(-1) for n in param_shapes(CONFIG)]).astype(np.float32)


def c_read(path):
    lib, err = library(), ctypes.create_string_buffer(512)
    cfg, has_opt = CConfig(), c_int(0)
    rc = lib.st_read_config(str(path).encode(), ctypes.byref(cfg), ctypes.byref(has_opt), err, 512)
    if rc != 0:
        return rc, err.value.decode(), None
    n = lib.gpt_num_params(cfg)
    params, m, v = (np.zeros(n, np.float32) for _ in range(3))
    step, meta = c_int64(-1), ctypes.create_string_buffer(1 << 16)
    ptr = lambda a: a.ctypes.data_as(POINTER(c_float))
    rc = lib.st_read_checkpoint(
        str(path).encode(), cfg, ptr(params), ptr(m), ptr(v), ctypes.byref(step), meta, 1 << 16, err, 512
    )
    out = {
        "config": cfg.to_config(),
        "has_optimizer": has_opt.value,
        "params": params,
        "m": m,
        "v": v,
        "step": step.value,
        "metadata": json.loads(meta.value or b"{}"),
    }
    return rc, err.value.decode(), out


def test_c_reads_what_python_writes(tmp_path):
    state, m, v = (random_state_dict(CONFIG, seed=s) for s in (1, 2, 3))
    v = {n: np.abs(a) for n, a in v.items()}  # second moments are >= 0 (SPEC.md "Limits")
    path = tmp_path / "ckpt.safetensors"
    opt = OptimizerState(7, m, v, AdamWConfig(beta2=0.99))
    save_checkpoint(path, CONFIG, state, opt, {"tokenizer": json.dumps("abc")})
    rc, err, got = c_read(path)
    assert rc == 0, err
    assert got["config"] == CONFIG and got["has_optimizer"] == 1 and got["step"] == 7
    np.testing.assert_array_equal(got["params"], flat(state))
    np.testing.assert_array_equal(got["m"], flat(m))
    np.testing.assert_array_equal(got["v"], flat(v))
    assert got["metadata"]["tokenizer"] == json.dumps("abc")


def test_python_reads_what_c_writes(tmp_path):
    lib, err = library(), ctypes.create_string_buffer(512)
    state, m, v = (flat(random_state_dict(CONFIG, seed=s)) for s in (4, 5, 6))
    v = np.abs(v)  # m any finite values; v finite and >= 0 (SPEC.md "Limits")
    keys = (c_char_p * 1)(b"tokenizer")
    values = (c_char_p * 1)(json.dumps("xyz").encode())
    ptr = lambda a: a.ctypes.data_as(POINTER(c_float))
    path = tmp_path / "c.safetensors"
    rc = lib.st_write_checkpoint(
        str(path).encode(),
        CConfig.from_config(CONFIG),
        ptr(state),
        ptr(m),
        ptr(v),
        5,
        keys,
        values,
        1,
        err,
        512,
    )
    assert rc == 0, err.value
    ckpt = load_checkpoint(path)
    assert (
        ckpt.config == CONFIG and ckpt.optimizer.step == 5 and ckpt.metadata["tokenizer"] == json.dumps("xyz")
    )
    np.testing.assert_array_equal(flat(ckpt.state), state)
    np.testing.assert_array_equal(flat(ckpt.optimizer.m), m)
    np.testing.assert_array_equal(flat(ckpt.optimizer.v), v)


@pytest.mark.parametrize("cut", [0, 4, 8, 100, -1])
def test_c_rejects_truncated_files_without_crashing(tmp_path, cut):
    path = tmp_path / "ckpt.safetensors"
    save_checkpoint(path, CONFIG, random_state_dict(CONFIG, seed=1))
    data = path.read_bytes()
    path.write_bytes(data[:cut] if cut >= 0 else data[: len(data) // 2])
    rc, err, _ = c_read(path)
    assert rc != 0 and str(path) in err


# ---- the standalone program ----


@pytest.fixture(scope="module")
def program():
    subprocess.run(["make", "-s", "-C", str(IMPL_C), "train_gpt"], check=True, capture_output=True)
    return str(IMPL_C / "train_gpt")


def train(program, *args, cwd):
    r = subprocess.run([program, "train", *args], capture_output=True, text=True, cwd=cwd, check=False)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text("First Citizen:\nBefore we proceed any further, hear me speak.\n" * 40)
    return path


def train_small(program, text_file, ckpt, *args):
    """A one-layer model trained by the program into ckpt, evaluating every 2 steps on one batch."""
    return train(
        program,
        *["--data", str(text_file), *small_model(1), "--eval-interval", "2", "--eval-iters", "1"],
        *args,
        "--out",
        str(ckpt),
        cwd=ckpt.parent,
    )


def small_model(n_layer: int) -> list[str]:
    return f"--n-layer {n_layer} --n-head 2 --n-embd 16 --block-size 16".split()


def test_program_trains_and_resumes_exactly(program, text_file, tmp_path):
    common = ["--data", str(text_file), *small_model(2), "--batch-size", "4", "--eval-iters", "1"]
    common += ["--eval-interval", "3", "--decay-steps", "6", "--threads", "2"]
    out = train(
        program, *common, "--steps", "6", "--out", str(tmp_path / "straight.safetensors"), cwd=tmp_path
    )
    assert "step     6" in out and "--- sample ---" in out
    # the same run stopped at step 3, then resumed to step 6 with the settings its checkpoint holds
    half = tmp_path / "half.safetensors"
    train(program, *common, "--steps", "3", "--out", str(half), cwd=tmp_path)
    assert load_checkpoint(half).optimizer.step == 3
    train(program, "--data", str(text_file), "--resume", str(half), "--steps", "6", cwd=tmp_path)
    straight, resumed = load_checkpoint(tmp_path / "straight.safetensors"), load_checkpoint(half)
    assert straight.optimizer.step == resumed.optimizer.step == 6
    for name, p in straight.state.items():
        np.testing.assert_array_equal(resumed.state[name], p, err_msg=name)


def test_program_checkpoint_loads_in_the_python_tiers_and_samples(program, text_file, tmp_path):
    ckpt = tmp_path / "c.safetensors"
    train_small(program, text_file, ckpt, "--steps", "4")
    model = impl_c.load(ckpt)
    assert model.step == 4
    r = subprocess.run(
        [program, "sample", "--ckpt", str(ckpt), "--prompt", "First", "--tokens", "20", "--temperature", "0"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0 and r.stdout.startswith("First"), r.stderr
    r = subprocess.run(
        [program, "sample", "--ckpt", str(tmp_path / "missing.safetensors")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode != 0 and "missing.safetensors" in r.stderr


# ---- the program on token files (SPEC.md "Token files") ----


def step_lines(out: str) -> list[str]:
    """The losses the program printed, without the timings."""
    return re.findall(r"step +\d+: train loss [\d.]+, val loss [\d.]+", out)


def token_args(folder: Path) -> list[str]:
    return ["--train-bin", str(folder / "train.bin"), "--val-bin", str(folder / "val.bin")]


def test_program_on_token_files_trains_as_on_the_text(program, text_file, tmp_path):
    # prepare() writes the text's ids, split as the program splits the text itself; read from the
    # files, the same ids give the same batches, so the same run, bit for bit
    prepare(text_file, tmp_path / "tok", progress=False)
    common = [*small_model(1), "--batch-size", "4", "--eval-interval", "2", "--eval-iters", "2"]
    common += ["--steps", "6", "--threads", "2"]
    text_run = train(
        program, "--data", str(text_file), *common, "--out", str(tmp_path / "a.safetensors"), cwd=tmp_path
    )
    token_run = train(
        program,
        *token_args(tmp_path / "tok"),
        *common,
        "--out",
        str(tmp_path / "b.safetensors"),
        cwd=tmp_path,
    )
    assert len(step_lines(text_run)) == 4 and step_lines(text_run) == step_lines(token_run)
    a, b = load_checkpoint(tmp_path / "a.safetensors"), load_checkpoint(tmp_path / "b.safetensors")
    for name, p in a.state.items():
        np.testing.assert_array_equal(b.state[name], p, err_msg=name)
    # the tokenizer beside the token files is the checkpoint's, as written, and decodes in Python
    assert b.metadata["tokenizer"] == (tmp_path / "tok" / "tokenizer.json").read_text()
    tok = tokenizer_from_json(b.metadata["tokenizer"])
    assert tok.chars == tokenizer_from_json(a.metadata["tokenizer"]).chars
    assert impl_c.load(tmp_path / "b.safetensors").step == 6
    r = subprocess.run(
        [program, "sample", "--ckpt", str(tmp_path / "b.safetensors"), "--prompt", "First", "--tokens", "5"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0 and r.stdout.startswith("First"), r.stderr


def test_program_on_uint32_token_files_without_a_tokenizer(program, tmp_path):
    V = 70_000  # past uint16
    ids = np.random.default_rng(0).integers(0, V, 3000)
    ids[:100] = V - 1
    write_tokens(tmp_path / "train.bin", ids[:2500], V, "bpe")
    write_tokens(tmp_path / "val.bin", ids[2500:], V, "bpe")
    args = [*token_args(tmp_path), *small_model(1), "--batch-size", "2", "--eval-iters", "1", "--steps", "2"]
    out = train(program, *args, "--out", str(tmp_path / "c.safetensors"), cwd=tmp_path)
    assert "vocab_size 70000" in out and "data: 2500 train / 500 val tokens" in out
    ckpt = load_checkpoint(tmp_path / "c.safetensors")
    assert ckpt.config.vocab_size == V and ckpt.optimizer.step == 2
    # no tokenizer.json: V placeholder characters, U+0100 + id, past the surrogates U+D800..U+DFFF
    placeholders = tokenizer_from_json(ckpt.metadata["tokenizer"])
    assert placeholders.vocab_size == V
    assert placeholders.decode([0, 0xD7FF - 0x100, 0xD800 - 0x100, V - 1]) == "".join(
        map(chr, [0x100, 0xD7FF, 0xE000, 0x100 + V - 1 + 0x800])
    )


def test_program_carries_any_tokenizer_and_resumes_on_token_files(program, text_file, tmp_path):
    word = WordTokenizer.train(text_file.read_text(), 12)
    prepare(text_file, tmp_path / "tok", word, progress=False)
    common = [*token_args(tmp_path / "tok"), *small_model(1), "--batch-size", "2", "--eval-iters", "1"]
    common += ["--eval-interval", "2", "--decay-steps", "4"]
    train(program, *common, "--steps", "4", "--out", str(tmp_path / "straight.safetensors"), cwd=tmp_path)
    half = tmp_path / "half.safetensors"
    train(program, *common, "--steps", "2", "--out", str(half), cwd=tmp_path)
    train(program, *token_args(tmp_path / "tok"), "--resume", str(half), "--steps", "4", cwd=tmp_path)
    straight, resumed = load_checkpoint(tmp_path / "straight.safetensors"), load_checkpoint(half)
    assert resumed.optimizer.step == 4
    for name, p in straight.state.items():
        np.testing.assert_array_equal(resumed.state[name], p, err_msg=name)
    for ckpt in (straight, resumed):  # the word tokenizer's JSON, carried as it is, through the resume too
        assert ckpt.metadata["tokenizer"] == word.to_json()
        assert tokenizer_from_json(ckpt.metadata["tokenizer"]).words == word.words
    r = subprocess.run([program, "sample", "--ckpt", str(half)], capture_output=True, text=True, check=False)
    assert (
        r.returncode == 2
        and "not the character tokenizer" in r.stderr
        and "transformer.py sample" in r.stderr
    )


def program_error(program, *args, cwd) -> str:
    r = subprocess.run([program, "train", *args], capture_output=True, text=True, cwd=cwd, check=False)
    assert r.returncode != 0, r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr  # one clear line
    return lines[0]


def test_program_refuses_bad_token_files(program, text_file, tmp_path):
    good = tmp_path / "good"
    ids = np.arange(3000) % 10
    write_tokens(good / "train.bin", ids, 10, "char")
    write_tokens(good / "val.bin", ids[:500], 10, "char")
    model = [*small_model(1), "--batch-size", "2", "--eval-iters", "1", "--steps", "2"]
    run = lambda *a: program_error(
        program, *a, *model, "--out", str(tmp_path / "x.safetensors"), cwd=tmp_path
    )
    nano = tmp_path / "nano.bin"  # nanoGPT's prepare.py: the ids, no header
    ids.astype(np.uint16).tofile(nano)
    msg = run("--train-bin", str(nano), "--val-bin", str(good / "val.bin"))
    assert "nano.bin: not a token file" in msg and "headerless nanoGPT" in msg and "from-nanogpt" in msg
    msg = run("--train-bin", str(text_file), "--val-bin", str(good / "val.bin"))
    assert "not a token file" in msg and "python transformer.py prepare" in msg
    truncated = tmp_path / "truncated.bin"
    truncated.write_bytes((good / "train.bin").read_bytes()[:-1])
    assert "truncated.bin: 7023 bytes, but its header says 3000 tokens of 2 bytes" in run(
        "--train-bin", str(truncated), "--val-bin", str(good / "val.bin")
    )
    msg = run(*token_args(good), "--vocab-size", "11")
    assert "--vocab-size 11, but the token files say vocab_size 10" in msg
    write_tokens(tmp_path / "other.bin", ids, 11, "char")
    assert "disagree on vocab_size" in run(
        "--train-bin", str(tmp_path / "other.bin"), "--val-bin", str(good / "val.bin")
    )
    corrupt = tmp_path / "corrupt.bin"  # a valid header over ids the writer would have refused
    corrupt.write_bytes((good / "train.bin").read_bytes()[:1024] + np.full(3000, 50, "<u2").tobytes())
    msg = run("--train-bin", str(corrupt), "--val-bin", str(good / "val.bin"))
    assert "token id 50 at position" in msg and "outside [0, 10): the file is corrupt" in msg
    assert "no such file" in run(
        "--train-bin", str(tmp_path / "nowhere.bin"), "--val-bin", str(good / "val.bin")
    )
    # resuming on token files of another vocabulary
    ckpt = tmp_path / "ckpt.safetensors"
    train(program, *token_args(good), *model, "--out", str(ckpt), cwd=tmp_path)
    write_tokens(tmp_path / "v11" / "train.bin", ids, 11, "char")
    write_tokens(tmp_path / "v11" / "val.bin", ids, 11, "char")
    msg = program_error(program, *token_args(tmp_path / "v11"), "--resume", str(ckpt), cwd=tmp_path)
    assert "the token files' vocab_size 11 is not the checkpoint's 10" in msg


# ---- the ablations (SPEC.md "Ablations"); the comparison with the float64 reference is the suite's ----


def ablated(*off: str) -> GPTConfig:
    """CONFIG with the named ablations switched off."""
    return dataclasses.replace(CONFIG, **{name: False for name in off})


@pytest.mark.parametrize("ablation", ABLATIONS)
def test_an_ablated_config_reaches_c_and_comes_back(tmp_path, ablation):
    config = ablated(ablation)
    model = impl_c.from_state_dict(config, random_state_dict(config, seed=1))
    assert model._lib.gpt_config(model._ptr).to_config() == config  # the C model's own config
    # our file read by the binding and by the C reader; the C writer's file read by shared/checkpoint.py
    model.save(tmp_path / "py.safetensors")
    assert impl_c.load(tmp_path / "py.safetensors").config == config
    rc, err, got = c_read(tmp_path / "py.safetensors")
    assert rc == 0 and got["config"] == config, err
    lib, err = library(), ctypes.create_string_buffer(512)
    ptr = lambda a: a.ctypes.data_as(POINTER(c_float))
    state = np.ascontiguousarray(flat(model.state_dict()))
    path = str(tmp_path / "c.safetensors").encode()
    rc = lib.st_write_checkpoint(
        path, CConfig.from_config(config), ptr(state), None, None, 0, None, None, 0, err, 512
    )
    assert rc == 0, err.value
    assert load_checkpoint(tmp_path / "c.safetensors").config == config


def test_without_position_embedding_wpe_is_not_used():
    config = ablated("position_embedding")
    state = random_state_dict(config, seed=1)
    x, y = batch(config, 2, config.block_size)
    model = impl_c.from_state_dict(config, state)
    logits, loss = model.forward(x, y)
    decoded = model.decode(x, n_prefill=5)
    _, grads = model.grads(x, y)
    assert not grads["wpe.weight"].any()  # exactly 0
    assert all(g.any() for name, g in grads.items() if name != "wpe.weight")
    other = impl_c.from_state_dict(
        config, {**state, "wpe.weight": random_state_dict(config, seed=2)["wpe.weight"]}
    )
    other_logits, other_loss = other.forward(x, y)
    np.testing.assert_array_equal(other_logits, logits)
    assert other_loss == loss
    np.testing.assert_array_equal(other.decode(x, n_prefill=5), decoded)
    assert rel_l2(decoded, logits) < FLOAT32["decode"]  # the KV cache has no wpe term either


@pytest.mark.parametrize("position_embedding", [False, True])
def test_one_block_without_position_embedding_sees_a_bag_of_tokens(position_embedding):
    # with one block and no positions, the last query attends over a set: shuffling the tokens before it
    # leaves its logits as they were (up to the order of float32 sums); with positions it does not
    config = dataclasses.replace(CONFIG, n_layer=1, position_embedding=position_embedding)
    model = impl_c.from_state_dict(config, random_state_dict(config, seed=1))
    x, _ = batch(config, 2, config.block_size)
    shuffled = np.concatenate([np.random.default_rng(3).permuted(x[:, :-1], axis=1), x[:, -1:]], axis=1)
    assert (shuffled != x).any()
    last, last_shuffled = model.forward(x)[0][:, -1], model.forward(shuffled)[0][:, -1]
    same = np.allclose(last_shuffled, last, rtol=1e-5, atol=1e-5)
    assert same != position_embedding


def test_without_the_scale_q_carries_it():
    # q @ k^T with no scale is (sqrt(HS) q) @ k^T / sqrt(HS): the ablated model is GPT-2 with c_attn's q
    # columns (weight and bias) multiplied by sqrt(HS), and its gradients there sqrt(HS) times GPT-2's
    config = ablated("scale_attn_weights")
    C, s = config.n_embd, np.sqrt(config.head_size)
    state = random_state_dict(config, seed=1)
    scaled = dict(state)
    for i in range(config.n_layer):
        for name in (f"h.{i}.attn.c_attn.weight", f"h.{i}.attn.c_attn.bias"):
            scaled[name] = state[name].copy()
            scaled[name][..., :C] *= s
    x, y = batch(config, 2, config.block_size)
    ablated_model = impl_c.from_state_dict(config, state)
    gpt2 = impl_c.from_state_dict(CONFIG, scaled)
    logits, loss = ablated_model.forward(x, y)
    want_logits, want_loss = gpt2.forward(x, y)
    assert rel_l2(logits, want_logits) < FLOAT32["logits"]
    assert loss == pytest.approx(want_loss, rel=1e-6)
    _, grads = ablated_model.grads(x, y)
    _, want = gpt2.grads(x, y)
    for i in range(config.n_layer):
        for name in (f"h.{i}.attn.c_attn.weight", f"h.{i}.attn.c_attn.bias"):
            want[name][..., :C] *= s
    for name, g in grads.items():
        assert rel_l2(g, want[name]) < FLOAT32["grads"], name
    assert rel_l2(ablated_model.decode(x, n_prefill=3), logits) < FLOAT32["decode"]


def test_without_the_residual_each_half_replaces_the_stream():
    config = ablated("residual")
    state = random_state_dict(config, seed=1)
    x, y = batch(config, 2, config.block_size)
    model = impl_c.from_state_dict(config, state)
    acts = model.activations(x)
    for i in range(config.n_layer):
        np.testing.assert_array_equal(acts[f"h.{i}.res_1"], acts[f"h.{i}.attn.out"])
        np.testing.assert_array_equal(acts[f"h.{i}.res_2"], acts[f"h.{i}.mlp.out"])
    logits, loss = model.forward(x, y)
    gpt2_logits, gpt2_loss = impl_c.from_state_dict(CONFIG, state).forward(x, y)
    assert np.abs(logits - gpt2_logits).max() > 1e-2 and loss != gpt2_loss
    assert rel_l2(model.decode(x, n_prefill=4), logits) < FLOAT32["decode"]
    _, grads = model.grads(x, y)
    assert all(g.any() for g in grads.values())


def test_every_ablation_at_once():
    config = ablated(*ABLATIONS)
    x, y = batch(config, 2, config.block_size)
    model = impl_c.from_state_dict(config, random_state_dict(config, seed=1))
    logits, _ = model.forward(x, y)
    _, grads = model.grads(x, y)
    assert not grads["wpe.weight"].any() and np.isfinite(logits).all()
    assert rel_l2(model.decode(x, n_prefill=2), logits) < FLOAT32["decode"]


def test_program_trains_an_ablated_model(program, text_file, tmp_path):
    ckpt = tmp_path / "ablated.safetensors"
    out = train_small(program, text_file, ckpt, "--steps", "2", "--no-residual")
    assert "residual off" in out
    assert impl_c.load(ckpt).config.ablated == ("residual",)


@pytest.mark.parametrize(("N", "C", "OC"), [(1, 7, 65), (3, 129, 17), (65, 33, 129), (768, 128, 512)])
def test_matmul_matches_numpy(N, C, OC):
    # the binding's matmul (the benchmarks time it): the few-rows path (N <= 4) and the packed one
    rng = np.random.default_rng(N)
    x, w, b = rng.standard_normal((N, C)), rng.standard_normal((C, OC)), rng.standard_normal(OC)
    want = x @ w + b
    got = impl_c.gpt.matmul(x, w, [float(v) for v in b])
    assert np.abs(got - want).max() < 1e-5 * np.abs(want).max()
    np.testing.assert_allclose(impl_c.gpt.matmul(x, w), x @ w, rtol=1e-4, atol=1e-4)


def test_matmul_rejects_mismatched_shapes():
    x, w = np.zeros((4, 3)), np.zeros((3, 5))
    for args in [(x, w.T), (x[0], w), (x, w, np.zeros(4))]:
        with pytest.raises(InputError, match="matmul needs x"):
            impl_c.gpt.matmul(*args)


# ---- SPEC.md "Limits" through the binding and the C reader and writer ----

ST_ERR_CHECKPOINT = 5


def c_write(path, state, m=None, v=None, step=0, metadata=None):
    lib, err = library(), ctypes.create_string_buffer(512)
    metadata = metadata or {}
    keys = (c_char_p * max(len(metadata), 1))(*[k.encode() for k in metadata])
    values = (c_char_p * max(len(metadata), 1))(*[v_.encode() for v_ in metadata.values()])
    ptr = lambda a: None if a is None else a.ctypes.data_as(POINTER(c_float))
    rc = lib.st_write_checkpoint(
        str(path).encode(), CConfig.from_config(CONFIG), ptr(state), ptr(m), ptr(v), step, keys, values,
        len(metadata), err, 512,
    )  # fmt: skip
    return rc, err.value.decode()


def training_state(seed=0):
    state, m, v = (flat(random_state_dict(CONFIG, seed=seed + s)) for s in (0, 1, 2))
    return state, m, np.abs(v)


@pytest.mark.parametrize("step", [2**31 - 1, 2**31, 2**32 + 3, 2**53])
def test_a_64_bit_step_is_written_and_read_exactly(tmp_path, step):
    # a 32-bit step wrapped (2^32 + 3 read as 3) or was refused
    state, m, v = training_state()
    rc, err = c_write(tmp_path / "c.safetensors", state, m, v, step)
    assert rc == 0, err
    rc, err, got = c_read(tmp_path / "c.safetensors")
    assert rc == 0 and got["step"] == step, err
    assert load_checkpoint(tmp_path / "c.safetensors").optimizer.step == step


@pytest.mark.parametrize("step", [-1, 2**53 + 1])
def test_the_c_writer_refuses_a_step_outside_the_limits(tmp_path, step):
    state, m, v = training_state()
    rc, err = c_write(tmp_path / "c.safetensors", state, m, v, step)
    assert rc == ST_ERR_CHECKPOINT and "0 .. 2^53" in err
    assert not (tmp_path / "c.safetensors").exists()


@pytest.mark.parametrize("what", ["nan weight", "inf first moment", "negative second moment"])
def test_the_c_writer_refuses_what_the_readers_reject(tmp_path, what):
    state, m, v = training_state()
    {"nan weight": state, "inf first moment": m, "negative second moment": v}[what][5] = {
        "nan weight": np.nan,
        "inf first moment": np.inf,
        "negative second moment": -1e-3,
    }[what]
    rc, err = c_write(tmp_path / "c.safetensors", state, m, v, 3)
    assert rc == ST_ERR_CHECKPOINT and "wte.weight holds" in err, err
    assert list(tmp_path.iterdir()) == []


def raw_checkpoint(path, tensors: dict, metadata: dict):
    # any file, past the Python writer's checks: safetensors' own serializer
    from safetensors.numpy import save_file

    save_file({k: np.ascontiguousarray(a, dtype=np.float32) for k, a in tensors.items()}, str(path), metadata)


def training_tensors(v_sign=1.0):
    state, m, v = (random_state_dict(CONFIG, seed=s) for s in (1, 2, 3))
    tensors = dict(state)
    tensors.update({f"optim.m.{n}": a for n, a in m.items()})
    tensors.update({f"optim.v.{n}": v_sign * np.abs(a) for n, a in v.items()})
    return tensors


def test_the_c_reader_refuses_a_negative_second_moment(tmp_path):
    # a negative v made the next step's sqrt(v) NaN: it was accepted before
    tensors = training_tensors()
    tensors["optim.v.h.1.mlp.c_fc.bias"][3] = -0.5
    path = tmp_path / "neg.safetensors"
    raw_checkpoint(path, tensors, {"config": CONFIG.to_json(), "step": "4"})
    rc, err, _ = c_read(path)
    assert rc == ST_ERR_CHECKPOINT and "h.1.mlp.c_fc.bias holds a negative value" in err, err


@pytest.mark.parametrize(
    "adamw",
    ['{"eps": true}', '{"beta1": 1.0}', '{"beta2": -0.01}', '{"eps": 0.0}', '{"weight_decay": -1}',
     '{"grad_clip": 0}', '{"grad_clip": false}'],
)  # fmt: skip
def test_the_c_reader_refuses_adamw_settings_out_of_range(tmp_path, adamw):
    path = tmp_path / "adamw.safetensors"
    raw_checkpoint(path, training_tensors(), {"config": CONFIG.to_json(), "step": "4", "adamw": adamw})
    rc, err, _ = c_read(path)
    assert rc == ST_ERR_CHECKPOINT and "AdamW settings" in err, err


@pytest.mark.parametrize("n_layer, n_embd, code, says", [
    (10**6, 4, 1, "config.n_layer must be in 1 .. 65536, got 1000000"),
    (65536, 4, ST_ERR_CHECKPOINT, "needs 786436 tensors; the file has"),
])  # fmt: skip
def test_a_small_file_claiming_a_huge_config_is_refused_at_once(tmp_path, n_layer, n_embd, code, says):
    path = tmp_path / "huge.safetensors"
    config = json.dumps({"block_size": 3, "n_embd": n_embd, "n_head": 1, "n_layer": n_layer, "vocab_size": 5})
    raw_checkpoint(path, {"pad": np.zeros(5000, np.float32)}, {"config": config})
    assert 19_000 < path.stat().st_size < 21_000
    lib, err, cfg = library(), ctypes.create_string_buffer(512), CConfig()
    rc = lib.st_read_config(str(path).encode(), ctypes.byref(cfg), None, err, 512)
    assert rc == code and says in err.value.decode(), err.value


def snapshot(model):
    opt = model.optimizer_state()
    return model.state_dict(), opt.m, opt.v, opt.step


def assert_unchanged(model, before):
    after = snapshot(model)
    assert after[3] == before[3]
    for a, b in zip(after[:3], before[:3]):
        for name in a:
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_step_2_31_minus_1_trains_one_step():
    # a 32-bit counter overflowed to INT_MIN here, and every weight became NaN
    model = impl_c.from_state_dict(CONFIG, random_state_dict(CONFIG, seed=1))
    zeros = {n: np.zeros(s, np.float32) for n, s in param_shapes(CONFIG).items()}
    model.load_optimizer_state(OptimizerState(2**31 - 1, zeros, zeros))
    x, y = batch(CONFIG, 2, 8)
    assert np.isfinite(model.train_step(x, y, 1e-3))
    assert model.step == 2**31
    assert all(np.isfinite(a).all() for a in model.state_dict().values())


def test_a_model_at_step_2_53_takes_no_more_steps():
    model = impl_c.from_state_dict(CONFIG, random_state_dict(CONFIG, seed=1))
    zeros = {n: np.zeros(s, np.float32) for n, s in param_shapes(CONFIG).items()}
    with pytest.raises(InputError, match="2\\^53"):
        model.load_optimizer_state(OptimizerState(2**53 + 1, zeros, zeros))
    model.load_optimizer_state(OptimizerState(2**53, zeros, zeros))
    before = snapshot(model)
    x, y = batch(CONFIG, 2, 8)
    with pytest.raises(InputError, match="2\\^53"):
        model.train_step(x, y, 1e-3)
    assert_unchanged(model, before)


def test_an_absurd_learning_rate_diverges_and_changes_nothing():
    model = impl_c.from_state_dict(CONFIG, random_state_dict(CONFIG, seed=1))
    x, y = batch(CONFIG, 2, 8)
    with pytest.raises(DivergenceError) as caught:
        for _ in range(5):
            before = snapshot(model)
            model.train_step(x, y, 1e30)
    step = before[3]
    assert str(caught.value).startswith(f"step {step}: the ") and "the run diverged" in str(caught.value)
    assert_unchanged(model, before)


def test_a_nan_weight_makes_the_loss_nan_and_the_step_is_refused():
    model = impl_c.from_state_dict(CONFIG, random_state_dict(CONFIG, seed=1))
    model._params[-1] = np.nan  # ln_f.bias[-1], in C's buffer: from_state_dict refuses a NaN weight
    zeros = {n: np.zeros(s, np.float32) for n, s in param_shapes(CONFIG).items()}
    model.load_optimizer_state(OptimizerState(12, zeros, zeros))
    before = snapshot(model)
    x, y = batch(CONFIG, 2, 8)
    with pytest.raises(DivergenceError, match=r"^step 12: the loss is nan; the run diverged \(try a lower"):
        model.train_step(x, y, 1e-3)
    assert_unchanged(model, before)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_apply_grads_refuses_non_finite_gradients(bad):
    model = impl_c.from_state_dict(CONFIG, random_state_dict(CONFIG, seed=1))
    grads = random_state_dict(CONFIG, seed=2)
    grads["h.0.attn.c_attn.bias"][7] = bad
    before = snapshot(model)
    with pytest.raises(
        InputError, match=r"^grads\['h\.0\.attn\.c_attn\.bias'\] holds NaN or inf$"
    ):  # shared/checks.py, before C
        model.apply_grads(grads, 1e-3)
    assert_unchanged(model, before)
