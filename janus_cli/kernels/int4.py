"""int4 linears on our AVX512-VNNI kernel (kernels/int4.h, built into rows.cpp's library).

W4A8: each input row is rounded to int8 once per call, per group of K with its own scale
(|x - x8| <= scale / 2), and multiplied by the 4-bit codes with `vpdpbusd` (64 byte products
per instruction, summed in int32); each group's sum then takes its weight scale, offset and
activation scale in fp32. A decode step reads 0.56 bytes per weight instead of 2 (bf16); at 8
rows (4 images with CFG) the integer arithmetic, not memory, sets the pace. Beyond
KERNEL_ROWS rows (a prefill) the caller dequantizes and runs PyTorch's matmul.

Legend: M rows, K in features, N out features.
"""

from __future__ import annotations

import torch
from torch import Tensor

from janus_cli.kernels import build

KERNEL_ROWS = 16  # more rows: dequantize once, then one GEMM (the kernel re-unpacks per 4 rows)


def int4_kernel_note() -> str:
    """Which kernel multiplies int4 weights of a few bf16 rows on this CPU (why not ours: the
    rows kernels' note)."""
    return (
        "own AVX512-VNNI int4 kernel" if build.load_rows()[0] is not None else "int4 on PyTorch's int4 kernel"
    )


def int4_rows(
    x: Tensor, qweight: Tensor, scales: Tensor, bias: Tensor | None, n: int, k: int
) -> Tensor | None:
    """x (..., K) @ w.T (+ bias) -> (..., N) bf16 by the kernel, or None where it does not run
    (not a CPU bf16 input, too many rows, no kernel library)."""
    rows = x.numel() // k
    if x.device.type != "cpu" or x.dtype != torch.bfloat16 or rows > KERNEL_ROWS or rows == 0:
        return None
    lib = build.load_rows()[0]
    if lib is None:
        return None
    flat = x.reshape(rows, k).contiguous()  # (M, K)
    y = torch.empty(rows, n, dtype=torch.bfloat16)  # (M, N)
    group = qweight.shape[1] * 8 // scales.shape[1]
    b = None if bias is None else bias.float().contiguous()
    lib.janus_rows_int4(
        flat.data_ptr(),
        qweight.data_ptr(),
        scales.data_ptr(),
        None if b is None else b.data_ptr(),
        y.data_ptr(),
        rows,
        n,
        k,
        group,
    )
    return y.view(*x.shape[:-1], n)
