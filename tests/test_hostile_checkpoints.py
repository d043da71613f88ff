# SPEC.md "Limits", "Bad input", "Checkpoints": small crafted files that once hung a reader, grew its
# memory without bound, read a bool as a number, or let an exception other than a GPTError escape. Each
# is refused before any work is done, with one line naming the value and what is allowed, by the shared
# reader and by every tier's load (conformance/tiers.py; each goes through shared/checkpoint.py).
import json
import os
import re
import threading
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conformance import tiers
from shared.checkpoint import FORMAT, OptimizerState, load_checkpoint, save_checkpoint
from shared.config import get_config
from shared.errors import CheckpointError, ConfigError, GPTError
from shared.params import num_params, param_shapes

CONFIG = get_config("tiny")  # 2 layers: 28 tensors, 7,312 parameters
LOADERS = {"load_checkpoint": load_checkpoint} | {
    f"{name}.load": partial(tiers.load, name) for name in tiers.BUILT_IN
}


@pytest.fixture(params=list(LOADERS))
def loader(request):
    return LOADERS[request.param]


def refused(loader, path, error, match):
    """loader(path) raises exactly `error`, one line matching `match`, and no other exception is
    chained to it (the traceback shows the GPTError alone)."""
    with pytest.raises(GPTError) as e:
        loader(path)
    assert type(e.value) is error, f"{type(e.value).__name__}: {e.value}"
    message = str(e.value)
    assert "\n" not in message
    assert re.search(match, message), message
    assert e.value.__cause__ is None and (e.value.__context__ is None or e.value.__suppress_context__)
    return message


def state(config=CONFIG, seed=0):
    rng = np.random.default_rng(seed)
    return {n: rng.standard_normal(s).astype(np.float32) for n, s in param_shapes(config).items()}


def write_raw(path: Path, header, data: bytes = b"") -> Path:
    """A safetensors file byte by byte: the 8-byte length, the header (a dict, or bytes as they are),
    then data."""
    h = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(len(h).to_bytes(8, "little") + h + data)
    return path


def split(path: Path) -> tuple[dict, bytes]:
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def edit_metadata(path: Path, **changes) -> Path:
    """Rewrites a saved file's __metadata__ entries (the tensors untouched): a value of None removes one."""
    header, data = split(path)
    for k, v in changes.items():
        if v is None:
            header["__metadata__"].pop(k)
        else:
            header["__metadata__"][k] = v
    return write_raw(path, header, data)


@pytest.fixture
def weights(tmp_path) -> Path:
    path = tmp_path / "model.safetensors"
    save_checkpoint(path, CONFIG, state())
    return path


@pytest.fixture
def training(tmp_path) -> Path:
    path = tmp_path / "train.safetensors"
    v = {n: np.abs(a) for n, a in state(seed=2).items()}
    save_checkpoint(path, CONFIG, state(), OptimizerState(3, state(seed=1), v))
    return path


def deep(n=100_000) -> str:
    return "[" * n + "]" * n


# ---- a config the file cannot back: refused before the parameter table is built ----


@pytest.mark.parametrize(
    "n_layer, error, match",
    [
        (10**30, ConfigError, r"config\.n_layer is 10{30}; allowed: 1 \.\. 65536 \(2\^16\)$"),
        (10**6, ConfigError, r"config\.n_layer is 1000000; allowed: 1 \.\. 65536 \(2\^16\)$"),
        (
            65536,
            CheckpointError,
            (
                r"the config \(n_layer 65536, n_head 2, n_embd 16, block_size 16, vocab_size 29\) needs 786436 "
                r"tensors; the file has 28 \(missing h\.2\.ln_1\.weight, .* and 786403 more\)$"
            ),
        ),
    ],
    ids=["1e30", "1e6", "2^16"],
)
def test_config_with_more_layers_than_the_file(weights, loader, n_layer, error, match):
    # a 20 KB file whose config asks for n_layer layers: 10^30 never returned, 10^6 took 37 s and 2.2 GB
    cfg = json.loads(split(weights)[0]["__metadata__"]["config"])
    path = edit_metadata(weights, config=json.dumps({**cfg, "n_layer": n_layer}))
    refused(loader, path, error, match)


def test_config_larger_than_the_data(tmp_path, loader):
    # every tensor listed with the config's shape, but no bytes behind them
    big = get_config("tiny", vocab_size=2**30)
    header = {
        n: {"dtype": "F16", "shape": list(s), "data_offsets": [0, 0]} for n, s in param_shapes(big).items()
    }
    header["__metadata__"] = {"format": FORMAT, "config": big.to_json()}
    path = write_raw(tmp_path / "m.safetensors", header, bytes(64))
    assert 2 * num_params(big) == 34359752064
    refused(
        loader,
        path,
        CheckpointError,
        r"needs 34359752064 bytes of weights \(2 a parameter\); the file has 64$",
    )


def test_config_of_other_weights_names_the_shape(weights, loader):
    # the byte count fails first; the message says why: the weights are another config's
    path = edit_metadata(weights, config=get_config("tiny", vocab_size=5000).to_json())
    refused(loader, path, ConfigError, r"wte\.weight has shape \(29, 16\) but the config needs \(5000, 16\)")


@pytest.mark.parametrize("field", ["n_embd", "block_size", "vocab_size", "n_layer"])
def test_config_number_of_too_many_digits(weights, loader, field):
    # json.loads raises ValueError (not JSONDecodeError) for an integer of more than 4300 digits
    cfg = json.loads(split(weights)[0]["__metadata__"]["config"])
    text = json.dumps(cfg).replace(f'"{field}": {cfg[field]}', f'"{field}": {"9" * 5000}')
    path = edit_metadata(weights, config=text)
    refused(
        loader, path, CheckpointError, r"the config in __metadata__ is not valid JSON \(Exceeds the limit"
    )


# ---- paths that are not regular files: never read ----


def fifo_guard(path: Path):
    """A thread that opens the FIFO's write end whenever a reader blocks on it, so a reader that opens
    without O_NONBLOCK sees end of file instead of hanging the suite. Returns a function that stops it."""
    done = threading.Event()

    def run():
        while not done.wait(0.01):
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:  # ENXIO: no reader yet
                pass

    threading.Thread(target=run, daemon=True).start()
    return done.set


def test_fifo(tmp_path, loader):
    path = tmp_path / "fifo.safetensors"
    os.mkfifo(path)
    stop = fifo_guard(path)
    try:
        refused(loader, path, CheckpointError, r"fifo\.safetensors: not a regular file \(a FIFO\)")
    finally:
        stop()


def test_dev_zero(loader):
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero here")
    refused(loader, "/dev/zero", CheckpointError, r"^/dev/zero: not a regular file \(a character device\)")


def test_symlink_to_dev_zero(tmp_path, loader):
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero here")
    os.symlink("/dev/zero", tmp_path / "zero.safetensors")
    refused(
        loader, tmp_path / "zero.safetensors", CheckpointError, r"not a regular file \(a character device\)"
    )


def test_symlink_loop(tmp_path, loader):
    os.symlink("b.safetensors", tmp_path / "a.safetensors")
    os.symlink("a.safetensors", tmp_path / "b.safetensors")
    refused(
        loader,
        tmp_path / "a.safetensors",
        CheckpointError,
        r"cannot be read \(too many levels of symbolic links\)",
    )


def test_path_with_a_nul_byte(tmp_path, loader):
    refused(
        loader, str(tmp_path / "a\0b.safetensors"), CheckpointError, r"not a path \(it holds a NUL byte\)$"
    )


def test_symlink_to_a_good_file_is_read(weights, loader):
    link = weights.with_name("link.safetensors")
    os.symlink(weights.name, link)
    assert loader(link).config == CONFIG


def hf_dir(folder: Path, weights: Path) -> Path:
    folder.mkdir()
    cfg = CONFIG.to_dict() | {"n_positions": CONFIG.block_size}
    (folder / "config.json").write_text(json.dumps(cfg))
    header, data = split(weights)
    header.pop("__metadata__")
    write_raw(folder / "model.safetensors", header, data)
    return folder


@pytest.mark.parametrize("name", ["config.json", "model.safetensors"])
@pytest.mark.parametrize("kind", ["directory", "fifo", "loop"])
def test_hf_dir_member_not_a_file(tmp_path, weights, loader, name, kind):
    folder = hf_dir(tmp_path / "hf", weights)
    assert loader(folder).config == CONFIG
    member = folder / name
    member.unlink()
    if kind == "directory":
        member.mkdir()
        match = r"not a regular file \(a directory\)"
    elif kind == "fifo":
        os.mkfifo(member)
        match = r"not a regular file \(a FIFO\)"
    else:
        os.symlink(name, member)
        match = r"cannot be read \(too many levels of symbolic links\)"
    stop = fifo_guard(member) if kind == "fifo" else lambda: None
    try:
        refused(loader, folder, CheckpointError, rf"hf/{name}: {match}")
    finally:
        stop()


# ---- JSON nested 100,000 deep, or not what it should be ----


def test_header_nested_deep(tmp_path, loader):
    path = write_raw(tmp_path / "m.safetensors", deep().encode())
    refused(loader, path, CheckpointError, r"corrupt safetensors header \(JSON nested too deeply\)")


def test_config_nested_deep(weights, loader):
    path = edit_metadata(weights, config=deep())
    refused(
        loader, path, CheckpointError, r"the config in __metadata__ is not valid JSON \(nested too deeply\)"
    )


def test_adamw_nested_deep(training, loader):
    path = edit_metadata(training, adamw='{"eps": ' + deep() + "}")
    refused(
        loader,
        path,
        CheckpointError,
        r"the AdamW settings in __metadata__ is not valid JSON \(nested too deeply\)",
    )


def test_hf_config_nested_deep(tmp_path, weights, loader):
    folder = hf_dir(tmp_path / "hf", weights)
    (folder / "config.json").write_text(deep())
    refused(loader, folder, CheckpointError, r"config\.json: not valid JSON \(nested too deeply\)")


def test_hf_config_not_utf8(tmp_path, weights, loader):
    folder = hf_dir(tmp_path / "hf", weights)
    (folder / "config.json").write_bytes(b'{"n_layer": "\xff"}')
    refused(loader, folder, CheckpointError, r"config\.json: not valid JSON \(not UTF-8")


@pytest.mark.parametrize("metadata", [[1, 2], "config", {"config": 3}])
def test_metadata_not_an_object_of_strings(weights, loader, metadata):
    header, data = split(weights)
    header["__metadata__"] = metadata
    path = write_raw(weights, header, data)
    refused(loader, path, CheckpointError, r"__metadata__ is not an object of strings")


# ---- numbers in a checkpoint, validated like numbers on the command line ----


@pytest.mark.parametrize(
    "adamw, match",
    [
        ('{"eps": true}', r"eps is True, not a finite number"),  # read as 1.0 before; C refuses it
        ('{"beta1": false}', r"beta1 is False, not a finite number"),
        ('{"eps": "1e-8"}', r"eps is '1e-8', not a finite number"),
        ('{"weight_decay": null}', r"weight_decay is None, not a finite number"),
        ('{"grad_clip": true}', r"grad_clip is True, not a finite number or None"),
        ('{"beta2": NaN}', r"beta2 is nan, not a finite number"),
        ('{"eps": Infinity}', r"eps is inf, not a finite number"),
        ('{"eps": 1e400}', r"eps is inf, not a finite number"),
        ('{"beta1": 1.0}', r"beta1 is 1\.0; allowed: \[0, 1\)"),
        ('{"eps": 0}', r"eps is 0\.0; allowed: > 0"),
        ('{"lr": 0.1}', r"unexpected key 'lr'"),
        ("[0.9, 0.95]", r"not a JSON object"),
        ('"adamw"', r"not a JSON object"),
        pytest.param(
            '{"eps": ' + "1" * 5000 + "}", r"not valid JSON \(Exceeds the limit", id="eps-5000-digits"
        ),
    ],
)
def test_bad_adamw_settings(training, loader, adamw, match):
    path = edit_metadata(training, adamw=adamw)
    refused(
        loader,
        path,
        CheckpointError,
        r"(unreadable AdamW settings in __metadata__|AdamW settings in __metadata__ is) .*" + match,
    )


@pytest.mark.parametrize(
    "step, match",
    [
        ("-1", r"step -1 is negative; allowed: 0 \.\. 9007199254740992 \(2\^53\)$"),
        (
            "9007199254740993",
            r"step 9007199254740993 is too large; allowed: 0 \.\. 9007199254740992 \(2\^53\)$",
        ),
        ("1" * 5000, r"needs an integer 'step'"),
        ("3.0", r"needs an integer 'step'"),
        ("true", r"needs an integer 'step'"),
    ],
    ids=["negative", "2^53+1", "5000-digits", "float", "true"],
)
def test_bad_step(training, loader, step, match):
    refused(loader, edit_metadata(training, step=step), CheckpointError, match)


def test_step_at_the_limit_is_read(training):
    assert load_checkpoint(edit_metadata(training, step=str(2**53))).optimizer.step == 2**53


def _poke(path: Path, name: str, value: float) -> Path:
    # one float32 of tensor `name` set to value, in place in the file's bytes
    header, data = split(path)
    start = header[name]["data_offsets"][0]
    data = data[:start] + np.float32(value).tobytes() + data[start + 4 :]
    return write_raw(path, header, data)


@pytest.mark.parametrize(
    "name, value, match",
    [
        (
            "optim.v.ln_f.bias",
            -0.5,
            r"optimizer second moments: ln_f\.bias holds -0\.5; a second moment is >= 0",
        ),
        ("optim.v.wte.weight", np.inf, r"optimizer second moments: wte\.weight holds NaN or infinite values"),
        ("optim.m.wpe.weight", -np.inf, r"optimizer first moments: wpe\.weight holds NaN or infinite values"),
        (
            "optim.m.h.1.ln_2.bias",
            np.nan,
            r"optimizer first moments: h\.1\.ln_2\.bias holds NaN or infinite values",
        ),
        ("h.0.attn.c_attn.bias", np.inf, r"h\.0\.attn\.c_attn\.bias holds NaN or infinite values"),
    ],
)
def test_bad_moments_and_weights(training, loader, name, value, match):
    refused(loader, _poke(training, name, value), CheckpointError, match)


# ---- the tokenizer a checkpoint's metadata carries: whatever the text, a GPTError or a tokenizer ----

ROOT = Path(__file__).resolve().parent.parent


def tokenizer_seeds() -> list[str]:
    from shared.bpe import BPETokenizer
    from shared.tokenizer import CharTokenizer, WordTokenizer

    return [
        CharTokenizer("\n !abc").to_json(),
        json.dumps({"kind": "char", "chars": "xyz"}),
        WordTokenizer(["the", " ", "cat"]).to_json(),
        BPETokenizer.train("hello world, hello there; the cat sat", 262).to_json(),
        (ROOT / "conformance/golden/hf-bpe/tokenizer.json").read_text(),
    ]


SEEDS = tokenizer_seeds()

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)


def mutate_structure(data, value):
    """A random node of the parsed JSON replaced by a random value, removed, or given a duplicate key."""
    path, node = [], value
    while isinstance(node, (dict, list)) and node and data.draw(st.booleans()):
        key = data.draw(st.sampled_from(list(node) if isinstance(node, dict) else range(len(node))))
        path.append(key)
        node = node[key]
    new = data.draw(JSON_VALUES)
    if not path:
        return json.dumps(new)
    parent = value
    for key in path[:-1]:
        parent = parent[key]
    action = data.draw(st.sampled_from(["replace", "remove", "twice"]))
    if action == "remove":
        del parent[path[-1]]
    else:
        parent[path[-1]] = new
    text = json.dumps(value, ensure_ascii=data.draw(st.booleans()))
    if action == "twice" and isinstance(parent, dict):
        # the same key again, at the end of the top-level object (json.dumps cannot write one twice)
        text = (
            text[:-1] + f", {json.dumps(str(path[-1]))}: {json.dumps(new)}}}" if text.endswith("}") else text
        )
    return text


def mutate_text(data, text):
    """A slice of the text deleted, replaced or repeated: JSON that no longer parses, or parses to
    something else."""
    i = data.draw(st.integers(0, len(text)))
    j = data.draw(st.integers(i, min(len(text), i + 8)))
    insert = data.draw(
        st.sampled_from(
            ["", "[", "{", "]", "}", '"', ",", "1e999", "true", "\\ud800", "9" * 5000, deep(), text[i:j]]
        )
    )
    return text[:i] + insert + text[j:]


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_tokenizer_json_fuzz(data):
    from shared.tokenizer import tokenizer_from_json

    seed = data.draw(st.sampled_from(SEEDS))
    if data.draw(st.booleans()):
        text = mutate_structure(data, json.loads(seed))
    else:
        text = mutate_text(data, seed)
    try:
        tokenizer = tokenizer_from_json(text, "the tokenizer metadata")
    except GPTError as e:
        assert "\n" not in str(e)
        return
    # accepted: then it works, or refuses a text it cannot encode with a GPTError
    try:
        tokenizer.decode(tokenizer.encode("the cat, hello!"))
        tokenizer.decode(list(range(tokenizer.vocab_size))[:50])
    except GPTError:
        pass


@pytest.mark.parametrize(
    "text, match",
    [
        ("[" * 100_000, r"not valid JSON"),
        (deep(), r"not valid JSON \(nested too deeply\)"),
        ('{"kind": ["char"], "chars": "ab"}', r"unknown tokenizer kind \['char'\]"),
        ('{"kind": "char", "chars": "ab", "chars": "cd"}', r"the key 'chars' appears twice in one object"),
        ('{"kind": "word", "words": [1, 2]}', r"the words must be distinct non-empty strings"),
        ('{"kind": "bpe", "vocab": {}, "merges": []}', r"the vocabulary is empty"),
        ('{"kind": "bpe", "vocab": {"a": 0, "b": 0}, "merges": []}', r"id 0 is given twice"),
        ('{"kind": "bpe", "vocab": {"a": 0, "b": 5}, "merges": []}', r"id 1 is missing"),
        ('{"kind": "bpe", "vocab": {"\\ud800": 0}, "merges": []}', r"lone surrogate"),
        ('{"kind": "bpe", "vocab": {"a": 0}, "merges": [["a"]]}', r"merge 1 is \['a'\], not a pair"),
        (
            '{"kind": "bpe", "vocab": {"a": 0}, "merges": [], "ignore_merges": "yes"}',
            r"ignore_merges must be",
        ),
        (
            '{"kind": "bpe", "vocab": {"a": 0}, "merges": [], "special_tokens": [""]}',
            r"special token cannot be empty",
        ),
        ("9" * 5000, r"not valid JSON \(Exceeds the limit"),
        (b"\xff\xfe", r"not valid JSON"),
        (None, r"expected JSON text, got NoneType"),
    ],
    ids=[
        "unclosed",
        "nested-deep",
        "kind-a-list",
        "key-twice",
        "words-not-strings",
        "bpe-empty",
        "bpe-id-twice",
        "bpe-id-missing",
        "bpe-surrogate",
        "bpe-merge-not-pair",
        "bpe-ignore_merges-str",
        "bpe-empty-special",
        "number-5000-digits",
        "not-utf8",
        "none",
    ],
)
def test_malformed_tokenizer_json(text, match):
    from shared.errors import InputError
    from shared.tokenizer import tokenizer_from_json

    with pytest.raises(InputError, match=match):
        tokenizer_from_json(text, "the tokenizer metadata")


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda d: d.update(added_tokens=5), r"'added_tokens' must be a list, got int"),
        (lambda d: d.update(post_processor={"type": "TemplateProcessing", "single": [1]}), r"post-processor"),
        (lambda d: d["model"].update(ignore_merges=1), r"the model's ignore_merges must be true or false"),
    ],
    ids=["added_tokens-int", "post-processor-item-int", "ignore_merges-int"],
)
def test_malformed_hugging_face_tokenizer_json(edit, match):
    from shared.errors import InputError
    from shared.tokenizer import tokenizer_from_json

    d = json.loads(SEEDS[-1])
    edit(d)
    with pytest.raises(InputError, match=match):
        tokenizer_from_json(json.dumps(d), "tokenizer.json")


@pytest.mark.parametrize("name", ["tokenizer.json", "vocab.json"])
def test_tokenizer_file_that_is_a_fifo(tmp_path, name):
    # a tokenizer folder whose file is a FIFO: refused, never read (reading one waits for a writer)
    from shared.errors import InputError
    from shared.tokenizer import load_tokenizer

    os.mkfifo(tmp_path / name)
    (tmp_path / "merges.txt").write_text("#version: 0.2\n")
    stop = fifo_guard(tmp_path / name)
    try:
        with pytest.raises(InputError, match=rf"{name}: not a regular file"):
            load_tokenizer(tmp_path)
    finally:
        stop()


# ---- any damage to a checkpoint's header: a GPTError or a checkpoint, nothing else ----


def _small_training_file(folder: Path) -> Path:
    config = get_config("tiny", n_layer=1, n_embd=4, n_head=1, block_size=2, vocab_size=3)
    rng = np.random.default_rng(0)
    state = {n: rng.standard_normal(s).astype(np.float32) for n, s in param_shapes(config).items()}
    v = {n: np.abs(a) for n, a in state.items()}
    path = folder / "small.safetensors"
    save_checkpoint(path, config, state, OptimizerState(3, dict(state), v), {"tokenizer": '"abc"'})
    return path


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_checkpoint_header_fuzz(tmp_path_factory, data):
    path = _small_training_file(tmp_path_factory.mktemp("fuzz"))
    header, body = split(path)
    if data.draw(st.booleans()):
        # a metadata value or a tensor's entry replaced by another value (or its text mutated)
        key = data.draw(st.sampled_from(sorted(header)))
        entry = header[key]
        inner = data.draw(st.sampled_from(sorted(entry))) if isinstance(entry, dict) else None
        new = data.draw(JSON_VALUES)
        if (
            key == "__metadata__"
            and isinstance(new, (int, float, bool, list, dict))
            and data.draw(st.booleans())
        ):
            new = json.dumps(new)  # metadata values are strings: mostly keep them so
        if inner is None:
            header[key] = new
        else:
            entry[inner] = new
        raw = json.dumps(header).encode()
    else:
        raw = mutate_text(data, json.dumps(header)).encode("utf-8", "surrogatepass")
    if data.draw(st.booleans()):
        body = body[: data.draw(st.integers(0, len(body)))]
    write_raw(path, raw, body)
    try:
        load_checkpoint(path)
    except GPTError as e:
        assert "\n" not in str(e)
