# benchmarks/gpu.py: on a machine without the GPU asked for it says so in one line and exits 0, before
# starting any run; a backend that is not a GPU is refused; the CPU is never taken for a GPU.
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
