"""int8 linears on our AVX512-VNNI kernel (kernels/int8.h, built into rows.cpp's library).

W8A8: each input row is rounded to int8 once per call, per group of GROUP inputs with its own
scale (|x - x8| <= scale / 2, as for int4: kernels/act8.h), and multiplied by the weight's int8
codes with `vpdpbusd` (64 byte products an instruction, summed in int32); each group's sum then
takes its activation scale, and the output its weight scale, in fp32. The kernel this replaced
widened the codes to bf16 for `vdpbf16ps` (32 products an instruction), so at 8 rows (4 images
with CFG) it was bound by arithmetic, not by the bytes it read (W8A8 runs those linears
1.23-1.41x faster; the numbers are in the README's "int8 weights"). The activation rounding adds
about 0.6 % relative output error to int8's own 0.8 % (tests/test_int8_kernel.py bounds it).
Beyond KERNEL_ROWS rows (a long prefill) the weight is widened for the call and PyTorch's
matmul runs, without rounding the activations.

The codes are models/quantize.Int8Linear's (what a quantized checkpoint stores); this layout is
made from them after loading, padded to whole blocks of 32 outputs and whole groups along K
(with code 0), stored as q + 128 (the unsigned operand of `vpdpbusd`):
  quads (N' / 32, K' / 4, 128) uint8: for each block of 32 outputs, for each 4 consecutive k,
      128 bytes; byte t holds q[32 b + t // 4, 4 o + t % 4] + 128.

Legend: M rows, K in features, N out features, N' and K' padded.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from janus_cli.kernels.build import load_rows
from janus_cli.models.int4 import padded

GROUP = 64  # inputs per activation scale: int4's weight group, so one rounding rule serves both
BLOCK = 32  # outputs per block
# More rows (a long prefill): widen the weight and run one GEMM, activations unrounded. The
# kernel re-reads the weight per 8 rows and still wins well past a decode batch (one thread,
# image head 16384x2048: 7.6 ms at 32 rows, 27 at 128, where widening alone takes ~100).
KERNEL_ROWS = 256


def pack_quads(q: Tensor) -> Tensor:
    """int8 codes (N, K) -> quads (module docstring)."""
    n, k = q.shape
    np_, kp = padded(n, BLOCK), padded(k, GROUP)
    u = (F.pad(q, (0, kp - k, 0, np_ - n)).to(torch.int16) + 128).to(torch.uint8)  # (N', K')
    u = u.view(np_ // BLOCK, BLOCK, kp // 4, 4).transpose(1, 2)  # (b, o, 32, 4)
    return u.reshape(np_ // BLOCK, kp // 4, 4 * BLOCK).contiguous()


def unpack_quads(quads: Tensor, n: int, k: int, dtype: torch.dtype = torch.int8) -> Tensor:
    """pack_quads' inverse: the codes (N, K) in DTYPE (exact in int8, bf16 and fp32)."""
    blocks, steps, _ = quads.shape
    u = quads.view(blocks, steps, BLOCK, 4).transpose(1, 2).reshape(blocks * BLOCK, steps * 4)  # (N', K')
    if dtype == torch.int8:
        return (u[:n, :k].to(torch.int16) - 128).to(torch.int8)
    return u[:n, :k].to(dtype).sub_(128)  # one pass less than through int8: this runs per prefill call


class Int8RowsLinear(nn.Module):
    """y = x @ (q * scale[:, None]).T + bias, int8 codes Q in quads: decode-sized bf16 inputs
    take one call of the W8A8 kernel; more rows, or other dtypes, multiply by the weight widened
    (exact, as models/quantize.Int8Linear does)."""

    def __init__(self, quads: Tensor, n: int, k: int, scale: Tensor, bias: Tensor | None):
        super().__init__()
        self.out_features, self.in_features = n, k
        self.register_buffer("quads", quads)  # (N' / 32, K' / 4, 128) uint8
        self.register_buffer("scale", scale)  # (N,) fp32
        self.register_buffer("bias", bias)  # (N,) fp32 or None

    @classmethod
    def from_linears(cls, *linears: nn.Module) -> Int8RowsLinear:
        """One layer for Int8Linears LINEARS of one input, their outputs side by side (the same
        codes and scales)."""
        q = torch.cat([lin.weight.detach() for lin in linears])  # (N, K) int8
        scale = torch.cat([lin.scale.detach() for lin in linears]).float()
        biases = [lin.bias for lin in linears]
        bias = None if biases[0] is None else torch.cat(biases).detach().float()
        return cls(pack_quads(q), q.shape[0], q.shape[1], scale, bias)

    def forward(self, x: Tensor) -> Tensor:
        rows = x.numel() // self.in_features
        if x.dtype != torch.bfloat16 or x.device.type != "cpu" or rows > KERNEL_ROWS or rows == 0:
            return self.dense(x)
        flat = x.reshape(rows, self.in_features).contiguous()  # (M, K)
        y = torch.empty(rows, self.out_features, dtype=x.dtype)  # (M, N)
        load_rows()[0].janus_rows_int8(
            flat.data_ptr(),
            self.quads.data_ptr(),
            self.scale.data_ptr(),
            None if self.bias is None else self.bias.data_ptr(),
            y.data_ptr(),
            rows,
            self.out_features,
            self.in_features,
            GROUP,
        )
        return y.view(*x.shape[:-1], self.out_features)

    def dense(self, x: Tensor) -> Tensor:
        """PyTorch's matmul over the codes widened (exact); the scale multiplies the output, not
        the weight, to save a pass over it."""
        w = unpack_quads(self.quads, self.out_features, self.in_features, x.dtype)  # (N, K)
        y = F.linear(x, w) * self.scale.to(x.dtype)
        return y if self.bias is None else y + self.bias.to(x.dtype)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, weight=int8 (W8A8), "
            f"bias={self.bias is not None}"
        )
