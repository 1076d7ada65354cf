"""What the benchmark machine is and has left: its read bandwidth, idle cores, free memory and a
description for the results file."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import torch
from torch import Tensor

GiB = 2**30


def bandwidth_gbs(dtype: torch.dtype) -> float:
    return read_gbs(torch.ones(GiB // torch.tensor([], dtype=dtype).element_size(), dtype=dtype), 5)


def read_gbs(x: Tensor, reps: int = 3) -> float:
    """How fast `x.sum()` streams X (far beyond the caches): the best of REPS."""
    x.sum()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        x.sum()
        times.append(time.perf_counter() - t)
    return x.numel() * x.element_size() / min(times) / 1e9


def idle_cores() -> int:
    """Cores the rest of the machine leaves free (at least 1). On a shared machine more threads
    than free cores make every step wait at OpenMP barriers for a descheduled thread: here 2
    threads beside one busy process ran a decode step 3-4x slower than 1 thread."""
    return max(1, min(os.cpu_count() or 1, round(os.cpu_count() - os.getloadavg()[0])))


def available_bytes() -> int:
    """MemAvailable: what this run may still allocate without pushing others into swap."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def machine() -> dict:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    flags = Path("/proc/cpuinfo").read_text()
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "avx512_bf16": "avx512_bf16" in flags,
        "memory_gb": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9,
        "torch": torch.__version__,
    }
