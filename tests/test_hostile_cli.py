# Issue 14's rule on the command line, class by class: a user error ends in one line naming the value
# and what is allowed (never a traceback), before any work, and a checkpoint already on disk stays
# byte-identical. The hostile checkpoint files themselves are tests/test_hostile_checkpoints.py's; the
# C program's are tests/test_train_gpt_hostile.py's.
import errno
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import transformer
from shared.checkpoint import load_checkpoint, save_checkpoint
from shared.cli import CheckpointLock
from shared.data import ENV_VAR

ROOT = Path(__file__).resolve().parent.parent
TIERS = ["numpy", "c", "tinygrad"]
# a run that takes about a second on every tier
SMALL = ["--config", "tiny", "--batch-size", "2", "--eval-iters", "1", "--final-eval-iters", "1"]
SMALL += ["--sample-tokens", "0", "--eval-interval", "3"]


@pytest.fixture(autouse=True)
def corpus(corpus_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(corpus_path))  # the copy the tests found, for the command line's loader
    return corpus_path


def run(capsys, argv):
    """transformer.main's exit status, stdout and stderr; an exception escaping it fails the test."""
    status = transformer.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def one_line(err: str) -> str:
    """stderr is the error's one line and nothing else (no progress bar: refused before any work)."""
    assert err.count("\n") == 1 and err.startswith("error: "), err
    return err


def last_line(err: str) -> str:
    """An error met during the work: after the progress bar, one line, and no traceback."""
    lines = err.replace("\r", "\n").strip().split("\n")
    assert lines[-1].startswith("error: ") and "Traceback" not in err, err
    assert sum(line.startswith("error: ") for line in lines) == 1, err
    return lines[-1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, corpus_path):
    """A training checkpoint of each tier (3 steps), made once: the file the hostile cases must not harm."""
    os.environ.setdefault(ENV_VAR, str(corpus_path))
    folder = tmp_path_factory.mktemp("trained")
    paths = {}
    for impl in TIERS:
        assert transformer.main(["--impl", impl, *SMALL, "--steps", "3", "--out", str(folder)]) == 0
        paths[impl] = folder / f"tiny-{impl}.safetensors"
    return paths


def copy_of(trained, impl, tmp_path) -> Path:
    path = tmp_path / f"tiny-{impl}.safetensors"
    path.write_bytes(trained[impl].read_bytes())
    return path


# ---- output problems: said before any work, nothing on disk lost ----


@pytest.mark.parametrize(
    "out, message",
    [
        ("a-file", "a-file: not a folder"),
        ("a-file/below", "below: cannot write there"),
        ("/proc/self/no-such-folder", "cannot write there"),
    ],
)
def test_an_output_that_cannot_be_written_is_said_before_training(tmp_path, capsys, out, message):
    (tmp_path / "a-file").write_text("precious")
    out = out if out.startswith("/") else tmp_path / out
    status, stdout, err = run(capsys, ["--impl", "numpy", *SMALL, "--steps", "3", "--out", out])
    assert status == 2 and message in one_line(err)
    assert "step" not in stdout  # not one step trained (it used to fail at the first checkpoint)
    assert (tmp_path / "a-file").read_text() == "precious"


@pytest.mark.parametrize("impl", TIERS)
def test_a_full_disk_while_saving_keeps_the_previous_checkpoint(trained, tmp_path, capsys, monkeypatch, impl):
    ckpt = copy_of(trained, impl, tmp_path)
    before = ckpt.read_bytes()

    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", no_space)  # every tier saves through shared/checkpoint.py's writer
    status, _, err = run(capsys, ["--impl", impl, "--resume", ckpt, "--steps", "6"])
    assert status == 2 and "cannot write the checkpoint (No space left on device)" in last_line(err)
    assert ckpt.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [ckpt.name]  # no temporary file left, no lock file


# ---- the checkpoint's own settings: validated like the command line, never dropped ----

BAD_SETTINGS = [
    ("not json", "not valid JSON"),
    ("[" * 100_000, "not valid JSON"),  # nested deeper than Python's recursion limit
    ('{"steps": 6}', "exactly the keys"),
    ("batch_size", 0, "batch_size 0 is out of range"),
    ("eval_interval", 0, "eval_interval 0 is out of range"),
    ("lr", float("inf"), "lr inf is out of range"),
    ("lr", 0.0, "lr 0.0 is out of range"),
    ("seed", -1, "seed -1 is out of range"),
    ("steps", True, "steps must be an integer"),
    ("batch_size", 2.5, "batch_size must be an integer"),
    ("lr", "3e-3", "lr must be a number"),
]


@pytest.mark.parametrize("case", BAD_SETTINGS, ids=lambda c: str(c[:-1])[:40])
def test_malformed_training_settings_in_a_checkpoint_are_one_line(trained, tmp_path, capsys, case):
    path = copy_of(trained, "numpy", tmp_path)
    ckpt = load_checkpoint(path)
    if len(case) == 2:
        text, message = case
    else:
        name, value, message = case
        text = json.dumps({**json.loads(ckpt.metadata["train_settings"]), name: value})
    meta = {k: v for k, v in ckpt.metadata.items() if k not in ("format", "config", "step", "adamw")}
    save_checkpoint(path, ckpt.config, ckpt.state, ckpt.optimizer, {**meta, "train_settings": text})
    before = path.read_bytes()
    status, _, err = run(capsys, ["--impl", "numpy", "--resume", path, "--steps", "6"])
    assert status == 2 and "train_settings in the metadata" in one_line(err) and message in err
    assert path.read_bytes() == before


@pytest.mark.parametrize("command", ["resume", "sample"])
@pytest.mark.parametrize(
    "tokenizer",
    ['{"kind": "bpe"}', "[" * 100_000, '{"kind": "word", "vocab": 5}', "17", '"aab"'],
    ids=["bpe-without-vocab", "nested-100000-deep", "word-vocab-not-a-list", "a-number", "repeated-char"],
)
def test_malformed_tokenizer_metadata_is_one_line(trained, tmp_path, capsys, command, tokenizer):
    path = copy_of(trained, "numpy", tmp_path)
    ckpt = load_checkpoint(path)
    meta = {k: v for k, v in ckpt.metadata.items() if k not in ("format", "config", "step", "adamw")}
    save_checkpoint(path, ckpt.config, ckpt.state, ckpt.optimizer, {**meta, "tokenizer": tokenizer})
    before = path.read_bytes()
    argv = ["--impl", "numpy", "--resume", path, "--steps", "6"]
    if command == "sample":
        argv = ["sample", "--impl", "numpy", "--ckpt", path, "--tokens", "3"]
    status, _, err = run(capsys, argv)
    assert status == 2 and "tokenizer" in one_line(err)
    assert path.read_bytes() == before


@pytest.mark.parametrize(
    "option, value, stored",
    [
        ("--lr", "0.001", "0.003"),
        ("--batch-size", "4", "2"),
        ("--seed", "7", "1337"),
        ("--eval-interval", "5", "3"),
        ("--eval-iters", "9", "1"),
        ("--tokenizer", "bpe", "char"),
        ("--config", "shakespeare", "model GPTConfig(n_layer=2"),
    ],
)
def test_resume_refuses_an_option_that_contradicts_the_checkpoint(
    trained, tmp_path, capsys, option, value, stored
):
    # they used to be dropped without a word: the run went on with the checkpoint's own settings
    path = copy_of(trained, "numpy", tmp_path)
    before = path.read_bytes()
    status, _, err = run(capsys, ["--impl", "numpy", "--resume", path, "--steps", "6", option, value])
    assert status == 2 and f"{option} {value} differs from the checkpoint's {stored}" in one_line(err)
    assert path.read_bytes() == before


def test_resume_accepts_an_option_equal_to_the_checkpoint_s_and_writes_to_out(trained, tmp_path, capsys):
    path = copy_of(trained, "numpy", tmp_path)
    before = path.read_bytes()
    argv = ["--impl", "numpy", "--resume", path, "--steps", "6", "--batch-size", "2", "--seed", "1337"]
    status, out, _ = run(capsys, [*argv, "--out", tmp_path / "elsewhere"])
    assert status == 0 and "resumed" in out
    assert load_checkpoint(tmp_path / "elsewhere" / path.name).optimizer.step == 6
    assert path.read_bytes() == before  # --out leaves the checkpoint resumed from as it was


@pytest.mark.parametrize("steps, message", [(None, "has finished its 3 steps"), ("2", "already at step 3")])
def test_resume_with_nothing_left_to_train_is_refused(trained, tmp_path, capsys, steps, message):
    path = copy_of(trained, "c", tmp_path)
    before = path.read_bytes()
    status, _, err = run(capsys, ["--impl", "c", "--resume", path, *(["--steps", steps] if steps else [])])
    assert status == 2 and message in one_line(err)
    assert path.read_bytes() == before


# ---- a diverging run stops, naming the step, and writes nothing ----


@pytest.mark.parametrize("impl", TIERS)
def test_a_diverging_run_stops_and_keeps_the_last_good_checkpoint(trained, tmp_path, capsys, impl):
    ckpt = copy_of(trained, impl, tmp_path)  # a good model where the new run would save
    before = ckpt.read_bytes()
    status, _stdout, err = run(
        capsys, ["--impl", impl, *SMALL, "--steps", "6", "--lr", "1e30", "--out", tmp_path]
    )
    assert status == 2 and "diverged" in last_line(err) and "step " in err
    assert ckpt.read_bytes() == before  # no checkpoint of NaN weights over it


# ---- Ctrl-C: the step finishes, its checkpoint is written, the resume command is printed ----


@pytest.mark.parametrize("impl", TIERS)
def test_ctrl_c_saves_the_current_step_and_says_how_to_resume(tmp_path, capsys, monkeypatch, impl):
    original = transformer.train

    def train_with_ctrl_c(model, dataset, s, ckpt_path=None, log=print, progress=True, interrupt=None):
        step_fn = model.train_step

        def step_then_ctrl_c(x, y, lr):
            loss = step_fn(x, y, lr)
            if model.step == 5:
                os.kill(os.getpid(), signal.SIGINT)  # the handler notes it; the run stops after this step
            return loss

        model.train_step = step_then_ctrl_c
        return original(model, dataset, s, ckpt_path, log, progress, interrupt)

    monkeypatch.setattr(transformer, "train", train_with_ctrl_c)
    status, _, err = run(capsys, ["--impl", impl, *SMALL, "--steps", "40", "--out", tmp_path])
    assert status == 130
    path = tmp_path / f"tiny-{impl}.safetensors"
    assert f"stopped at step 5; checkpoint: {path}" in err
    assert f"resume with: python transformer.py train --impl {impl} --resume {path}" in err
    assert load_checkpoint(path).optimizer.step == 5  # the steps since the last evaluation (3) are kept
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is put back


def test_ctrl_c_on_the_real_program(tmp_path, corpus):
    env = {**os.environ, ENV_VAR: str(corpus), "PYTHONUNBUFFERED": "1"}
    argv = [sys.executable, str(ROOT / "transformer.py"), "--impl", "numpy", *SMALL]
    proc = subprocess.Popen(
        [*argv, "--steps", "100000", "--out", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    for line in proc.stdout:  # the evaluation at step 3 is printed after its checkpoint is written
        if line.startswith("step     3"):
            break
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "resume with: python transformer.py train --impl numpy --resume" in err
    assert load_checkpoint(tmp_path / "tiny-numpy.safetensors").optimizer.step >= 3


# ---- two runs, one checkpoint; what a killed run left ----


def test_a_second_run_on_the_same_checkpoint_is_refused(tmp_path, capsys):
    path = tmp_path / "tiny-numpy.safetensors"
    with CheckpointLock(path):  # another run holds it (train_gpt takes the same lock)
        status, stdout, err = run(capsys, ["--impl", "numpy", *SMALL, "--steps", "3", "--out", tmp_path])
    assert status == 2 and "is being written by another training run" in one_line(err)
    assert "step" not in stdout and not path.exists()


def test_a_killed_run_s_temporary_files_are_removed_by_the_next_run(tmp_path, capsys):
    stale = tmp_path / "tiny-c.safetensors.0123456789abcdef.tmp"
    other = tmp_path / "notes.0123456789abcdef.tmp"  # not the checkpoint's: left alone
    stale.write_bytes(b"\0" * 4096)
    other.write_bytes(b"mine")
    status, out, _ = run(capsys, ["--impl", "c", *SMALL, "--steps", "3", "--out", tmp_path])
    assert status == 0 and f"removed {stale}" in out
    assert not stale.exists() and other.read_bytes() == b"mine"


# ---- files that are not what they say ----


@pytest.mark.parametrize(
    "kind, reason",
    [
        ("fifo", "not a regular file (a FIFO)"),  # reading it would wait forever
        ("loop", "cannot be read (too many levels of symbolic links)"),
        ("device", "not a regular file (a character device)"),  # /dev/zero: it never ends
        ("folder", "a Hugging Face style directory needs config.json"),
        ("missing", "no such checkpoint file"),
    ],
)
@pytest.mark.parametrize("command", ["sample", "eval", "attention", "resume"])
def test_a_checkpoint_path_that_is_not_a_file_is_one_line(tmp_path, capsys, kind, reason, command):
    # a FIFO, a symlink loop and /dev/zero all used to say "no such checkpoint file"
    path = tmp_path / "ckpt.safetensors"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "loop":
        os.symlink(path, path)
    elif kind == "device":
        path = Path("/dev/zero")
    elif kind == "folder":
        path.mkdir()
    argv = {
        "sample": ["sample", "--ckpt", path],
        "eval": ["eval", "--ckpt", path],
        "attention": ["attention", "ROMEO", "--ckpt", path, "--out", tmp_path / "att"],
        "resume": ["train", "--resume", path],
    }[command]
    status, _, err = run(capsys, [*argv, "--impl", "numpy"])
    assert status == 2 and f"{path}: {reason}" in one_line(err)


def test_a_corpus_that_is_not_utf8_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"To be, or not \xff to be\n" * 10)
    for argv in (
        ["--impl", "numpy", *SMALL, "--steps", "3", "--data", bad, "--out", tmp_path / "o"],
        ["eval", "--impl", "numpy", "--ckpt", ROOT / "no-such", "--text", bad],
    ):
        status, _, err = run(capsys, argv)
        assert status == 2 and one_line(err)
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())


# ---- sampling ----


def test_a_tiny_temperature_samples_the_greedy_token(trained, capsys):
    # logits / 1e-320 overflowed to inf, inf - inf gave a NaN distribution, and the last token id came out
    base = ["sample", "--impl", "numpy", "--ckpt", trained["numpy"], "--tokens", "20", "--prompt", "ROMEO:"]
    _, greedy, _ = run(capsys, [*base, "--temperature", "0"])
    _, tiny, _ = run(capsys, [*base, "--temperature", "1e-320"])
    assert tiny == greedy


def test_sample_next_with_a_tiny_temperature_is_argmax():
    from shared.sampling import sample_next

    logits = np.array([[1.0, 3.0, 2.0, -50.0], [0.0, 0.0, 1e-3, 0.0]])
    for t in (1e-300, 1e-320, 5e-324):
        got = sample_next(logits, t, None, np.random.default_rng(0))
        np.testing.assert_array_equal(got, [1, 2])


# ---- grok and question: the same rules ----


@pytest.mark.parametrize(
    "argv, message",
    [
        (["grok", "--p", "100000"], "needs about"),
        (["grok", "--p", "1"], "--p: 1 is out of range"),
        (["grok", "--train-frac", "1"], "--train-frac: 1 is out of range"),
        (["grok", "--steps", "0"], "--steps: 0 is out of range"),
        (["grok", "--lr", "nan"], "--lr: nan is out of range"),
        (["grok", "--eval-interval", "0"], "--eval-interval: 0 is out of range"),
        (["grok", "--weight-decay", "-1"], "--weight-decay: -1 is out of range"),
        (["grok", "--n-head", "3"], "must be divisible by n_head"),
        (["question", "residual", "--steps", "-5"], "--steps: -5 is out of range"),
        (["question", "residual", "--lr", "0"], "--lr: 0 is out of range"),
    ],
)
def test_grok_and_question_options_are_one_line(tmp_path, capsys, argv, message):
    try:
        status, _, err = run(capsys, [*argv, "--out", tmp_path / "o"])
    except SystemExit as e:  # argparse's own exit, after its one line
        status, err = e.code, capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and message in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["prepare", "--tokenizer", "char"],
        ["attention", "ROMEO:", "--ckpt", "{ckpt}"],
        ["grok", "--steps", "1"],
        ["question", "scale"],
    ],
    ids=lambda a: a[0],
)
def test_every_command_checks_its_output_folder_first(trained, tmp_path, capsys, argv):
    (tmp_path / "a-file").write_text("precious")
    argv = [a.replace("{ckpt}", str(trained["c"])) for a in argv]
    status, stdout, err = run(capsys, [*argv, "--out", tmp_path / "a-file"])
    assert status == 2 and "a-file: not a folder" in one_line(err) and stdout == ""
    assert (tmp_path / "a-file").read_text() == "precious"
