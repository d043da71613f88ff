# benchmarks/gpu.py: on a machine without the GPU asked for it says so in one line and exits 0, before
# starting any run; a backend that is not a GPU is refused; the CPU is never taken for a GPU. The devices
# it counts reach the benchmarks' run, whose train step then has a row on all of them.
import os
import subprocess
import sys

import pytest

from benchmarks import gpu


def test_without_a_gpu_it_says_so_and_runs_nothing(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(gpu, "find_gpus", lambda names=gpu.GPU_BACKENDS: [])
    monkeypatch.setattr(gpu, "run", lambda cmd, env: pytest.fail(f"ran {cmd}"))
    assert gpu.main(["--out", str(tmp_path / "gpu")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("no GPU: tinygrad opens none of METAL, AMD, NV, CUDA") and out.count("\n") == 1
    assert not (tmp_path / "gpu").exists()


def test_the_program_itself_is_a_clean_no_op_for_a_backend_not_here(tmp_path):
    # no machine has all seven backends: one that tinygrad cannot open here is a real "no GPU" run
    absent = next(name for name in gpu.GPU_BACKENDS if name not in gpu.find_gpus())
    cmd = [sys.executable, "-m", "benchmarks.gpu", "--device", absent, "--out", str(tmp_path / "gpu")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"no GPU: tinygrad opens none of {absent} on this machine; nothing to run\n"
    assert not (tmp_path / "gpu").exists()


def test_the_cpu_is_not_a_gpu():
    found = gpu.find_gpus()
    assert "CPU" not in found and set(found) <= set(gpu.GPU_BACKENDS)
    assert gpu.find_gpus(("CPU",)) == ["CPU"]  # the probe itself opens what is there


@pytest.mark.parametrize("device", ["CPU", "cuda", "GPU"])
def test_a_backend_that_is_not_a_gpu_is_refused(device, capsys, monkeypatch):
    monkeypatch.setattr(gpu, "run", lambda cmd, env: pytest.fail(f"ran {cmd}"))  # were it taken for one
    with pytest.raises(SystemExit) as e:
        gpu.main(["--device", device])
    assert e.value.code == 2
    assert capsys.readouterr().err == (
        f"error: --device: {device!r} is not a tinygrad GPU backend (METAL, AMD, NV, CUDA, QCOM, CL, WEBGPU)\n"
    )


class FakeDevices:
    """tinygrad's Device for a backend with `count` devices: past the last, opening one raises."""

    def __init__(self, backend, count):
        self.names = {f"{backend}:{i}" for i in range(count)}
        self.opened = []

    def __getitem__(self, name):
        self.opened.append(name)
        if name not in self.names:
            raise RuntimeError(f"No device found for {name}")
        return object()


@pytest.mark.parametrize("count", [0, 1, 3])
def test_devices_are_counted_up_to_the_first_that_is_not_there(count):
    devices = FakeDevices("CUDA", count)
    assert gpu.count_devices("CUDA", devices) == count
    assert devices.opened == [f"CUDA:{i}" for i in range(count + 1)]  # and not one more


def test_the_count_stops_at_the_cap():
    assert gpu.count_devices("CUDA", FakeDevices("CUDA", 40), cap=5) == 5
    # tinygrad's CPU opens as many devices as it is asked for: the probe alone would find the cap there,
    # so main never counts the CPU (or METAL, QCOM, WEBGPU, which ignore the index): one device
    assert gpu.count_devices("CPU", cap=3) == 3
    assert "CPU" in gpu.ONE_DEVICE


@pytest.mark.parametrize(
    ("backend", "count", "expected"), [("CUDA", 4, "4"), ("AMD", 1, "1"), ("METAL", 9, "1")]
)
def test_the_count_reaches_the_benchmarks_run(backend, count, expected, monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(gpu, "find_gpus", lambda names=gpu.GPU_BACKENDS: [backend])
    counted = []
    monkeypatch.setattr(gpu, "count_devices", lambda name: counted.append(name) or count)
    monkeypatch.setattr(gpu, "torch_device", lambda name: None)
    runs = []
    monkeypatch.setattr(gpu, "run", lambda cmd, env: runs.append((cmd, env)) or 0)
    assert gpu.main(["--out", str(tmp_path), "--skip-conformance"]) == 0
    [(cmd, env)] = runs
    assert cmd[cmd.index("-m", 3) + 1] == "slow or not slow"  # the variants beyond tiny are marked slow
    assert env["GPT_BENCH_DEVICES"] == expected and env["DEV"] == backend
    assert counted == ([] if backend in gpu.ONE_DEVICE else [backend])
    plural = "s" if expected != "1" else ""
    assert capsys.readouterr().out.startswith(f"tinygrad on {backend} ({expected} device{plural});")


def test_the_benchmarks_make_a_row_on_the_devices_counted(tmp_path):
    # the benchmarks' own collection, with the variable as gpu.py sets it: the train step on 3 devices
    env = {**os.environ, "GPT_BENCH_DEVICES": "3"}
    cmd = [sys.executable, "-m", "pytest", "benchmarks/test_benchmarks.py", "--collect-only", "-q"]
    cmd += ["-m", "slow or not slow", "-p", "no:cacheprovider"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    rows = [line.split("[", 1)[1].rstrip("]") for line in r.stdout.splitlines() if "[" in line]
    assert sorted(row for row in rows if "-x3-" in row) == [
        f"train step-tinygrad-x3-{case}" for case in ("gpt2-B4", "shakespeare-B12", "tiny-B4")
    ]
    for impl in ("tinygrad-float16", "tinygrad-bfloat16", "pytorch-float16", "pytorch-bfloat16"):
        assert sum(f"-{impl}-" in row for row in rows) == 3, impl  # the train step, on each case
    assert "train step-tinygrad-shakespeare-B12" in rows  # the rows there were, under their old ids
