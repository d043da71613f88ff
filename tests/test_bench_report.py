# The benchmark report (benchmarks/report.py) and the FLOP counts it rests on (benchmarks/flops.py).
import json

import pytest

from benchmarks import report
from benchmarks.flops import ceiling_flops, forward_flops, op_flops
from shared.config import get_config
from shared.params import num_params


def test_forward_flops_is_two_per_weight_per_token_plus_attention():
    # GPT-2 small: 2 FLOPs per weight of the matmuls per token (the tied head included, the position
    # embedding and the LayerNorms not), plus 4 T C per layer for the attention over T keys
    config = get_config("gpt2")
    C, L, V, T = config.n_embd, config.n_layer, config.vocab_size, 64
    matmul_weights = L * 12 * C * C + V * C
    assert forward_flops(config, 1, T) == T * (2 * matmul_weights + L * 4 * T * C)
    assert matmul_weights < num_params(config)
    assert op_flops("train step", config, 4, T) == 3 * forward_flops(config, 4, T)
    # a token through the cache costs about a T-th of recomputing the prefix of T
    assert op_flops("generate", config, 1, T) / (T - 1) * T / 2 < op_flops("recompute", config, 1, T)
    assert ceiling_flops() == 2 * 2048**3
    with pytest.raises(ValueError):
        op_flops("nothing", config, 1, 1)


def bench(impl, op, case, median, **extra):
    group = f"generate {case}" if op in ("generate", "recompute") else f"{op} {case}"
    return {
        "group": group,
        "params": {"impl": impl, "op": op, "case": case},
        "stats": {"median": median},
        "extra_info": extra,
    }


@pytest.fixture
def bench_json(tmp_path):
    rows = [
        bench("c", "train step", "shakespeare-B12", 0.030, gflops=130.0, ceiling_fraction=0.65),
        bench("numpy", "train step", "shakespeare-B12", 0.060),
        bench("pytorch", "train step", "shakespeare-B12", 0.040),
        bench("c", "generate", "shakespeare-B12", 0.020, tokens_per_s=3150.0, T=64),
        bench("c", "recompute", "shakespeare-B12", 0.00125, tokens_per_s=800.0),
        bench("ceiling", "train step", "shakespeare-B12", 0.09, gflops=190.0),
    ]
    path = tmp_path / "bench.json"
    untimed = {**bench("numpy", "forward", "tiny-B4", 0.0), "stats": None}
    path.write_text(
        json.dumps(
            {"machine_info": {"cpu": {"brand_raw": "Test CPU", "count": 2}}, "benchmarks": [*rows, untimed]}
        )
    )
    return path


def test_report_table_and_targets(bench_json, tmp_path, capsys):
    report.main([str(bench_json), "--md", str(tmp_path / "t.md"), "--png", str(tmp_path / "c.png")])
    text = (tmp_path / "t.md").read_text()
    assert "Test CPU, 2 cores" in text
    assert "| train step shakespeare-B12 | c | 30.00 ms |  | 130.0 | 0.65 | 0.75 |" in text
    assert "c train step shakespeare-B12: 0.75x PyTorch's time (target at most 0.8x): met" in text
    assert "numpy train step shakespeare-B12: 1.50x PyTorch's time (target at most 1.5x): met" in text
    assert "tinygrad train step shakespeare-B12: at most 3.0x PyTorch's time: not measured" in text
    assert (
        "c generation shakespeare-B12: a token through the KV cache is 3.9x faster than recomputing" in text
    )
    assert "(target at least 5x): NOT met" in text
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_refuses_untimed_json(tmp_path):
    path = tmp_path / "b.json"
    path.write_text(json.dumps({"benchmarks": [{**bench("c", "forward", "tiny-B4", 0.0), "stats": None}]}))
    with pytest.raises(SystemExit, match="no timed benchmarks"):
        report.main([str(path)])


def test_the_variants_rows_sit_beside_their_tier_and_meet_pytorch_in_their_precision(tmp_path):
    # the train step's variants (benchmarks/test_benchmarks.py VARIANTS): a mixed-precision row against
    # PyTorch in the same precision, the tier on several devices against PyTorch on one
    case = "shakespeare-B12"
    rows = [
        bench("pytorch-float16", "train step", case, 0.050),
        bench("tinygrad-x2", "train step", case, 0.060),
        bench("pytorch", "train step", case, 0.040),
        bench("tinygrad-float16", "train step", case, 0.100),
        bench("tinygrad", "train step", case, 0.080),
        bench("tinygrad-bfloat16", "train step", case, 0.120),  # no pytorch-bfloat16 in this run
        bench("c", "train step", case, 0.030),
    ]
    path = tmp_path / "bench.json"
    path.write_text(json.dumps({"benchmarks": rows}))
    report.main([str(path), "--md", str(tmp_path / "t.md"), "--png", str(tmp_path / "c.png")])
    lines = [line for line in (tmp_path / "t.md").read_text().splitlines() if line.startswith("| train")]
    names = [line.split(" | ")[1] for line in lines]
    assert names == [
        "c",
        "tinygrad",
        "tinygrad-bfloat16",
        "tinygrad-float16",
        "tinygrad-x2",
        "pytorch",
        "pytorch-float16",
    ]
    vs_pytorch = {name: line.rsplit("|", 2)[1].strip() for name, line in zip(names, lines, strict=True)}
    assert vs_pytorch == {
        "c": "0.75",
        "tinygrad": "2.00",
        "tinygrad-bfloat16": "",
        "tinygrad-float16": "2.00",
        "tinygrad-x2": "1.50",
        "pytorch": "",
        "pytorch-float16": "",
    }
    assert (
        "tinygrad train step shakespeare-B12: 2.00x PyTorch's time (target at most 3.0x): met"
        in (tmp_path / "t.md").read_text()
    )
