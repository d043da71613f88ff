# Training end to end on Tiny Shakespeare: it learns (beats the unigram baseline), and a run resumed
# from a checkpoint continues exactly as if it had not stopped.
import json

import numpy as np
import pytest

import impl_numpy
import transformer
from shared.config import GPTConfig
from shared.data import ENV_VAR, CharDataset, estimate_loss
from shared.params import init_state_dict
from shared.tolerances import bounds_for


@pytest.fixture(scope="module")
def dataset(corpus_path):
    # corpus_path (conftest.py): where this machine has the corpus, by the loader; it skips where it is nowhere
    return CharDataset.from_file(corpus_path)


def small_model(dataset, seed=0, adamw=None):
    config = GPTConfig(n_layer=2, n_head=2, n_embd=48, block_size=32, vocab_size=dataset.tokenizer.vocab_size)
    return impl_numpy.from_state_dict(config, init_state_dict(config, seed), adamw=adamw)


def test_short_training_run_beats_the_unigram_baseline(dataset):
    model = small_model(dataset)
    s = transformer.TrainSettings(
        steps=250, batch_size=16, lr=3e-3, min_lr=3e-4, warmup_steps=20, decay_steps=250, eval_interval=1000
    )
    transformer.train(model, dataset, s, log=lambda *_: None, progress=False)
    val = estimate_loss(model, dataset.val, 16, 20, seed=7)
    unigram = transformer.unigram_baseline(dataset.train, dataset.val, dataset.tokenizer.vocab_size)
    assert unigram > 3.0  # sanity: Shakespeare's characters under their own frequencies
    assert val < unigram - 0.2, (val, unigram)


def test_resume_continues_exactly(dataset, tmp_path):
    s = transformer.TrainSettings(
        steps=6, batch_size=4, warmup_steps=2, decay_steps=6, eval_interval=1000, eval_iters=1
    )
    straight = small_model(dataset, adamw=s.adamw)
    transformer.train(straight, dataset, s, log=lambda *_: None, progress=False)

    first = small_model(dataset, adamw=s.adamw)
    half = transformer.TrainSettings(**{**s.__dict__, "steps": 3})
    transformer.train(
        first, dataset, half, ckpt_path=tmp_path / "ckpt.safetensors", log=lambda *_: None, progress=False
    )
    resumed = impl_numpy.load(tmp_path / "ckpt.safetensors")  # the AdamW settings travel in the checkpoint
    assert resumed.step == 3 and resumed.adamw == s.adamw
    transformer.train(resumed, dataset, s, log=lambda *_: None, progress=False)

    assert resumed.step == straight.step == 6
    for name, p in straight.state_dict().items():
        np.testing.assert_array_equal(resumed.state_dict()[name], p, err_msg=name)
    a, b = straight.optimizer_state(), resumed.optimizer_state()
    for name in a.m:
        np.testing.assert_array_equal(a.m[name], b.m[name])
        np.testing.assert_array_equal(a.v[name], b.v[name])


@pytest.mark.parametrize("impl", list(transformer.TIERS))
def test_command_line_train_sample_eval(tmp_path, capsys, monkeypatch, corpus_path, impl):
    monkeypatch.setenv(ENV_VAR, str(corpus_path))  # the copy the tests found, for the command line's loader
    # a small config and one batch size throughout: the tinygrad tier compiles every new shape
    args = ["--impl", impl, "--config", "tiny", "--batch-size", "2", "--steps", "3", "--eval-interval", "2"]
    args += ["--eval-iters", "1", "--final-eval-iters", "2"]
    assert transformer.main([*args, "--sample-tokens", "20", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "validation loss" in out and "unigram baseline" in out and "--- sample ---" in out
    ckpt = tmp_path / f"tiny-{impl}.safetensors"
    assert ckpt.is_file()
    use = ["--impl", impl, "--ckpt", str(ckpt)]
    assert transformer.main(["sample", *use, "--tokens", "10", "--prompt", "ROMEO:"]) == 0
    assert capsys.readouterr().out.startswith("ROMEO:")
    assert transformer.main(["eval", *use, "--iters", "2", "--batch-size", "2"]) == 0
    assert "val loss" in capsys.readouterr().out


@pytest.mark.tinygrad
def test_command_line_trains_tinygrad_on_two_devices_like_one(tmp_path, capsys, monkeypatch, corpus_path):
    # `train --devices 2`: the batch split over CPU:0 and CPU:1 (SPEC.md "Data parallel"); the losses
    # are one device's to float32 rounding, and the sample after training decodes on one device
    monkeypatch.setenv(ENV_VAR, str(corpus_path))
    args = [
        "--impl",
        "tinygrad",
        "--config",
        "tiny",
        "--batch-size",
        "3",
        "--steps",
        "2",
        "--eval-interval",
        "2",
    ]
    args += ["--eval-iters", "1", "--final-eval-iters", "1", "--sample-tokens", "5", "--curves"]
    vals = []
    for devices, out in ((["--devices", "2"], tmp_path / "two"), ([], tmp_path / "one")):
        assert transformer.main([*args, *devices, "--out", str(out)]) == 0
        printed = capsys.readouterr().out
        assert "--- sample ---" in printed
        assert ("data parallel: each batch split over CPU, CPU:1" in printed) == bool(devices)
        vals.append(json.loads((out / "tiny-curves.json").read_text())["tinygrad"]["history"]["val"])
    np.testing.assert_allclose(vals[0], vals[1], rtol=2e-6)
    assert transformer.main(["--impl", "c", "--devices", "2", "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    only = "data-parallel training is the tinygrad tier's only; use it with --impl tinygrad, not --impl c"
    assert err == f"error: --devices 2: {only}\n"
    assert not (tmp_path / "c").exists()


@pytest.mark.tinygrad
def test_command_line_trains_tinygrad_in_mixed_precision(tmp_path, capsys, monkeypatch, corpus_path):
    # `train --mixed-precision float16`: the products in float16 (SPEC.md "Mixed precision"); the
    # validation losses are float32's within the float16 bound of a training loss
    monkeypatch.setenv(ENV_VAR, str(corpus_path))
    args = ["--impl", "tinygrad", "--config", "tiny", "--batch-size", "2", "--steps", "2"]
    args += ["--eval-interval", "2", "--eval-iters", "1", "--final-eval-iters", "1", "--curves"]
    vals = []
    for mixed, out in ((["--mixed-precision", "float16"], tmp_path / "mixed"), ([], tmp_path / "plain")):
        assert transformer.main([*args, *mixed, "--sample-tokens", "5", "--out", str(out)]) == 0
        printed = capsys.readouterr().out
        said = "mixed precision: the matrix products in float16, float32 weights, loss scale 65536 (dynamic)"
        assert (said in printed) == bool(mixed) and "--- sample ---" in printed
        vals.append(json.loads((out / "tiny-curves.json").read_text())["tinygrad"]["history"]["val"])
    np.testing.assert_allclose(
        vals[0], vals[1], rtol=bounds_for(np.float32, "default", "float16")["train_loss"]
    )
    assert not np.array_equal(vals[0], vals[1])  # rounded: not float32's run again
    # another tier, or bfloat16 where clang cannot compile it: one line, before any work
    assert (
        transformer.main(["--impl", "c", "--mixed-precision", "float16", "--out", str(tmp_path / "c")]) == 2
    )
    only = "mixed precision is the tinygrad tier's only"
    assert capsys.readouterr().err.startswith(f"error: --mixed-precision float16: {only}")
    from tinygrad import Device

    if type(Device[Device.DEFAULT].compiler).__name__ != "ClangCompiler":
        return  # another compiler (DEV=CPU:LLVM, a GPU): bfloat16 is tinygrad's to compile there
    old = tmp_path / "clang-14"
    old.write_text("#!/bin/sh\necho 'error: __bf16 is not supported on this target' >&2\nexit 1\n")
    old.chmod(0o755)
    monkeypatch.setenv("CC", str(old))
    bf16 = ["--mixed-precision", "bfloat16", "--out", str(tmp_path / "bf16")]
    assert transformer.main([*args, *bf16]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: mixed_precision 'bfloat16': tinygrad's CPU backend needs clang 15")
    assert err.count("\n") == 1
    assert not (tmp_path / "c").exists() and not (tmp_path / "bf16").exists()


def test_command_line_trains_several_tiers_and_draws_their_curves(tmp_path, capsys, monkeypatch, corpus_path):
    monkeypatch.setenv(ENV_VAR, str(corpus_path))  # the copy the tests found, for the command line's loader
    args = ["--impl", "numpy", "c", "--config", "tiny", "--batch-size", "2", "--steps", "4"]
    args += ["--eval-interval", "2", "--eval-iters", "1", "--final-eval-iters", "2", "--sample-tokens", "0"]
    assert transformer.main([*args, "--out", str(tmp_path)]) == 0
    assert "loss curves:" in capsys.readouterr().out
    assert (tmp_path / "tiny-curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    runs = json.loads((tmp_path / "tiny-curves.json").read_text())
    assert list(runs) == ["numpy", "c"]
    for r in runs.values():
        assert r["history"]["step"] == [0, 2, 4] and len(r["history"]["val"]) == 3
    # the same batches and init: the tiers' losses agree to float32 rounding
    assert abs(runs["numpy"]["val"] - runs["c"]["val"]) < 1e-4
    assert transformer.main(["--impl", "numpy", "c", "--resume", str(tmp_path / "tiny-c.safetensors")]) == 2
    assert "--resume continues one run" in capsys.readouterr().err


def test_command_line_errors_are_clear(tmp_path, capsys):
    assert transformer.main(["sample", "--ckpt", str(tmp_path / "missing.safetensors")]) == 2
    assert "no such checkpoint file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        transformer.main(["--help"])
    assert e.value.code == 0


def test_command_line_resume_after_a_crash_matches_the_uninterrupted_run(
    tmp_path, monkeypatch, capsys, corpus_path
):
    monkeypatch.setenv(ENV_VAR, str(corpus_path))  # the copy the tests found, for the command line's loader
    args = [
        "--impl",
        "numpy",
        "--config",
        "tiny",
        "--steps",
        "6",
        "--eval-interval",
        "3",
        "--eval-iters",
        "1",
    ]
    args += ["--final-eval-iters", "1", "--sample-tokens", "0", "--batch-size", "2"]
    assert transformer.main([*args, "--out", str(tmp_path / "straight")]) == 0

    real_step = impl_numpy.GPT.train_step

    def crash_at_step_4(self, *a, **k):
        if self.step == 4:
            raise KeyboardInterrupt  # the process dies between the step-3 checkpoint and the end
        return real_step(self, *a, **k)

    monkeypatch.setattr(impl_numpy.GPT, "train_step", crash_at_step_4)
    assert transformer.main([*args, "--out", str(tmp_path / "crashed")]) == 130  # said in one line
    assert capsys.readouterr().err.endswith("interrupted\n")
    monkeypatch.setattr(impl_numpy.GPT, "train_step", real_step)
    ckpt = tmp_path / "crashed" / "tiny-numpy.safetensors"
    assert impl_numpy.load(ckpt).step == 3
    assert transformer.main(["--impl", "numpy", "--resume", str(ckpt)]) == 0
    assert "resumed" in capsys.readouterr().out

    straight = impl_numpy.load(tmp_path / "straight" / "tiny-numpy.safetensors")
    resumed = impl_numpy.load(ckpt)
    assert straight.step == resumed.step == 6
    for name, p in straight.state_dict().items():
        np.testing.assert_array_equal(resumed.state_dict()[name], p, err_msg=name)


@pytest.mark.parametrize(
    "args, option",
    [
        (["--batch-size", "0"], "--batch-size"),
        (["--eval-interval", "0"], "--eval-interval"),
        (["--eval-iters", "0"], "--eval-iters"),
        (["--final-eval-iters", "0"], "--final-eval-iters"),
        (["--steps", "0"], "--steps"),
        (["--steps", "-5"], "--steps"),
        (["--seed", "-1"], "--seed"),
        (["--lr", "0"], "--lr"),
        (["--lr", "nan"], "--lr"),
        (["--sample-tokens", "-1"], "--sample-tokens"),
        (["--impl", "tinygrad", "--devices", "0"], "--devices"),
        (["--steps", "ten"], "--steps"),
        (["sample", "--ckpt", "x", "--temperature", "-1"], "--temperature"),
        (["sample", "--ckpt", "x", "--temperature", "inf"], "--temperature"),
        (["sample", "--ckpt", "x", "--top-k", "0"], "--top-k"),
        (["sample", "--ckpt", "x", "--tokens", "-3"], "--tokens"),
        (["eval", "--ckpt", "x", "--iters", "0"], "--iters"),
        (["eval", "--ckpt", "x", "--batch-size", "0"], "--batch-size"),
        (["prepare", "--out", "x", "--train-chars", "0"], "--train-chars"),
    ],
)
def test_numbers_out_of_range_are_one_line_before_any_work(tmp_path, capsys, args, option):
    # a zero batch or evaluation interval used to end in ZeroDivisionError after the corpus was read, and
    # --steps 0 "trained" and overwrote out/ with an untrained model
    with pytest.raises(SystemExit) as e:
        transformer.main([*args, "--out", str(tmp_path / "out")] if args[0].startswith("--") else args)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"argument {option}: {args[-1]}" in err.replace("'", "")
    assert not (tmp_path / "out").exists()
