"""Memory does not grow with the corpus (SPEC.md "Token files"): the peak resident memory of training
on token files of N and N/10 tokens, with the numpy tier (TokenDataset, np.memmap) and the C program
(train_gpt, pread), and of counting the ids (token_counts) against np.bincount on the whole memmap.

    python -m benchmarks.token_memory                  # 150M uint16 tokens (300 MB) and 15M
    python -m benchmarks.token_memory --tokens 20_000_000 --dir /var/tmp

The token files are written (random ids, streamed by write_tokens) into a temporary folder under --dir
and deleted at the end. Each measurement runs in a fresh process; its peak is that process's maximum resident set size (GNU
time's %M, else ru_maxrss from os.wait4), which counts the pages of a mapped file it has touched as
well as its own memory.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

V = 65  # Tiny Shakespeare's vocabulary; ids uint16
CHUNK = 1 << 22
IMPL_C = Path(__file__).resolve().parent.parent / "impl_c"


def write_corpus(folder: Path, n_train: int, n_val: int, seed: int = 0):
    from shared.data import _save_tokenizer
    from shared.tokenizer import CharTokenizer
    from shared.tokens import write_tokens

    rng = np.random.default_rng(seed)

    def chunks(n):  # a chunk at a time: the corpus is never in memory
        for start in range(0, n, CHUNK):
            yield rng.integers(0, V, min(CHUNK, n - start), dtype=np.uint16)

    write_tokens(folder / "train.bin", chunks(n_train), V, "char")
    write_tokens(folder / "val.bin", chunks(n_val), V, "char")
    _save_tokenizer(CharTokenizer("".join(chr(0x100 + i) for i in range(V))), folder)


def peak_mb(cmd: list[str]) -> float:
    """Runs cmd and returns its peak resident memory in MB. Through GNU time (%M, of a process forked
    from time's own small one) where it exists: Linux's ru_maxrss of a child forked from this Python
    process starts at this process's size, which would hide a small program's own peak."""
    gnu_time = Path("/usr/bin/time")
    if gnu_time.exists():
        r = subprocess.run([str(gnu_time), "-f", "%M", *cmd], capture_output=True, text=True, check=False)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {r.stderr[-2000:]}")
        return int(r.stderr.strip().splitlines()[-1]) / 1024  # KB
    print("(no /usr/bin/time: peaks include this process's size at fork)", file=sys.stderr)
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed")
    return usage.ru_maxrss / (1024 if sys.platform != "darwin" else 1024 * 1024)  # KB on Linux


# ---- what each child process does ----


def child(what: str, folder: str, steps: int):
    from shared.data import TokenDataset, token_counts

    ds = TokenDataset(folder)
    if what == "train":  # the training loop of transformer.py, unchanged, on the numpy tier
        import impl_numpy
        import transformer
        from shared.config import get_config
        from shared.params import init_state_dict

        config = get_config("tiny", vocab_size=V)
        model = impl_numpy.from_state_dict(config, init_state_dict(config, 0))
        s = transformer.TrainSettings(
            steps=steps, batch_size=12, warmup_steps=1, decay_steps=steps, eval_interval=steps, eval_iters=2
        )
        transformer.train(model, ds, s, log=lambda *_: None, progress=False)
    elif what == "count":
        token_counts(ds.train, V)
    elif what == "bincount":  # what unigram_baseline does today: an int64 copy of the whole split
        np.bincount(ds.train, minlength=V)


def measure(folder: Path, steps: int, train_gpt: str) -> dict:
    me = [sys.executable, "-m", "benchmarks.token_memory", "--child"]
    out = {name: peak_mb([*me, name, str(folder), str(steps)]) for name in ("train", "count")}
    out["train_gpt"] = peak_mb(
        [
            train_gpt,
            "train",
            *("--train-bin", str(folder / "train.bin"), "--val-bin", str(folder / "val.bin")),
            *[
                "--n-layer",
                "2",
                "--n-head",
                "2",
                "--n-embd",
                "16",
                "--block-size",
                "16",
                "--batch-size",
                "12",
                "--threads",
                "1",
            ],
            *("--steps", str(steps), "--eval-interval", str(steps), "--eval-iters", "2"),
            *("--out", str(folder / "c.safetensors")),
        ]
    )
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokens", type=int, default=150_000_000, help="tokens of the big train.bin")
    p.add_argument("--steps", type=int, default=50, help="training steps per run")
    p.add_argument("--dir", default=None, help="where the temporary token files go (default: $TMPDIR)")
    p.add_argument("--child", nargs=3, metavar=("WHAT", "FOLDER", "STEPS"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args.child[0], args.child[1], int(args.child[2]))
    subprocess.run(["make", "-s", "-C", str(IMPL_C), "train_gpt"], check=True)
    tmp = Path(tempfile.mkdtemp(prefix="token_memory.", dir=args.dir))
    rows = {}
    try:
        for n in (args.tokens, args.tokens // 10):
            folder = tmp / str(n)
            start = time.perf_counter()
            write_corpus(folder, n, max(n // 10, 10_000))
            size = (folder / "train.bin").stat().st_size / 2**20
            print(f"wrote {n:,} tokens ({size:.0f} MB) in {time.perf_counter() - start:.0f} s", flush=True)
            rows[n] = {"file_mb": size, **measure(folder, args.steps, str(IMPL_C / "train_gpt"))}
            if n == args.tokens:
                me = [
                    sys.executable,
                    "-m",
                    "benchmarks.token_memory",
                    "--child",
                    "bincount",
                    str(folder),
                    "0",
                ]
                rows[n]["bincount"] = peak_mb(me)
            shutil.rmtree(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\npeak resident memory (MB), {args.steps} steps of the tiny config, batch 12:")
    print(f"{'train tokens':>14} {'file':>8} {'numpy train':>12} {'token_counts':>13} {'train_gpt':>10}")
    for n, r in rows.items():
        print(
            f"{n:>14,} {r['file_mb']:>8.0f} {r['train']:>12.0f} {r['count']:>13.0f} {r['train_gpt']:>10.0f}"
        )
    big = rows[args.tokens]
    print(f"np.bincount on the whole {big['file_mb']:.0f} MB memmap: {big['bincount']:.0f} MB")
    print(json.dumps({str(n): r for n, r in rows.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
