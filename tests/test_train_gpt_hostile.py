# train_gpt (impl_c/train_gpt.c) against a hostile or careless command line (issue 14, SPEC.md "Limits"):
# a mistake is refused before any work, in one line on stderr ("error: ..."), with exit status 2 (as transformer.py),
# 1 only where the system refuses, and nothing on disk changes. Also what a run owes the
# files it writes: a lock per checkpoint, no stale temporary files, a checkpoint on Ctrl-C, no checkpoint
# from a diverged run. Tiny models, a few steps each. TRAIN_GPT=path runs the tests against another
# build of the program (an older one, to see which of them it fails).
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import impl_c
from shared.checkpoint import load_checkpoint
from shared.cli import CheckpointLock
from shared.data import prepare
from shared.tokenizer import tokenizer_from_json

IMPL_C = Path(impl_c.__file__).resolve().parent
TINY = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16"]
TINY += ["--batch-size", "2", "--eval-iters", "1"]


@pytest.fixture(scope="module")
def program():
    if os.environ.get("TRAIN_GPT"):
        return os.environ["TRAIN_GPT"]
    subprocess.run(["make", "-s", "-C", str(IMPL_C), "train_gpt"], check=True, capture_output=True)
    return str(IMPL_C / "train_gpt")


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "text.txt"
    path.write_text("First Citizen:\nBefore we proceed any further, hear me speak.\n" * 40)
    return path


@pytest.fixture(scope="module")
def trained(program, text_file, tmp_path_factory):
    """The bytes of a 2-step training checkpoint of the TINY model on text_file."""
    ckpt = tmp_path_factory.mktemp("trained") / "ckpt.safetensors"
    r = run(
        program, "train", "--data", text_file, *TINY, "--steps", "2", "--eval-interval", "2", "--out", ckpt
    )
    assert r.returncode == 0, r.stderr
    return ckpt.read_bytes()


def run(program, *args, timeout=60, cwd=None):
    return subprocess.run(
        [program, *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=cwd, check=False
    )


def refused(r, status: int) -> str:
    """The one line of a refusal: exit status `status`, "error: ...", no sanitizer report, no crash."""
    lines = r.stderr.strip().splitlines()
    assert r.returncode == status and len(lines) == 1 and lines[0].startswith("error: "), (
        r.returncode,
        r.stderr,
    )
    assert "Sanitizer" not in r.stderr and "Segmentation" not in r.stderr
    return lines[0]


def without(flag: str, args: list[str]) -> list[str]:
    """args (pairs of flag and value) less flag's pair."""
    return [a for k, v in zip(args[::2], args[1::2]) if k != flag for a in (k, v)]


def ckpt_copy(trained: bytes, folder: Path) -> Path:
    path = folder / "ckpt.safetensors"
    path.write_bytes(trained)
    return path


# ---- 1. numbers read whole and in range; flags known and given once ----

BAD_TRAIN_NUMBERS = [
    ("--steps", "99999999999999999999", "out of range"),  # atoi made it -1; 99999999999 became 1215752191
    ("--steps", "12abc", "not an integer"),  # atoi read 12
    ("--steps", "0", "out of range"),
    ("--batch-size", "0", "out of range"),
    ("--batch-size", "2.5", "not an integer"),
    ("--eval-interval", "0", "out of range"),
    ("--eval-iters", "-3", "out of range"),
    ("--n-layer", "0", "out of range"),
    ("--n-layer", "65537", "out of range"),  # SPEC.md "Limits": 2^16
    ("--n-head", "0", "out of range"),
    ("--n-embd", "1048577", "out of range"),  # 2^20
    ("--block-size", "1048577", "out of range"),  # 2^20
    ("--vocab-size", "2147483647", "out of range"),  # 2^30; atoi took it, and the text ignored it
    ("--warmup", "-1", "out of range"),
    ("--decay-steps", "-1", "out of range"),
    ("--seed", "-1", "out of range"),
    ("--threads", "-1", "out of range"),
    ("--lr", "0", "out of range"),
    ("--lr", "nan", "out of range"),
    ("--lr", "1e999", "out of range"),
    ("--lr", "3e-3x", "not a number"),
    ("--min-lr", "-1e-9", "out of range"),
]


@pytest.mark.parametrize("flag,value,problem", BAD_TRAIN_NUMBERS)
def test_train_numbers_are_read_whole_and_range_checked(program, text_file, tmp_path, flag, value, problem):
    out = tmp_path / "out.safetensors"
    args = [*without(flag, [*TINY, "--steps", "2"]), flag, value]
    r = run(program, "train", "--data", text_file, *args, "--out", out)
    msg = refused(r, 2)
    assert f"{flag} {value}" in msg or f"{flag} '{value}'" in msg
    assert problem in msg and not out.exists() and "step" not in r.stdout


BAD_SAMPLE_NUMBERS = [
    ("--tokens", "-1", "out of range"),
    ("--tokens", "9007199254740993", "out of range"),  # 2^53 + 1; n_prompt + max_new overflowed an int
    ("--tokens", "5x", "not an integer"),
    ("--temperature", "-0.5", "out of range"),
    ("--temperature", "inf", "out of range"),
    ("--top-k", "0", "out of range"),
    ("--top-k", "-1", "out of range"),  # was silently ignored
    ("--seed", "-1", "out of range"),
]


@pytest.mark.parametrize("flag,value,problem", BAD_SAMPLE_NUMBERS)
def test_sample_numbers_are_read_whole_and_range_checked(program, trained, tmp_path, flag, value, problem):
    ckpt = ckpt_copy(trained, tmp_path)
    msg = refused(run(program, "sample", "--ckpt", ckpt, "--prompt", "First", flag, value), 2)
    assert (f"{flag} {value}" in msg or f"{flag} '{value}'" in msg) and problem in msg


@pytest.mark.parametrize(
    "args,problem",
    [
        (["--steps", "2", "--steps", "3"], "--steps is given twice"),  # the first one won
        (["--steps", "2", "--bogus", "1"], "unknown option --bogus"),
        (["--steps", "2", "--prompt", "x"], "unknown option --prompt"),  # a sample flag
        (["--steps", "2", "stray"], "unexpected argument 'stray'"),
        (["--steps"], "--steps needs a value"),
    ],
)
def test_flags_are_known_and_given_once(program, text_file, tmp_path, args, problem):
    out = tmp_path / "out.safetensors"
    msg = refused(run(program, "train", "--data", text_file, *TINY, "--out", out, *args), 2)
    assert problem in msg and not out.exists()


def test_help_documents_the_exit_statuses(program):
    r = run(program, "train", "--help")
    assert r.returncode == 0 and "exit status" in r.stdout and "130" in r.stdout and "143" in r.stdout


def test_adamw_settings_of_a_checkpoint_are_range_checked(program, trained, text_file, tmp_path):
    # beta1 1.9 (same length as 0.9...): the Python reader rejects the file; train_gpt trained on with it
    ckpt = tmp_path / "bad.safetensors"
    data = trained.replace(b"0.90000000000000002", b"1.90000000000000002", 1)
    assert data != trained
    ckpt.write_bytes(data)
    msg = refused(run(program, "train", "--resume", ckpt, "--data", text_file, "--steps", "4"), 2)
    assert "beta1 is 1.9" in msg and "[0, 1)" in msg and ckpt.read_bytes() == data


# ---- 2. the config checked against the limits and the data before the model is allocated ----


def test_a_huge_config_is_refused_before_allocating(program, text_file, tmp_path):
    out = tmp_path / "out.safetensors"
    start = time.monotonic()
    # each flag within its limit, the model over 2^40 parameters
    r = run(program, "train", "--data", text_file, "--n-layer", "65536", "--n-embd", "1048576", "--out", out)
    assert "parameters; at most 2^40" in refused(r, 2) and time.monotonic() - start < 10 and not out.exists()
    # in range, but not the text's vocabulary (which is what the model gets)
    msg = refused(run(program, "train", "--data", text_file, "--vocab-size", "1073741824", "--out", out), 2)
    assert "--vocab-size 1073741824, but the text's characters say vocab_size" in msg and not out.exists()


def test_batch_times_block_must_fit(program, text_file, tmp_path):
    r = run(program, "train", "--data", text_file, "--batch-size", "2147483647", "--block-size", "2")
    assert "more than 2^31 - 1 positions" in refused(r, 2)


# ---- 3. input files: regular files only, said by name ----


@pytest.fixture
def odd_paths(tmp_path):
    folder = tmp_path / "folder"
    folder.mkdir()
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "loop1").symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(tmp_path / "loop1")
    return {
        "folder": (folder, "is a directory"),
        "fifo": (fifo, "not a regular file"),
        "device": (Path("/dev/zero"), "not a regular file"),
        "loop": (tmp_path / "loop1", os.strerror(40)),  # ELOOP
        "missing": (tmp_path / "missing.txt", "no such file"),
    }


@pytest.mark.parametrize("kind", ["folder", "fifo", "device", "loop", "missing"])
def test_data_must_be_a_regular_file(program, tmp_path, odd_paths, kind):
    path, problem = odd_paths[kind]
    out = tmp_path / "out.safetensors"
    msg = refused(run(program, "train", "--data", path, *TINY, "--out", out, timeout=20), 2)  # a FIFO blocked
    assert str(path) in msg and problem in msg and not out.exists()


@pytest.mark.parametrize("kind", ["fifo", "device", "loop"])
def test_a_checkpoint_that_is_no_file_is_not_missing(program, text_file, odd_paths, kind):
    path, problem = odd_paths[kind]
    msg = refused(run(program, "sample", "--ckpt", path, timeout=20), 2)
    assert str(path) in msg and problem in msg and "no such checkpoint file" not in msg
    msg = refused(run(program, "train", "--resume", path, "--data", text_file, timeout=20), 2)
    assert str(path) in msg and problem in msg and "no such checkpoint file" not in msg


# ---- 4. sampling: long outputs in bounded memory; 10. a tiny temperature is greedy ----


def sample(program, ckpt, *args):
    r = run(program, "sample", "--ckpt", ckpt, "--prompt", "First", *args)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_sampling_past_the_window_matches_the_c_tier(program, trained, tmp_path):
    # 40 tokens past a 16-token block: the program keeps only the window, as generate's rule needs
    ckpt = ckpt_copy(trained, tmp_path)
    tok = tokenizer_from_json(load_checkpoint(ckpt).metadata["tokenizer"])
    ids = impl_c.load(ckpt).generate(np.array([tok.encode("First")]), 40, temperature=0)
    assert sample(program, ckpt, "--tokens", "40", "--temperature", "0") == tok.decode(ids[0].tolist()) + "\n"


def test_a_tiny_temperature_is_greedy(program, trained, tmp_path):
    ckpt = ckpt_copy(trained, tmp_path)
    greedy = sample(program, ckpt, "--tokens", "30", "--temperature", "0")
    assert sample(program, ckpt, "--tokens", "30", "--temperature", "1e-300") == greedy
    assert sample(program, ckpt, "--tokens", "30", "--temperature", "1e-320") == greedy  # subnormal


# ---- 5. --out checked before the first step ----


def test_out_is_checked_before_training(program, text_file, tmp_path):
    args = ["train", "--data", text_file, *TINY, "--steps", "4", "--eval-interval", "2"]
    folder = tmp_path / "folder"
    folder.mkdir()
    r = run(program, *args, "--out", folder)
    assert "is a directory" in refused(r, 2) and "step" not in r.stdout
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    r = run(program, *args, "--out", a_file / "sub" / "out.safetensors")
    assert "is not a folder" in refused(r, 2) and "step" not in r.stdout
    # a missing folder is made, as the writer would
    r = run(program, *args, "--out", tmp_path / "new" / "deeper" / "out.safetensors")
    assert r.returncode == 0, r.stderr
    assert load_checkpoint(tmp_path / "new" / "deeper" / "out.safetensors").optimizer.step == 4


# ---- 6. one run per checkpoint; 7. stale temporary files removed ----


def test_a_second_run_on_the_same_out_is_refused(program, trained, text_file, tmp_path):
    ckpt = ckpt_copy(trained, tmp_path)
    lock = tmp_path / "ckpt.safetensors.lock"
    with CheckpointLock(ckpt):  # another run holds the lock: transformer.py's, shared/cli.py
        for args in (["--out", ckpt], ["--resume", ckpt]):
            model = TINY if args[0] == "--out" else []  # a resumed run has its own
            r = run(program, "train", "--data", text_file, *model, "--steps", "4", *args)
            msg = refused(r, 2)
            assert msg == f"error: {ckpt} is being written by another training run ({lock} is locked)"
            assert ckpt.read_bytes() == trained and "step" not in r.stdout
    r = run(program, "train", "--data", text_file, "--steps", "4", "--resume", ckpt)  # released: it runs
    assert r.returncode == 0, r.stderr
    assert not lock.exists()  # removed as the run ended


def test_stale_temporary_files_are_removed(program, trained, text_file, tmp_path):
    ckpt = ckpt_copy(trained, tmp_path)
    stale = [tmp_path / f"ckpt.safetensors.{x}.tmp" for x in ("0123456789abcdef", "fedcba9876543210")]
    kept = [tmp_path / f"ckpt.safetensors.{x}.tmp" for x in ("0123456789ABCDEF", "0123")]  # not the writer's
    kept.append(tmp_path / "other.safetensors.0123456789abcdef.tmp")  # another checkpoint's
    for p in stale + kept:
        p.write_bytes(b"half a checkpoint")
    r = run(program, "train", "--data", text_file, "--steps", "3", "--resume", ckpt)
    assert r.returncode == 0, r.stderr
    assert not any(p.exists() for p in stale) and all(p.exists() for p in kept)
    lines = [line for line in r.stdout.splitlines() if line.startswith("removed")]
    assert lines == [f"removed 2 temporary files ({ckpt}.*.tmp) that an interrupted run left"]


# ---- 8. Ctrl-C and SIGTERM: the step ends, a checkpoint is saved, the command to resume printed ----


@pytest.mark.parametrize(
    "signals,status", [([signal.SIGINT], 130), ([signal.SIGTERM], 143), ([signal.SIGINT, signal.SIGINT], 130)]
)
def test_a_signal_saves_a_checkpoint_that_resumes(program, text_file, tmp_path, signals, status):
    out = tmp_path / "run.safetensors"
    args = ["train", "--data", text_file, *TINY, "--steps", "1000000", "--eval-interval", "1000000"]
    cmd = [program, *map(str, args), "--out", str(out)]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while "step" not in p.stdout.readline():  # the evaluation at step 0: training has begun
            assert p.poll() is None, p.stderr.read()
        time.sleep(0.2)
        for s in signals:
            p.send_signal(s)
        stdout, stderr = p.communicate(timeout=30)
    finally:
        p.kill()
    assert p.returncode == status, stderr
    assert stderr == "" and "Sanitizer" not in stderr
    ckpt = load_checkpoint(out)
    step = ckpt.optimizer.step
    name = "SIGINT" if signals[0] == signal.SIGINT else "SIGTERM"
    last = stdout.strip().splitlines()[-1]
    assert last.startswith(f"stopped by {name} at step {step}, saved in {out}; resume with: ") and step > 0
    command = shlex.split(last.split("resume with: ")[1])
    assert command[1:] == ["train", "--resume", str(out), "--data", str(text_file)]
    assert not list(tmp_path.glob("*.tmp"))
    r = subprocess.run([*command, "--steps", str(step + 2)], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    assert load_checkpoint(out).optimizer.step == step + 2


# ---- 9. a resumed run keeps its checkpoint's settings ----


@pytest.mark.parametrize(
    "args,problem",
    [
        (["--lr", "0.01"], "--lr 0.01, but {ckpt} was trained with lr 0.0030000000000000001"),
        (["--n-layer", "2"], "--n-layer 2, but {ckpt} was trained with n-layer 1"),
        (["--batch-size", "3"], "--batch-size 3, but {ckpt} was trained with batch-size 2"),
        (["--seed", "1"], "--seed 1, but {ckpt} was trained with seed 1337"),
        (["--no-residual"], "--no-residual, but {ckpt} was trained with residual on"),
        (["--vocab-size", "5"], "--vocab-size 5, but the checkpoint's config and data say vocab_size"),
        (["--steps", "1"], "--steps 1, but {ckpt} is at step 2 already"),
        (["--out", "elsewhere.safetensors"], "a resumed run writes back to its checkpoint"),
    ],
)
def test_resume_refuses_a_differing_flag(program, trained, text_file, tmp_path, args, problem):
    ckpt = ckpt_copy(trained, tmp_path)
    msg = refused(run(program, "train", "--resume", ckpt, "--data", text_file, *args), 2)
    assert problem.format(ckpt=ckpt) in msg and ckpt.read_bytes() == trained


def test_resume_accepts_flags_equal_to_the_checkpoint(program, trained, text_file, tmp_path):
    ckpt = ckpt_copy(trained, tmp_path)
    same = ["--lr", "3e-3", "--n-layer", "1", "--batch-size", "2", "--seed", "1337", "--out", ckpt]
    r = run(program, "train", "--resume", ckpt, "--data", text_file, *same, "--steps", "3")
    assert r.returncode == 0, r.stderr
    assert load_checkpoint(ckpt).optimizer.step == 3


# ---- a diverged run writes no checkpoint (SPEC.md "Limits") ----


def test_a_diverged_run_stops_and_keeps_the_last_checkpoint(program, trained, text_file, tmp_path):
    ckpt = ckpt_copy(trained, tmp_path)
    args = [*TINY, "--steps", "4", "--eval-interval", "2", "--lr", "1e30"]  # weights of 1e30 after step 0
    r = run(program, "train", "--data", text_file, *args, "--out", ckpt)
    msg = refused(r, 2)
    assert re.search(r"step 1: the (loss|gradient norm) is (nan|inf); the run diverged", msg), msg
    assert ckpt.read_bytes() == trained


# ---- 11. memory: a text's size once, not 13 times ----


def peak_rss_mb(cmd) -> float:
    """The peak RSS of cmd, from a fresh process of its own (RUSAGE_CHILDREN keeps every child's maximum)."""
    code = "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True); "
    code += "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    r = subprocess.run(
        [sys.executable, "-c", code, *map(str, cmd)], capture_output=True, text=True, check=True
    )
    rc, kb = r.stdout.split()
    assert rc == "0"
    return int(kb) / 1024


def test_a_text_takes_its_size_in_memory_once(program, tmp_path):
    text = tmp_path / "big.txt"
    text.write_text("First Citizen:\nBefore we proceed any further, hear me speak.\n" * 400_000)  # 24 MB
    size_mb = text.stat().st_size / 1e6
    args = ["train", "--data", text, *TINY, "--steps", "2", "--eval-interval", "2", "--threads", "1"]
    peak = peak_rss_mb([program, *args, "--out", tmp_path / "out.safetensors"])
    assert peak < size_mb + 40, (peak, size_mb)  # was 13 times the file: 4-byte code points, copied


def test_a_text_of_many_characters_trains_as_its_token_files(program, tmp_path):
    # 300 distinct characters: 2-byte ids in memory; the same run as the token files of the same ids
    text = tmp_path / "many.txt"
    text.write_text("".join(chr(0x400 + i % 300) for i in range(7 * 300 * 7)))
    prepare(text, tmp_path / "tok", progress=False)
    common = [*TINY, "--steps", "2", "--eval-interval", "1"]
    a = run(program, "train", "--data", text, *common, "--out", tmp_path / "a.safetensors")
    token_files = ["--train-bin", tmp_path / "tok" / "train.bin", "--val-bin", tmp_path / "tok" / "val.bin"]
    b = run(program, "train", *token_files, *common, "--out", tmp_path / "b.safetensors")
    assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
    losses = lambda out: re.findall(r"step +\d+: train loss [\d.]+, val loss [\d.]+", out)
    assert "vocab_size 300" in a.stdout and len(losses(a.stdout)) == 3
    assert losses(a.stdout) == losses(b.stdout)
