"""Compile this package's C++ kernels on first use and load them; None where they cannot run.

The kernels are C++ with intrinsics (no PyTorch headers), built with the machine's compiler
into the user cache, keyed by a hash of the source and flags, so one build serves every later
process.
They link OpenMP by its soname, `libgomp.so.1`, which resolves to the copy PyTorch has already
loaded: their parallel loops share PyTorch's thread pool (and `torch.set_num_threads`) instead
of starting a second pool that would fight it for the cores. Nothing is required: without a
compiler or the instruction set the callers keep PyTorch's own kernels.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from importlib import resources
from pathlib import Path

# AVX512-BF16 for `vdpbf16ps`, VNNI for the int8 and int4 kernels' `vpdpbusd`; F, BW and VL for the loads,
# converts and stores around them (every AVX512-BF16 CPU has VNNI).
ROWS_FLAGS = [
    "-O3",
    "-std=c++17",
    "-mavx512f",
    "-mavx512bw",
    "-mavx512vl",
    "-mavx512bf16",
    "-mavx512vnni",
    "-fopenmp",
    "-shared",
    "-fPIC",
]
ROWS_CPU_FLAGS = ("avx512f", "avx512bw", "avx512vl", "avx512_bf16", "avx512_vnni")
ROWS_HEADERS = ("act8.h", "int4.h", "int8.h")  # included by rows.cpp
DISABLE_ENV = "JANUS_CPU_KERNELS"  # "0": never build or use them


class KernelUnavailable(Exception):
    """Why the kernels cannot run here."""


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "janus-cli" / "kernels"


def compiler() -> str | None:
    """$CXX if set, else g++ or clang++ from PATH."""
    names = [os.environ["CXX"]] if os.environ.get("CXX") else ["g++", "clang++"]
    return next((shutil.which(n) for n in names if shutil.which(n)), None)


def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    return set(line.partition(":")[2].split())


def build(source: str, flags: list[str], headers: tuple[str, ...] = ()) -> Path:
    """The shared library for SOURCE (a file of this package, including HEADERS of it) built
    with FLAGS, from the cache or compiled into it; written under a temporary name and
    renamed, so concurrent builds (Ray workers) never load a half-written file. Raises
    KernelUnavailable."""
    files = resources.files(__package__)
    text = files.joinpath(source).read_bytes()
    included = {h: files.joinpath(h).read_bytes() for h in headers}
    key = hashlib.sha256(text + b"".join(included.values()) + " ".join(flags).encode()).hexdigest()[:16]
    target = cache_dir() / f"{Path(source).stem}-{key}.so"
    if target.exists():
        return target
    cxx = compiler()
    if cxx is None:
        raise KernelUnavailable("no C++ compiler (g++, clang++ or $CXX) on PATH")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        src, out = Path(tmp) / source, Path(tmp) / target.name
        src.write_bytes(text)
        for name, body in included.items():
            (Path(tmp) / name).write_bytes(body)
        r = subprocess.run([cxx, *flags, str(src), "-o", str(out)], capture_output=True, text=True)
        if r.returncode != 0:
            first = (r.stderr.strip().splitlines() or ["no output"])[0]
            raise KernelUnavailable(f"{Path(cxx).name} could not build {source}: {first}")
        os.replace(out, target)
    return target


@functools.cache
def load_rows() -> tuple[ctypes.CDLL | None, str]:
    """The kernels of rows.cpp and a word on them: "own AVX512-BF16 kernels", or why they are
    unavailable (then the library is None)."""
    if os.environ.get(DISABLE_ENV) == "0":
        return None, f"{DISABLE_ENV}=0"
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        return None, f"built for Linux on x86-64, not {platform.system()} on {platform.machine()}"
    missing = [f for f in ROWS_CPU_FLAGS if f not in cpu_flags()]
    if missing:
        return None, f"this CPU lacks {', '.join(missing)}"
    try:
        lib = ctypes.CDLL(str(build("rows.cpp", ROWS_FLAGS, ROWS_HEADERS)))
    except KernelUnavailable as e:
        return None, str(e)
    except OSError as e:  # an unwritable cache, a library the loader refuses
        return None, f"cannot build or load rows.cpp: {e}"
    lib.janus_rows_bf16.argtypes = [ctypes.c_void_p] * 5 + [ctypes.c_int64] * 3
    for fn in (lib.janus_rows_int8, lib.janus_rows_int4):  # + the activations' group
        fn.argtypes = [ctypes.c_void_p] * 5 + [ctypes.c_int64] * 4
    for fn in (lib.janus_rows_bf16, lib.janus_rows_int8, lib.janus_rows_int4):
        fn.restype = None
    lib.janus_rmsnorm.argtypes = [ctypes.c_void_p] * 3 + [ctypes.c_int64] * 2 + [ctypes.c_float]
    lib.janus_block_step.argtypes = (
        [ctypes.c_void_p] * 4
        + [ctypes.c_float]
        + [ctypes.c_void_p] * 8
        + [ctypes.c_int64]
        + [ctypes.c_void_p] * 2
        + [ctypes.c_int64]
        + [ctypes.c_void_p] * 2
        + [ctypes.c_int64] * 3
        + [ctypes.c_void_p]
        + [ctypes.c_int64] * 6
        + [ctypes.c_float]
        + [ctypes.c_int64]
    )
    for fn in (lib.janus_rmsnorm, lib.janus_block_step):
        fn.restype = None
    return lib, "own AVX512-BF16 kernels"
