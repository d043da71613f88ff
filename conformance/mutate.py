"""Mutation testing of the conformance suite: plausible bugs, planted one at a time in a copy of the
project (a tier's source, C included, or the shared code), each followed by the fast part of the suite,
and a table of what the suite made of it: caught or missed, the first failing test, and the tier the
failures blamed. The goal is every bug caught and blamed on the tier that has it.

    python -m conformance.mutate                    # every bug (about 30 min on 2 cores)
    python -m conformance.mutate --tier c numpy     # the bugs of some tiers
    python -m conformance.mutate --bug c-softmax-no-max numpy-clip-scales-up
    python -m conformance.mutate --ci               # the handful CI runs
    python -m conformance.mutate --list             # the bugs, without running anything
    python -m conformance.mutate --markdown out/mutations.md --json out/mutations.json

The exit status is 1 when a bug is missed or blamed on another tier. A failure blames the tier it
tests (a test's `tier` parameter; tests/test_shared.py blames the shared code); the property tests,
whose stand-in truth is the float64 numpy tier, blame "that tier or numpy" and count only when
nothing else failed. The tinygrad tier's tests (minutes: every mutant compiles its graphs again) run
for the bugs of the tinygrad tier and of the shared code, which it imports; a bug in the C or the
numpy tier cannot reach them, as the tinygrad tier imports neither (tests/test_mutate.py checks the
imports), and --every-tier runs them anyway.

This module is also the pytest plugin that reports each failure's tier to the command
(`-p conformance.mutate`).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# the fast part of the suite: every tier against the truth, determinism, the property tests, shared/
FAST = [
    "conformance/test_conformance.py",
    "conformance/test_golden.py",
    "conformance/test_properties.py",
    "conformance/test_determinism.py",
    "tests/test_shared.py",
]
FAMILIES = {"numpy": "numpy", "numpy-float64": "numpy", "c": "c", "tinygrad": "tinygrad"}
EVERY_TIER = ("numpy", "c", "tinygrad")
# what a copy of the project needs to run the fast suite
COPY = [
    "shared",
    "impl_numpy",
    "impl_c",
    "impl_tinygrad",
    "conformance",
    "tests",
    "conftest.py",
    "pyproject.toml",
]


@dataclass(frozen=True)
class Bug:
    tier: str  # "numpy", "c", "tinygrad" or "shared": where the bug is, and whom it should be blamed on
    file: str  # relative to the project
    old: str  # the right code, found exactly once in the file
    new: str  # the bug
    what: str  # a line for the table


def _bugs() -> dict[str, Bug]:
    np_model, np_optim, np_gpt = "impl_numpy/model.py", "impl_numpy/optim.py", "impl_numpy/gpt.py"
    c, tg_model, tg_optim = "impl_c/gpt.c", "impl_tinygrad/model.py", "impl_tinygrad/optim.py"
    sampling = "shared/sampling.py"
    return {
        # ---- the numpy tier ----
        "numpy-softmax-no-max": Bug(
            "numpy",
            np_model,
            "e = (x - constant_max(x, -1)).exp()",
            "e = x.exp()",
            "attention softmax without the max shift",
        ),
        "numpy-mask-off-by-one": Bug(
            "numpy",
            np_model,
            "<= (pos0 + np.arange(T))[:, None]",
            "<= (pos0 + 1 + np.arange(T))[:, None]",
            "causal mask off by one (each query sees the next key)",
        ),
        "numpy-layernorm-unbiased": Bug(
            "numpy",
            np_model,
            "var = (xc * xc).mean(-1, keepdims=True)",
            "var = (xc * xc).sum(-1, keepdims=True) * (1.0 / (x.shape[-1] - 1))",
            "LayerNorm variance unbiased (divided by C - 1)",
        ),
        "numpy-layernorm-eps": Bug(
            "numpy",
            np_model,
            "def layernorm(x, w, b, eps=1e-5):",
            "def layernorm(x, w, b, eps=1e-6):",
            "LayerNorm eps 1e-6",
        ),
        "numpy-gelu-constant": Bug(
            "numpy",
            np_model,
            "(GELU_C * 0.044715)",
            "(GELU_C * 0.04715)",
            "GELU constant 0.04715 for 0.044715",
        ),
        "numpy-no-scale": Bug(
            "numpy",
            np_model,
            "scale = 1.0 / math.sqrt(HS) if config.scale_attn_weights else 1.0",
            "scale = 1.0",
            "attention scores not divided by sqrt(head size)",
        ),
        "numpy-loss-over-ignored": Bug(
            "numpy",
            np_model,
            "* (1.0 / int(counted.sum()))",
            "* (1.0 / counted.size)",
            "loss averaged over the ignored targets too",
        ),
        "numpy-lse-no-max": Bug(
            "numpy",
            np_model,
            "lse = ((logits - m).exp().sum(-1, keepdims=True)).log() + m",
            "lse = (logits.exp().sum(-1, keepdims=True)).log()",
            "log-sum-exp of the loss without the max shift",
        ),
        "numpy-head-untied": Bug(
            "numpy",
            np_model,
            'logits = x @ params["wte.weight"].transpose(1, 0)',
            'logits = x @ Tensor(params["wte.weight"].data.T)',
            "tied head untied: the head's gradient never reaches wte",
        ),
        "numpy-cache-position": Bug(
            "numpy",
            np_model,
            'pos0 = 0 if cache is None or cache[0]["k"] is None else cache[0]["k"].shape[2]',
            'pos0 = 0 if cache is None or cache[0]["k"] is None else cache[0]["k"].shape[2] - 1',
            "KV cache: a new token's position off by one",
        ),
        "numpy-grad-overwritten": Bug(
            "numpy",
            "impl_numpy/engine.py",
            "t.grad, t._owns_grad = t.grad + g, True",
            "t.grad, t._owns_grad = g, False",
            "autograd: a tensor used twice keeps its last gradient only",
        ),
        "numpy-bias-correction": Bug(
            "numpy",
            np_optim,
            "bc1 = 1.0 - cfg.beta1**t\n    bc2 = 1.0 - cfg.beta2**t",
            "bc1 = bc2 = 1.0",
            "Adam's bias correction missing",
        ),
        "numpy-decay-everything": Bug(
            "numpy",
            np_optim,
            "if is_decayed(name, p.shape):",
            "if True:",
            "weight decay on every parameter (biases and gains too)",
        ),
        "numpy-clip-scales-up": Bug(
            "numpy",
            np_optim,
            "if coef < 1.0:",
            "if coef != 1.0:",
            "clipping that also scales a small gradient up to the limit",
        ),
        "numpy-clip-subset": Bug(
            "numpy",
            np_optim,
            "return float(np.sqrt(sum(float(np.vdot(g, g)) for g in grads.values())))",
            "return float(np.sqrt(sum(float(np.vdot(g, g)) for g in grads.values() if g.ndim == 2)))",
            "clipping norm over the 2-D gradients only",
        ),
        "numpy-clip-after-update": Bug(
            "numpy",
            np_gpt,
            "        if self.adamw.grad_clip is not None:\n"
            "            clip_grad_norm(grads, self.adamw.grad_clip, norm)\n"
            "        self.step += 1\n"
            "        adamw_step(self.params, grads, self.m, self.v, self.step, lr, self.adamw)\n",
            "        self.step += 1\n"
            "        adamw_step(self.params, grads, self.m, self.v, self.step, lr, self.adamw)\n"
            "        if self.adamw.grad_clip is not None:\n"
            "            clip_grad_norm(grads, self.adamw.grad_clip, norm)\n",
            "gradient clipping after the update",
        ),
        # ---- the C tier ----
        "c-softmax-no-max": Bug(
            "c",
            c,
            "for (int t2 = 0; t2 < n; t2++) row[t2] = exp_fast(row[t2] - maxval);",
            "for (int t2 = 0; t2 < n; t2++) row[t2] = exp_fast(row[t2]);",
            "attention softmax without the max shift",
        ),
        "c-mask-off-by-one": Bug(
            "c",
            c,
            "int n = pos0 + t + 1;  // keys visible to this query",
            "int n = pos0 + t + 2 < nk ? pos0 + t + 2 : nk;",
            "causal mask off by one (each query sees the next key)",
        ),
        "c-layernorm-unbiased": Bug(
            "c",
            c,
            "        v /= C;\n",
            "        v /= C - 1;\n",
            "LayerNorm variance unbiased (divided by C - 1)",
        ),
        "c-layernorm-backward-overwrites": Bug(
            "c",
            c,
            "dx[i] += (weight[i] * dy[i] - a - norm * b) * rs;",
            "dx[i] = (weight[i] * dy[i] - a - norm * b) * rs;",
            "LayerNorm backward overwrites its input's gradient (the residual's) instead of adding",
        ),
        "c-gelu-constant": Bug(
            "c",
            c,
            "float u = GELU_SCALE * (x + 0.044715f * x * x * x);\n        out[i]",
            "float u = GELU_SCALE * (x + 0.04715f * x * x * x);\n        out[i]",
            "GELU constant 0.04715 for 0.044715 (forward)",
        ),
        "c-gelu-derivative": Bug(
            "c",
            c,
            "float du = GELU_SCALE * (1.0f + 3.0f * 0.044715f * x * x);",
            "float du = GELU_SCALE * (1.0f + 0.044715f * x * x);",
            "GELU backward: d/dx of x^3 taken as x^2",
        ),
        "c-key-gradient-transposed": Bug(
            "c",
            c,
            "rc |= gemm(T, HS, T, datt, 1, T, q, ld, 1, dk, ldd, 0);",
            "rc |= gemm(T, HS, T, datt, T, 1, q, ld, 1, dk, ldd, 0);",
            "attention backward: dk from d(scores) untransposed",
        ),
        "c-loss-backward-over-ignored": Bug(
            "c",
            c,
            "float inv = 1.0f / (float)count;",
            "float inv = 1.0f / (float)N;",
            "loss backward averaged over the ignored targets too",
        ),
        "c-head-untied": Bug(
            "c",
            "impl_c/matmul.c",
            "return gemm(V, C, N, dlogits, 1, V, x, C, 1, dwte, C, 1);",
            "return 0;",
            "tied head untied: the head's gradient never reaches wte",
        ),
        "c-cache-position": Bug(
            "c",
            c,
            "int pos0 = kv->len, N = B * T;",
            "int pos0 = kv->len > 0 ? kv->len - 1 : 0, N = B * T;",
            "KV cache: a new token's position off by one",
        ),
        "c-bias-correction": Bug(
            "c",
            c,
            "double bc1 = 1.0 - pow(beta1, (double)t), bc2 = 1.0 - pow(beta2, (double)t);",
            "double bc1 = 1.0, bc2 = 1.0;",
            "Adam's bias correction missing",
        ),
        "c-decay-everything": Bug(
            "c",
            c,
            "double decay = ndim == 2 ? 1.0 - (double)lr * weight_decay : 1.0;",
            "double decay = 1.0 - (double)lr * weight_decay;",
            "weight decay on every parameter (biases and gains too)",
        ),
        "c-clip-scales-up": Bug(
            "c",
            c,
            "if (coef < 1.0) gscale = coef;",
            "gscale = coef;",
            "clipping that also scales a small gradient up to the limit",
        ),
        "c-clip-subset": Bug(
            "c",
            c,
            "for (int ch = 0; ch < NORM_CHUNKS; ch++) sumsq += partial[ch];",
            "for (int ch = 0; ch < NORM_CHUNKS / 2; ch++) sumsq += partial[ch];",
            "clipping norm over the first half of the parameters only",
        ),
        # ---- the tinygrad tier ----
        "tinygrad-softmax-no-max": Bug(
            "tinygrad",
            tg_model,
            "e = (x - x.max(-1, keepdim=True).detach()).exp()",
            "e = x.exp()",
            "attention softmax without the max shift",
        ),
        "tinygrad-mask-off-by-one": Bug(
            "tinygrad",
            tg_model,
            "<= (Tensor.arange(T) + pos0)[:, None]",
            "<= (Tensor.arange(T) + pos0 + 1)[:, None]",
            "causal mask off by one (each query sees the next key)",
        ),
        "tinygrad-layernorm-unbiased": Bug(
            "tinygrad",
            tg_model,
            "var = (xc * xc).mean(-1, keepdim=True)",
            "var = (xc * xc).sum(-1, keepdim=True) / (x.shape[-1] - 1)",
            "LayerNorm variance unbiased (divided by C - 1)",
        ),
        "tinygrad-loss-over-ignored": Bug(
            "tinygrad",
            tg_model,
            "N = counted.cast(logits.dtype).sum()",
            "N = float(targets.shape[0])",
            "loss averaged over the ignored (and padded) targets too",
        ),
        "tinygrad-head-untied": Bug(
            "tinygrad",
            tg_model,
            'logits = matmul(x, params["wte.weight"].transpose(1, 0), compute)',
            'logits = matmul(x, params["wte.weight"].detach().transpose(1, 0), compute)',
            "tied head untied: the head's gradient never reaches wte",
        ),
        "tinygrad-cache-position": Bug(
            "tinygrad",
            tg_model,
            "at = Tensor.arange(S)[:, None] == pos0  # (S, 1)",
            "at = Tensor.arange(S)[:, None] == pos0 + 1  # (S, 1)",
            "KV cache: a new key and value written one slot late",
        ),
        "tinygrad-bias-correction": Bug(
            "tinygrad",
            tg_optim,
            "bc1 = 1.0 - cfg.beta1**t\n    bc2 = 1.0 - cfg.beta2**t",
            "bc1 = bc2 = 1.0",
            "Adam's bias correction missing",
        ),
        "tinygrad-clip-scales-up": Bug(
            "tinygrad",
            tg_optim,
            "coef = (max_norm / (norm + 1e-6)).minimum(1.0)",
            "coef = max_norm / (norm + 1e-6)",
            "clipping that also scales a small gradient up to the limit",
        ),
        # ---- the shared code ----
        "shared-decay-everything": Bug(
            "shared",
            "shared/params.py",
            "return len(shape) == 2",
            "return len(shape) >= 1",
            "is_decayed: weight decay on every parameter",
        ),
        "shared-top-k-drops-ties": Bug(
            "shared",
            sampling,
            "z = np.where(z < kth, -np.inf, z)",
            "z = np.where(z <= kth, -np.inf, z)",
            "top-k keeps k - 1 tokens (drops the k-th and its ties)",
        ),
        "shared-context-window": Bug(
            "shared",
            sampling,
            "return idx[:, -block_size:]",
            "return idx[:, -(block_size - 1) :]",
            "the context window one token short",
        ),
        "shared-greedy-highest-id": Bug(
            "shared",
            sampling,
            "return np.argmax(logits, axis=-1).astype(np.int64)",
            "return (logits.shape[-1] - 1 - np.argmax(logits[:, ::-1], axis=-1)).astype(np.int64)",
            "greedy decoding breaks ties toward the highest id",
        ),
    }


BUGS = _bugs()
# CI runs these (a bug per tier and one in the shared code, the tinygrad one cheap to compile)
CI_BUGS = [
    "numpy-loss-over-ignored",
    "c-softmax-no-max",
    "shared-top-k-drops-ties",
    "tinygrad-clip-scales-up",
]


# ---- a mutant: a copy of the project with one bug ----


def copy_project(dest: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.so", "*.o", ".pytest_cache", "out")
    for name in COPY:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=ignore)
        elif src.is_file():
            shutil.copy2(src, dest / name)


def plant(dest: Path, bug: Bug) -> None:
    path = dest / bug.file
    text = path.read_text()
    if text.count(bug.old) != 1:
        raise RuntimeError(
            f"{bug.file} changed: the code this bug edits is there {text.count(bug.old)} times"
        )
    path.write_text(text.replace(bug.old, bug.new))


@dataclass
class Outcome:
    name: str
    bug: Bug
    failures: list  # [{"test", "tier", "ambiguous", "message"}] in run order
    passed: int
    seconds: float
    error: str = ""  # the run itself broke (a crash before any test, a timeout)

    @property
    def caught(self) -> bool:
        return bool(self.failures) or bool(self.error)

    @property
    def first(self) -> str:
        return self.failures[0]["test"] if self.failures else self.error

    @property
    def blamed(self) -> set[str]:
        clear = {f["tier"] for f in self.failures if not f["ambiguous"]}
        return clear or {f["tier"] + " or numpy" for f in self.failures}

    @property
    def right(self) -> bool:
        if self.bug.tier == "shared":
            return "shared" in self.blamed or set(EVERY_TIER) <= self.blamed
        return self.blamed == {self.bug.tier}


def run_one(name: str, bug: Bug, tiers, timeout: float) -> Outcome:
    start = time.time()
    with tempfile.TemporaryDirectory(prefix=f"mutant-{name}-") as tmp:
        dest = Path(tmp)
        copy_project(dest)
        plant(dest, bug)
        report = dest / "mutate-report.json"
        env = {**os.environ, "PYTHONPATH": str(dest), "PYTHONDONTWRITEBYTECODE": "1"}
        cmd = [sys.executable, "-m", "pytest", *FAST, "-q", "-p", "no:cacheprovider"]
        cmd += ["-p", "conformance.mutate", "--mutate-report", str(report), "--mutate-tiers", ",".join(tiers)]
        try:
            r = subprocess.run(
                cmd, check=False, cwd=dest, env=env, capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired:
            return Outcome(name, bug, [], 0, time.time() - start, f"timed out after {timeout:.0f} s")
        if not report.is_file():  # pytest never got to the tests
            tail = (r.stdout + r.stderr).strip().splitlines()[-1:] or ["no output"]
            return Outcome(name, bug, [], 0, time.time() - start, f"pytest exited {r.returncode}: {tail[0]}")
        data = json.loads(report.read_text())
    return Outcome(name, bug, data["failures"], data["passed"], time.time() - start)


# ---- the pytest plugin: which tier each failure blames ----


def pytest_addoption(parser):
    group = parser.getgroup("mutate", "conformance.mutate's report")
    group.addoption("--mutate-report", help="write the failures and their tiers as JSON to this path")
    group.addoption("--mutate-tiers", help="run the tests of these tier families only (comma-separated)")


def _family(item) -> str | None:
    params = getattr(getattr(item, "callspec", None), "params", {})
    if "tier" in params:
        return FAMILIES.get(params["tier"], str(params["tier"]))
    if item.nodeid.startswith("tests/test_shared.py"):
        return "shared"
    return None  # a test of the truth itself


def pytest_collection_modifyitems(config, items):
    wanted = config.getoption("--mutate-tiers", None)
    if not wanted:
        return
    wanted = set(wanted.split(","))
    keep = [i for i in items if _family(i) in wanted or _family(i) in (None, "shared")]
    config.hook.pytest_deselected(items=[i for i in items if i not in keep])
    items[:] = keep


_RESULTS = {"failures": [], "passed": 0}
_ITEMS = {}


def pytest_runtest_setup(item):
    _ITEMS[item.nodeid] = item


def pytest_runtest_logreport(report):
    if report.passed and report.when == "call":
        _RESULTS["passed"] += 1
    if report.failed:
        item = _ITEMS.get(report.nodeid)
        family = _family(item) if item is not None else None
        message = str(report.longrepr).strip().splitlines()
        _RESULTS["failures"].append(
            {
                "test": report.nodeid,
                "tier": family or "the truth",
                "ambiguous": report.nodeid.startswith("conformance/test_properties.py"),
                "message": next((line for line in reversed(message) if line.startswith("E ")), "")[:200],
            }
        )


def pytest_sessionfinish(session):
    path = session.config.getoption("--mutate-report", None)
    if path:
        Path(path).write_text(json.dumps(_RESULTS))


# ---- the table ----


def markdown(outcomes: list[Outcome]) -> str:
    lines = [
        "| bug | tier | caught | first failing test | blamed | failing tests |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for o in outcomes:
        caught = "caught" if o.caught else "**missed**"
        blamed = ", ".join(sorted(o.blamed)) if o.failures else ("-" if not o.error else "the run")
        if o.caught and not o.right:
            blamed = f"**{blamed}**"
        first = o.first.replace("|", "\\|")
        lines.append(
            f"| {o.bug.what} (`{o.name}`) | {o.bug.tier} | {caught} | `{first}` | {blamed} | {len(o.failures)} |"
        )
    n_right = sum(o.caught and o.right for o in outcomes)
    lines.append("")
    lines.append(f"{n_right} of {len(outcomes)} bugs caught and blamed on the tier that has them.")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m conformance.mutate", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--tier", nargs="+", choices=[*EVERY_TIER, "shared"], help="the bugs of these tiers")
    parser.add_argument(
        "--bug", nargs="+", choices=list(BUGS), metavar="NAME", help="these bugs (see --list)"
    )
    parser.add_argument("--ci", action="store_true", help=f"the handful CI runs: {', '.join(CI_BUGS)}")
    parser.add_argument("--list", action="store_true", help="list the bugs and exit")
    parser.add_argument("--every-tier", action="store_true", help="run every tier's tests for every bug")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per bug (default 1800)")
    parser.add_argument("--markdown", metavar="PATH", help="also write the table here")
    parser.add_argument("--json", metavar="PATH", help="also write every failure here")
    args = parser.parse_args(argv)
    if args.timeout <= 0:
        parser.error(f"--timeout must be positive, got {args.timeout}")
    names = args.bug or (CI_BUGS if args.ci else list(BUGS))
    if args.tier:
        names = [n for n in names if BUGS[n].tier in args.tier]
    if args.list:
        for n in names:
            print(f"{n:<34} {BUGS[n].tier:<9} {BUGS[n].file:<24} {BUGS[n].what}")
        return 0
    for out in (args.markdown, args.json):
        if out and not Path(out).resolve().parent.is_dir():
            parser.error(f"cannot write {out}: {Path(out).parent} is not a folder")

    outcomes = []
    for k, name in enumerate(names):
        bug = BUGS[name]
        tiers = EVERY_TIER if args.every_tier or bug.tier in ("tinygrad", "shared") else ("numpy", "c")
        print(f"[{k + 1}/{len(names)}] {name}: {bug.what} ...", end=" ", flush=True)
        o = run_one(name, bug, tiers, args.timeout)
        outcomes.append(o)
        verdict = "MISSED" if not o.caught else ("caught" if o.right else "caught, blamed wrongly")
        print(f"{verdict} ({len(o.failures)} failing, first {o.first or '-'}; {o.seconds:.0f} s)", flush=True)
    table = markdown(outcomes)
    print("\n" + table)
    if args.markdown:
        Path(args.markdown).write_text(table + "\n")
    if args.json:
        rows = [
            {
                "bug": o.name,
                "tier": o.bug.tier,
                "what": o.bug.what,
                "caught": o.caught,
                "right": o.right,
                "blamed": sorted(o.blamed),
                "seconds": round(o.seconds, 1),
                "passed": o.passed,
                "error": o.error,
                "failures": o.failures,
            }
            for o in outcomes
        ]
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0 if all(o.caught and o.right for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
