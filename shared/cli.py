# What the programs (transformer.py and the experiments it runs) share on the command line: the rule
# of issue 14, a user error refused before any work with one line naming the value and what is
# allowed, and nothing already on disk lost. Numbers are checked as argparse parses them; the output
# folder is checked before training; a training run locks its checkpoint and can be stopped with Ctrl-C.
import argparse
import errno
import fcntl
import math
import os
import re
import signal
import threading
from pathlib import Path

from shared.errors import GPTError

# the temporary files of the atomic writers (shared/checkpoint.py, impl_c/safetensors.c): NAME.<16 hex>.tmp
TMP_PATTERN = r"\.[0-9a-f]{16}\.tmp"


class Parser(argparse.ArgumentParser):
    """argparse, with a mistake on the command line said in one line (no usage block above it): the
    option, the value given and what is allowed; `--help` shows the rest."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def at_least(low, kind=int, strict: bool = False, high=None):
    """An argparse type: a finite number of `kind` (int or float) at least low (above it when strict),
    and at most high when given."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not {'an integer' if kind is int else 'a number'}"
            ) from None
        above = value > low if strict else value >= low
        if not (math.isfinite(value) and above and (high is None or value <= high)):
            allowed = f"a finite number above {low}" if strict else f"at least {low}"
            if high is not None:
                allowed += f" and at most {high}"
            raise argparse.ArgumentTypeError(f"{text} is out of range: it must be {allowed}")
        return value

    return parse


positive = at_least(0, float, strict=True)  # a learning rate


def fraction(text: str) -> float:
    """An argparse type: a number strictly between 0 and 1."""
    value = at_least(0, float, strict=True)(text)
    if not value < 1:
        raise argparse.ArgumentTypeError(f"{text} is out of range: it must be above 0 and below 1")
    return value


def check_writable_folder(folder) -> Path:
    """Creates `folder` if needed and proves a file can be written there (a probe, removed at once),
    so that an unwritable output is said before any work rather than at the first checkpoint."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise GPTError(f"{folder}: not a folder (the output goes into a folder of that name)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise GPTError(f"{folder}: cannot write there ({e.strerror})") from None
    return folder


def check_output_file(path) -> Path:
    """A file the run will write (atomically, beside itself): its folder writable and the path not a folder."""
    path = Path(path)
    check_writable_folder(path.parent)
    if path.is_dir():
        raise GPTError(f"{path}: is a folder; the checkpoint is a file")
    return path


class CheckpointLock:
    """An exclusive lock (flock) on CHECKPOINT.lock for the length of a training run, the same lock
    train_gpt takes, so that two runs never write one checkpoint; the file is removed at the end. Once it is held, the temporary files a killed
    run left beside the checkpoint (NAME.<16 hex>.tmp) are removed: no live writer can own them."""

    def __init__(self, path):
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.fd = None
        self.removed: list[Path] = []

    def __enter__(self):
        while not self._lock():  # the file was removed by the run that held it: lock the new one
            pass
        stale = re.compile(re.escape(self.path.name) + TMP_PATTERN + "$")
        for p in self.path.parent.iterdir():
            if stale.match(p.name):
                p.unlink()
                self.removed.append(p)
        return self

    def _lock(self) -> bool:
        try:
            self.fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as e:
            raise GPTError(f"{self.lock_path}: cannot create the lock file ({e.strerror})") from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(self.fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise GPTError(
                    f"{self.path} is being written by another training run ({self.lock_path} is locked)"
                ) from None
            raise GPTError(f"{self.lock_path}: cannot lock it ({e.strerror})") from None
        try:  # still the file at that path? (the holder removes it as it finishes)
            held = os.stat(self.lock_path).st_ino == os.fstat(self.fd).st_ino
        except FileNotFoundError:
            held = False
        if not held:
            os.close(self.fd)
        return held

    def __exit__(self, *exc):
        os.unlink(self.lock_path)  # removed while still held, so no run ever locks a file that is gone
        os.close(self.fd)
        return False


class Interrupt:
    """Ctrl-C (SIGINT) and SIGTERM during training, noted rather than raised, so that a step is never
    cut in half: the loop asks `requested` after each step, saves, and stops. A second Ctrl-C raises
    KeyboardInterrupt as usual (the checkpoint writer is atomic, so the file on disk stays whole)."""

    def __init__(self):
        self.signal = None
        self.previous = {}

    def __enter__(self):
        # Python runs signal handlers in the main thread only: elsewhere (a caller's worker thread)
        # Ctrl-C keeps its usual effect
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._note)
        return self

    def _note(self, sig, frame):
        if self.signal is not None:
            raise KeyboardInterrupt
        self.signal = sig

    @property
    def requested(self) -> bool:
        return self.signal is not None

    @property
    def exit_status(self) -> int:
        return 128 + int(self.signal)  # the shell's convention: 130 for SIGINT, 143 for SIGTERM

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        return False
