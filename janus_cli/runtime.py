"""Device and dtype choice, seeded generators."""

from __future__ import annotations

import os
import platform
import shutil
from pathlib import Path

import torch

from janus_cli.errors import InputError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def choose_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA device is available")
    if name == "mps" and not torch.backends.mps.is_available():
        raise InputError("--device mps: Apple MPS is not available")
    if name not in ("cpu", "cuda", "mps"):
        raise InputError(f"--device {name}: choose auto, cpu, cuda or mps")
    return torch.device(name)


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 / AMX on x86, the BF16 extension on Arm: there bf16 beats fp32 on CPU."""
    if platform.system() == "Linux":
        try:
            flags = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
        return any(f in flags for f in ("avx512_bf16", "amx_bf16")) or " bf16" in flags
    return False


def choose_dtype(name: str, device: torch.device) -> torch.dtype:
    """auto: bf16 on CUDA and on CPUs with native bf16, fp32 otherwise. fp16 is refused:
    it overflows the VQ upsampler and the SDXL-VAE (NaNs) in these models."""
    if name in ("float16", "fp16", "half"):
        raise InputError(
            "--dtype float16 breaks these models (NaNs in the VQ decoder and SDXL-VAE); "
            "use bfloat16 or float32"
        )
    if name == "auto":
        if device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16()):
            return torch.bfloat16
        return torch.float32
    if name not in DTYPES:
        raise InputError(f"--dtype {name}: choose auto, bfloat16 or float32")
    return DTYPES[name]


QUANTIZE_MODES = ("none", "int8", "int4")  # the schemes of models/quantize.py, and none


def choose_quantize(name: str) -> str:
    """none; int8: weight-only int8 for the LLM blocks and the image head (half the bytes per
    step); or int4: group-wise 4-bit LLM blocks and an int8 image head (about 30 %)."""
    if name not in QUANTIZE_MODES:
        raise InputError(f"--quantize {name}: choose none, int8 or int4")
    return name


def check_compile(device: torch.device) -> None:
    """--compile on the CPU builds C++ kernels: refuse it up front where no compiler is on PATH
    (inductor would fail mid-run with a long traceback)."""
    compilers = [os.environ["CXX"]] if os.environ.get("CXX") else ["g++", "clang++"]
    if device.type == "cpu" and not any(shutil.which(c) for c in compilers):
        raise InputError(
            f"--compile on the CPU needs a C++ compiler ({' or '.join(compilers)}) on PATH; drop --compile"
        )


def make_generator(seed: int) -> torch.Generator:
    """A CPU generator: draws made on the CPU give the same numbers on every device."""
    return torch.Generator().manual_seed(seed)
