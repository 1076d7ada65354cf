"""Give back the resident pages of a memory-mapped checkpoint tensor once it has been consumed.

Checkpoints are memory-mapped (read.py): a tensor read through the map stays in this process's
resident set (RssFile) as long as the file is mapped, and the map lives as long as any tensor of
the file does. Quantizing while loading reads every bf16 weight once and keeps only the
quantized copy, so without this the bf16 model would still end up resident, page by page.
`madvise(MADV_DONTNEED)` on a private file mapping drops the pages from this process (the page
cache keeps them; a later read maps them again from the file), so it is only ever applied to
whole pages inside the tensor, of a mapping backed by a file, that nobody wrote to.
"""

from __future__ import annotations

import ctypes
import mmap
import sys

import torch

MADV_DONTNEED = 4
_libc = None


def release(t: torch.Tensor) -> bool:
    """Drop T's whole pages from the resident set when T lies in a file mapping (Linux, CPU);
    True if it did. T must not have been written to since it was mapped (checkpoint tensors
    never are)."""
    if sys.platform != "linux" or t.device.type != "cpu" or t.numel() == 0:
        return False
    start = t.data_ptr()
    end = start + t.numel() * t.element_size()
    page = mmap.PAGESIZE
    lo, hi = -(-start // page) * page, end // page * page
    if hi <= lo or not _in_file_mapping(lo, hi):
        return False
    return _madvise(lo, hi - lo) == 0


def _in_file_mapping(lo: int, hi: int) -> bool:
    """Whether [LO, HI) lies inside one mapping of a regular file (/proc/self/maps: the path
    starts with '/' and the inode is not 0; anonymous memory, the heap and stacks are not)."""
    with open("/proc/self/maps") as f:
        for line in f:
            fields = line.split(maxsplit=5)
            a, b = (int(x, 16) for x in fields[0].split("-"))
            if a <= lo and hi <= b:
                return len(fields) == 6 and fields[4] != "0" and fields[5].startswith("/")
    return False


def _madvise(addr: int, length: int) -> int:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return _libc.madvise(addr, length, MADV_DONTNEED)
