"""Keeping Ray's C++ notices that the user can do nothing about off stderr.

Ray's C++ core writes its log lines straight to file descriptor 2, below Python's `logging`, so
the only handle on them is the descriptor itself. Two cases:

- `silenced()`: a short call whose stderr is never wanted (probing a cluster: the error it
  raises says all the warning line would).
- `dropping(...)`: a long run (the Ray Data job) where every other line must still reach the
  user in order: fd 2 becomes a pipe, and a thread copies it to the real stderr line by line,
  leaving out the lines that contain one of the given markers.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator


def _stderr_fd() -> int | None:
    try:
        return sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # replaced by a non-file (pytest capture, IDEs)
        return None


@contextlib.contextmanager
def silenced() -> Iterator[None]:
    """Fd 2 goes to /dev/null for the duration (no child process may be started inside)."""
    fd = _stderr_fd()
    if fd is None:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, fd)
    os.close(null)
    try:
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


@contextlib.contextmanager
def dropping(*markers: bytes) -> Iterator[None]:
    """Every stderr line written inside, from Python or C++, except those holding a marker.

    Start child processes that outlive the block (a local Ray cluster) before entering it: they
    would inherit the pipe. A line still in the pipe when the block ends is copied before it
    returns (bounded wait; the copier owns its duplicate of the real stderr).
    """
    fd = _stderr_fd()
    if fd is None:
        yield
        return
    sys.stderr.flush()
    real = os.dup(fd)
    read_end, write_end = os.pipe()
    os.dup2(write_end, fd)
    os.close(write_end)
    copier = threading.Thread(target=_copy, args=(read_end, real, markers), name="stderr-filter", daemon=True)
    copier.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(real, fd)  # drops the pipe's last writer: the copier sees end of file
        copier.join(timeout=5)


def _copy(read_end: int, real: int, markers: tuple[bytes, ...]) -> None:
    pending = b""
    try:
        while chunk := os.read(read_end, 65536):
            *lines, pending = (pending + chunk).split(b"\n")
            kept = b"".join(line + b"\n" for line in lines if not any(m in line for m in markers))
            _write_all(real, kept)
        if not any(m in pending for m in markers):
            _write_all(real, pending)
    finally:
        os.close(read_end)
        os.close(real)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]
