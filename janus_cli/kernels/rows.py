"""bf16 linears on our AVX512-BF16 kernels (rows.cpp), for the decode path (the single-query
attention of a token step runs inside kernels/layers.py's one call per block).

A decode step multiplies a handful of rows (2 per image with CFG) by every weight once, so it
is bound by how fast the weights are read. PyTorch's CPU kernels read bf16 weights at a third
to a half of this machine's bandwidth at those shapes; rows.cpp reads them at nearly all of it,
from a layout made once after loading ("pair blocks": 64 outputs at a time, pairs along K, so
`vdpbf16ps` needs no cross-lane sums). Many rows (a prefill, a JanusFlow step) run as fast as
oneDNN's GEMM, so one layout serves both. int8 and int4 weights have their own layouts and
integer kernels (kernels/int8.py, kernels/int4.py).

Legend: M rows, K in features, N out features.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from janus_cli.kernels.build import load_rows

WIDTH = 64  # outputs per pair block
TAIL = 16  # outputs per block covering N % WIDTH


def rows_kernels_available(device: torch.device, dtype: torch.dtype) -> bool:
    return device.type == "cpu" and dtype == torch.bfloat16 and load_rows()[0] is not None


def fits(n: int, k: int) -> bool:
    """Shapes the kernel takes: whole tail blocks of outputs, whole pairs of inputs."""
    return n % TAIL == 0 and k % 2 == 0


def pack_pairs(w: Tensor) -> Tensor:
    """(N, K) -> flat pair blocks: for each block of outputs [n0, n0 + width), its [K/2][width][2]
    elements from offset n0 * K. Written in place into one new tensor (no intermediate copies:
    lm_head alone is 0.4 GB)."""
    n, k = w.shape
    wide = n // WIDTH * WIDTH
    flat = torch.empty(n * k, dtype=w.dtype, device=w.device)
    for lo, hi, width in ((0, wide, WIDTH), (wide, n, TAIL)):
        if hi > lo:
            blocks = w[lo:hi].view(-1, width, k // 2, 2).transpose(1, 2)  # (blocks, K/2, width, 2)
            flat[lo * k : hi * k].view(blocks.shape).copy_(blocks)
    return flat


def unpack_pairs(flat: Tensor, n: int, k: int) -> Tensor:
    """pack_pairs' inverse: (N, K)."""
    wide = n // WIDTH * WIDTH
    head = flat[: wide * k].view(-1, k // 2, WIDTH, 2).transpose(1, 2).reshape(wide, k)  # (wide, K)
    if wide == n:
        return head
    tail = flat[wide * k :].view(-1, k // 2, TAIL, 2).transpose(1, 2).reshape(n - wide, k)
    return torch.cat([head, tail])


class RowsLinear(nn.Module):
    """y = x @ weight.T + bias over bf16 activations, the bf16 weight in pair blocks."""

    def __init__(self, pairs: Tensor, n: int, k: int, bias: Tensor | None):
        super().__init__()
        self.out_features, self.in_features = n, k
        self.register_buffer("pairs", pairs)  # (N * K,) bf16
        self.register_buffer("bias", bias)  # (N,) fp32 or None

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> RowsLinear:
        return cls.from_linears(linear)

    @classmethod
    def from_linears(cls, *linears: nn.Linear) -> RowsLinear:
        """One RowsLinear for bf16 LINEARS of one input: their outputs side by side, in one call
        instead of one each."""
        w = torch.cat([lin.weight.detach() for lin in linears])  # (N, K)
        n, k = w.shape
        biases = [lin.bias for lin in linears]
        bias = None if biases[0] is None else torch.cat(biases).detach().float()
        return cls(pack_pairs(w), n, k, bias)

    def forward(self, x: Tensor) -> Tensor:
        if x.dtype != torch.bfloat16:
            raise TypeError(f"RowsLinear takes bf16 inputs, not {x.dtype}")
        rows = x.numel() // self.in_features
        flat = x.reshape(rows, self.in_features).contiguous()  # (M, K)
        y = torch.empty(rows, self.out_features, dtype=x.dtype)  # (M, N)
        load_rows()[0].janus_rows_bf16(
            flat.data_ptr(),
            self.pairs.data_ptr(),
            None,  # no scale
            ptr(self.bias),
            y.data_ptr(),
            rows,
            self.out_features,
            self.in_features,
        )
        return y.view(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        bias = self.bias is not None
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={bias}"


def ptr(t: Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()
