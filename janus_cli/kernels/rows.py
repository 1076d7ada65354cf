"""bf16 linears on our AVX512-BF16 kernels (rows.cpp), for the decode path (the single-query
attention of a token step runs inside kernels/layers.py's one call per block).

A decode step multiplies a handful of rows (2 per image with CFG) by every weight once, so it
is bound by how fast the weights are read. PyTorch's CPU kernels read bf16 weights at a third
to a half of this machine's bandwidth at those shapes; rows.cpp reads them at nearly all of it,
from a layout made once after loading ("pair blocks": 64 or 48 outputs at a time, pairs along K,
so `vdpbf16ps` needs no cross-lane sums). Many rows (a prefill, a JanusFlow step) run as fast
as oneDNN's GEMM, so one layout serves both. int8 weights are widened to bf16 in registers:
for a few rows that halves the bytes read; for many rows the widening is repeated per group of
rows, so those go to PyTorch's matmul over the weight unpacked and widened for that call.

Legend: M rows, K in features, N out features.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from janus_cli.kernels.build import load_rows

TAIL = 16  # outputs per block covering N % block_width
INT8_KERNEL_ROWS = 256  # beyond, int8 weights are widened once per call (see the docstring)


def rows_kernels_available(device: torch.device, dtype: torch.dtype) -> bool:
    return device.type == "cpu" and dtype == torch.bfloat16 and load_rows()[0] is not None


def fits(n: int, k: int) -> bool:
    """Shapes the kernel takes: whole tail blocks of outputs, whole pairs of inputs."""
    return n % TAIL == 0 and k % 2 == 0


def block_width(dtype: torch.dtype) -> int:
    """Outputs per pair block, as rows.cpp tiles them: 48 for int8 weights, 64 otherwise."""
    return 48 if dtype == torch.int8 else 64


def pack_pairs(w: Tensor) -> Tensor:
    """(N, K) -> flat pair blocks: for each block of outputs [n0, n0 + width), its [K/2][width][2]
    elements from offset n0 * K. Written in place into one new tensor (no intermediate copies:
    lm_head alone is 0.4 GB)."""
    n, k = w.shape
    block = block_width(w.dtype)
    wide = n // block * block
    flat = torch.empty(n * k, dtype=w.dtype, device=w.device)
    for lo, hi, width in ((0, wide, block), (wide, n, TAIL)):
        if hi > lo:
            blocks = w[lo:hi].view(-1, width, k // 2, 2).transpose(1, 2)  # (blocks, K/2, width, 2)
            flat[lo * k : hi * k].view(blocks.shape).copy_(blocks)
    return flat


def unpack_pairs(flat: Tensor, n: int, k: int) -> Tensor:
    """pack_pairs' inverse: (N, K)."""
    block = block_width(flat.dtype)
    wide = n // block * block
    head = flat[: wide * k].view(-1, k // 2, block, 2).transpose(1, 2).reshape(wide, k)  # (wide, K)
    if wide == n:
        return head
    tail = flat[wide * k :].view(-1, k // 2, TAIL, 2).transpose(1, 2).reshape(n - wide, k)
    return torch.cat([head, tail])


class RowsLinear(nn.Module):
    """y = x @ (weight * scale[:, None]).T + bias over bf16 activations, the weight (bf16, or int8
    with per-output scales) in pair blocks."""

    def __init__(self, pairs: Tensor, n: int, k: int, scale: Tensor | None, bias: Tensor | None):
        super().__init__()
        self.out_features, self.in_features = n, k
        self.register_buffer("pairs", pairs)  # (N * K,) bf16 or int8
        self.register_buffer("scale", scale)  # (N,) fp32 or None
        self.register_buffer("bias", bias)  # (N,) fp32 or None

    @classmethod
    def from_linear(cls, linear: nn.Module) -> RowsLinear:
        """From an nn.Linear (bf16) or a models.quantize.Int8Linear."""
        return cls.from_linears(linear)

    @classmethod
    def from_linears(cls, *linears: nn.Module) -> RowsLinear:
        """One RowsLinear for LINEARS of one input (all bf16 or all int8): their outputs side by
        side, in one call instead of one each."""
        w = (
            torch.cat([lin.weight.detach() for lin in linears])
            if len(linears) > 1
            else linears[0].weight.detach()
        )  # (N, K)
        n, k = w.shape
        scales = [getattr(lin, "scale", None) for lin in linears]
        scale = None if scales[0] is None else torch.cat(scales).float()
        biases = [lin.bias for lin in linears]
        bias = None if biases[0] is None else torch.cat(biases).detach().float()
        return cls(pack_pairs(w), n, k, scale, bias)

    def forward(self, x: Tensor) -> Tensor:
        rows = x.numel() // self.in_features
        int8 = self.pairs.dtype == torch.int8
        if int8 and rows > INT8_KERNEL_ROWS:
            return self.dense(x)
        if x.dtype != torch.bfloat16:
            raise TypeError(f"RowsLinear takes bf16 inputs, not {x.dtype}")
        flat = x.reshape(rows, self.in_features).contiguous()  # (M, K)
        y = torch.empty(rows, self.out_features, dtype=x.dtype)  # (M, N)
        lib = load_rows()[0]
        run = lib.janus_rows_int8 if int8 else lib.janus_rows_bf16
        run(
            flat.data_ptr(),
            self.pairs.data_ptr(),
            ptr(self.scale),
            ptr(self.bias),
            y.data_ptr(),
            rows,
            self.out_features,
            self.in_features,
        )
        return y.view(*x.shape[:-1], self.out_features)

    def dense(self, x: Tensor) -> Tensor:
        """Many rows over int8 weights: PyTorch's matmul over the weight unpacked and widened
        (exact); the scale multiplies the output, not the weight, to save a pass over it.
        Int8Linear's own fallback, to the rounding."""
        w = unpack_pairs(self.pairs, self.out_features, self.in_features).to(x.dtype)  # (N, K)
        y = F.linear(x, w) * self.scale.to(x.dtype)
        return y if self.bias is None else y + self.bias.to(x.dtype)

    def extra_repr(self) -> str:
        kind = "int8" if self.pairs.dtype == torch.int8 else "bf16"
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"weight={kind}, bias={self.bias is not None}"
        )


def ptr(t: Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()
