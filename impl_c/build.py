# Builds libgpt.so on first use: no manual build step. The library is cached under a name that hashes
# the sources and the flags, so an edited source rebuilds it and an unchanged one never does.
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCES = ["gpt.c", "matmul.c", "safetensors.c"]  # the library; the programs and tests are in the Makefile
HEADERS = ["gpt.h", "matmul.h", "safetensors.h"]
BASE_FLAGS = ["-O3", "-std=c11", "-fPIC", "-shared", "-fopenmp", "-fno-math-errno"]  # as the Makefile


class BuildError(RuntimeError):
    """The C tier's library could not be built (no compiler, or a compile error)."""


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "gpt-tiers" / "impl_c"


def find_compiler() -> str:
    for cc in [os.environ.get("CC"), "cc", "gcc", "clang"]:
        if cc and shutil.which(cc):
            return cc
    raise BuildError(
        "the C tier needs a C compiler and none was found (tried $CC, cc, gcc, clang); "
        "install one, e.g. `apt-get install -y gcc`, or set CC"
    )


def _march_native_works(cc: str) -> bool:
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "t.c"
        src.write_text("int main(void) { return 0; }\n")
        r = subprocess.run(
            [cc, "-march=native", str(src), "-o", str(Path(tmp) / "t")], capture_output=True, check=False
        )
        return r.returncode == 0


def library_path() -> Path:
    """The path of a built libgpt.so for the current sources, building it if needed."""
    cc = find_compiler()
    flags = BASE_FLAGS + (["-march=native"] if _march_native_works(cc) else [])
    h = hashlib.sha256(" ".join([cc, *flags, sys.platform]).encode())
    for name in SOURCES + HEADERS:
        h.update(name.encode() + b"\0" + (HERE / name).read_bytes())
    out = cache_dir() / f"libgpt-{h.hexdigest()[:16]}.so"
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    # compile to a temporary name, then rename: concurrent first uses never see half a library
    tmp = out.with_name(f"{out.name}.{os.getpid()}.tmp")
    cmd = [cc, *flags, *(str(HERE / s) for s in SOURCES), "-o", str(tmp), "-lm"]
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise BuildError(f"building the C tier failed:\n$ {' '.join(cmd)}\n{r.stderr}")
    os.replace(tmp, out)
    return out
