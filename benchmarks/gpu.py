"""The tinygrad tier on a GPU: its conformance suite run there, and its training step timed there beside
PyTorch's on the same device, written as the JSON and markdown that benchmarks/report.py reads.

    python -m benchmarks.gpu                      # the first GPU backend tinygrad can open
    python -m benchmarks.gpu --device CUDA        # that backend (tinygrad's name: CUDA, NV, AMD, METAL, ...)
    python -m benchmarks.gpu --out out/gpu        # where bench-DEVICE.json and bench-DEVICE.md go

On a machine where tinygrad opens no GPU backend it says so in one line and exits 0: nothing to run.
The tier itself has no GPU code: tinygrad's DEV picks the device its tensors live on, and this script
sets it for the two pytest runs it starts (conformance -k tinygrad, then the train step benchmarks for
the shakespeare and GPT-2 124M configs), with PyTorch on the matching device where it is installed.
The train step is timed on one device and, where the backend has several, data-parallel on all of them
(GPT_BENCH_DEVICES, the count), and in the tier's mixed precisions (beside PyTorch's under autocast).
"""

import argparse
import contextlib
import os
import subprocess
import sys
from pathlib import Path

# tinygrad's backends that are not the CPU, in the order it tries them itself (tinygrad/device.py)
GPU_BACKENDS = ("METAL", "AMD", "NV", "CUDA", "QCOM", "CL", "WEBGPU")
# what PyTorch calls the same hardware (None: PyTorch has no such device, or not in a usual build)
TORCH_DEVICES = {"CUDA": "cuda", "NV": "cuda", "AMD": "cuda", "METAL": "mps"}
# backends that open any index as the one device there is: tinygrad's METAL, QCOM and WEBGPU ignore the
# index, and its CPU opens as many devices as it is asked for; counting their instances counts nothing
ONE_DEVICE = ("METAL", "QCOM", "WEBGPU", "CPU")
MAX_DEVICES = 16  # a bound on the probe, should a backend open any index after all
# the benchmarks timed: the train step, the one operation that waits for the GPU to finish (it returns
# the loss), on the shakespeare and GPT-2 124M configs, its variants too (tinygrad-float16, -bfloat16,
# -xN, pytorch-float16, ...: "-m slow or not slow" takes them in); numpy's matmul ceiling is the CPU's
TIMED = "train and step and (shakespeare or gpt2) and (tinygrad or pytorch)"


def find_gpus(names=GPU_BACKENDS) -> list[str]:
    """The backends among names that tinygrad can open on this machine (a backend whose driver or
    library is missing raises on opening: it is not there)."""
    from tinygrad import Device

    found = []
    for name in names:
        with contextlib.suppress(Exception):
            Device[name]
            found.append(name)
    return found


def count_devices(backend: str, devices=None, cap: int = MAX_DEVICES) -> int:
    """How many devices of backend tinygrad opens, BACKEND:0, BACKEND:1, ... up to the first it cannot
    (a GPU backend raises for an index past its last device), and at most cap. devices: tinygrad's
    Device, or a mapping that stands in for it."""
    if devices is None:
        from tinygrad import Device

        devices = Device
    for i in range(cap):
        opened = False
        with contextlib.suppress(Exception):  # each backend raises its own error past its last device
            devices[f"{backend}:{i}"]
            opened = True
        if not opened:
            return i
    return cap


def torch_device(backend: str) -> str | None:
    """PyTorch's name for backend's device, if PyTorch is installed and can use it."""
    try:
        import torch
    except ImportError:
        return None
    device = TORCH_DEVICES.get(backend)
    if device == "cuda" and torch.cuda.is_available():
        return device
    if device == "mps" and torch.backends.mps.is_available():
        return device
    return None


def run(cmd: list[str], env: dict) -> int:
    print("$ " + " ".join(cmd), flush=True)
    return subprocess.run(cmd, check=False, env=env).returncode


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--device", help=f"a tinygrad GPU backend: {', '.join(GPU_BACKENDS)} (default: the first found)"
    )
    p.add_argument("--out", default="out/gpu", help="folder for bench-DEVICE.json and .md (default out/gpu)")
    p.add_argument("--skip-conformance", action="store_true", help="time only")
    args = p.parse_args(argv)
    if args.device is not None and args.device not in GPU_BACKENDS:
        p.exit(
            2, f"error: --device: {args.device!r} is not a tinygrad GPU backend ({', '.join(GPU_BACKENDS)})\n"
        )
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    found = find_gpus((args.device,) if args.device else GPU_BACKENDS)
    if not found:
        asked = args.device or ", ".join(GPU_BACKENDS)
        print(f"no GPU: tinygrad opens none of {asked} on this machine; nothing to run")
        return 0
    backend = found[0]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    n = 1 if backend in ONE_DEVICE else count_devices(backend)
    env = {**os.environ, "DEV": backend, "GPT_BENCH_DEVICES": str(n)}
    tdev = torch_device(backend)
    if tdev is not None:
        env["GPT_BENCH_TORCH_DEVICE"] = tdev
    print(
        f"tinygrad on {backend} ({n} device{'s' if n > 1 else ''}); "
        f"PyTorch {'on ' + tdev if tdev else 'not on this device (its rows skipped)'}"
    )
    rc = 0
    if not args.skip_conformance:
        rc = run([sys.executable, "-m", "pytest", "-q", "conformance", "-k", "tinygrad"], env)
        print(f"conformance of the tinygrad tier on {backend}: {'passed' if rc == 0 else 'FAILED'}")
    bench = out / f"bench-{backend}.json"
    cmd = [sys.executable, "-m", "pytest", "benchmarks/test_benchmarks.py", "-q", "-m", "slow or not slow"]
    cmd += ["-k", TIMED + ("" if tdev else " and not pytorch"), f"--benchmark-json={bench}"]
    rc = run(cmd, env) or rc
    if bench.exists():
        md = out / f"bench-{backend}.md"
        run([sys.executable, "-m", "benchmarks.report", str(bench), "--md", str(md)], env)
        print(f"timings: {bench} and {md}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
