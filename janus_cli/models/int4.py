"""Weight-only int4: 4-bit codes in groups along K, a bf16 scale and offset per group.

    w[n, k] = scale[n, k // group] * q[n, k] + offset[n, k // group],   q in 0..15

Asymmetric round-to-nearest: a group's offset is its minimum and its scale (max - min) / 15, so
the 16 codes span the group exactly (a symmetric group would waste part of its range on the side
it does not reach). A kernel pays nothing for the offset: sum_k x_k w_k = scale * sum_k x_k q_k
+ offset * sum_k x_k, and sum_k x_k is one number per row and group. Bytes per weight: 0.5 +
4 / group (0.5625 at group 64, 28 % of bf16).

Stored in the layout the CPU kernel reads (kernels/int4.h), padded to whole blocks of 32 outputs
and whole groups along K (padding is zero weight), so the buffers are the checkpoint:
  qweight (N' / 32, K' / 8, 128) uint8: for each block of 32 outputs, for each 8 consecutive k,
      128 bytes; byte t holds output n = 32 b + t // 4 (units of 16 outputs: t // 64) and, in its
      low nibble, q[n, 8 o + t % 4], in its high nibble q[n, 8 o + 4 + t % 4];
  scales (N' / 32, G, 2, 32) bf16: per block and group, the 32 outputs' scales, then their offsets.
One 64-byte load then unpacks, with a shift and two ands, into the two 4-k steps that one
`vpdpbusd` each multiplies by 16 outputs at once.

Group 64, asymmetric, by measurement (benchmarks/int4_error.py: relative output error
||XW - XW'|| / ||XW||, %, full-size random Janus-Pro-1B weights, W4A16 / W4A8 with the kernel's
int8 activations; "heavy": 8 input channels 20-100x, their weight columns 10x):

    shape         inputs  g32 sym      g32 asym     g64 sym      g64 asym     g128 sym     g128 asym
    qkv 6144x2048 gauss   9.69/9.71    7.82/7.84    10.77/10.79  8.95/8.97    11.74/11.76  9.95/9.97
    qkv 6144x2048 heavy   2.34/2.35    1.02/1.03    2.38/2.39    1.08/1.11    2.43/2.45    1.16/1.20
    down 2048x5632 gauss  9.73/9.74    7.84/7.86    10.77/10.78  9.00/9.02    11.73/11.74  10.00/10.02
    down 2048x5632 heavy  0.70/0.71    0.53/0.55    0.83/0.85    0.63/0.66    1.00/1.04    0.74/0.78

Asymmetric beats symmetric at every group size (17 % less error on Gaussian weights, half on
heavy columns) and costs the kernel nothing (the offset term above). The int8 activations add
0.02-0.04 points. Group 32 has 13 % less error than 64 but 11 % more bytes (0.625 against
0.5625 a weight) and twice the per-group work: on one core at 8 rows (hot cache) it ran 1.3-1.4x
slower than group 64 (101 against 124 GMAC/s). Group 128 saves 5.5 % of the bytes and ~8 % of
the work at 8 rows for 11 % more error. 64 is the middle; 32 and 128 stay offered (`from_linear`).

Legend: M rows, K in features, N out features, G = K' / group groups, N' and K' padded.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

GROUPS = (32, 64, 128)  # offered group sizes (the kernel needs a multiple of 8 dividing K')
GROUP = 64  # the default: see the module docstring for the measurements behind it
BLOCK = 32  # outputs per block
CHUNK = 4096  # output rows quantized at a time, to bound the fp32 copy of a large weight
TORCH_ROWS = 16  # PyTorch's int4 kernel dequantizes per 4 rows: more rows dequantize once


def torch_int4_fits(x: Tensor, n: int, k: int) -> bool:
    """Inputs PyTorch's CPU int4 kernel takes and runs faster than dequantizing: a few bf16
    rows, whole blocks of 16 outputs."""
    return (
        x.device.type == "cpu"
        and x.dtype == torch.bfloat16
        and 0 < x.numel() // k <= TORCH_ROWS
        and n % 16 == 0
        and hasattr(torch, "_weight_int4pack_mm_for_cpu")
    )


def padded(size: int, multiple: int) -> int:
    return -(-size // multiple) * multiple


def quantize_codes(w: Tensor, group: int) -> tuple[Tensor, Tensor, Tensor]:
    """Round W (N, K) to codes: q (N, K') uint8, scale and offset (N, G) bf16, K' = K padded to
    the group with zero weights. The codes are rounded against the stored bf16 scale and
    offset, so dequantizing reproduces exactly the weight the kernel multiplies by."""
    n, k = w.shape
    kp = padded(k, group)
    q = torch.empty(n, kp, dtype=torch.uint8, device=w.device)
    scale = torch.empty(n, kp // group, dtype=torch.bfloat16, device=w.device)
    offset = torch.empty_like(scale)
    for lo in range(0, n, CHUNK):
        hi = min(lo + CHUNK, n)
        rows = F.pad(w[lo:hi].float(), (0, kp - k)).view(hi - lo, -1, group)  # (n, G, group)
        low, high = rows.amin(-1), rows.amax(-1)  # (n, G)
        tiny = torch.finfo(torch.bfloat16).tiny  # a constant group keeps a finite scale
        s = ((high - low) / 15).clamp(min=tiny).to(torch.bfloat16)
        m = low.to(torch.bfloat16)
        codes = torch.round((rows - m.float()[..., None]) / s.float()[..., None]).clamp(0, 15)
        q[lo:hi] = codes.to(torch.uint8).view(hi - lo, kp)
        scale[lo:hi], offset[lo:hi] = s, m
    return q, scale, offset


def pack(q: Tensor, scale: Tensor, offset: Tensor) -> tuple[Tensor, Tensor]:
    """Codes (N, K') and per-group scale and offset (N, G) -> qweight, scales (module docstring)."""
    n, kp = q.shape
    np_ = padded(n, BLOCK)
    q = F.pad(q, (0, 0, 0, np_ - n))  # (N', K')
    scale, offset = (F.pad(t, (0, 0, 0, np_ - n)) for t in (scale, offset))  # (N', G) each
    q = q.view(np_ // BLOCK, 2, 16, kp // 8, 2, 4)  # (b, unit, j, o, half, byte)
    q = q.permute(0, 3, 4, 1, 2, 5)  # (b, o, half, unit, j, byte)
    qweight = (q[:, :, 0] | (q[:, :, 1] << 4)).reshape(np_ // BLOCK, kp // 8, 128)
    scales = torch.stack([scale, offset], dim=-1).view(np_ // BLOCK, BLOCK, -1, 2)  # (b, 32, G, 2)
    return qweight.contiguous(), scales.permute(0, 2, 3, 1).contiguous()  # (b, G, 2, 32)


def unpack(qweight: Tensor, scales: Tensor, n: int) -> tuple[Tensor, Tensor, Tensor]:
    """pack's inverse, without the padded outputs: q (N, K'), scale and offset (N, G)."""
    blocks, octets, _ = qweight.shape
    lo, hi = qweight & 15, qweight >> 4  # (b, o, 128) each
    q = torch.stack([lo, hi], dim=2).view(blocks, octets, 2, 2, 16, 4)  # (b, o, half, unit, j, byte)
    q = q.permute(0, 3, 4, 1, 2, 5).reshape(blocks * BLOCK, octets * 8)  # (N', K')
    per_group = scales.permute(0, 3, 1, 2).reshape(blocks * BLOCK, -1, 2)  # (N', G, 2)
    return q[:n], per_group[:n, :, 0], per_group[:n, :, 1]


class Int4Linear(nn.Module):
    """y = x @ w.T + bias for the int4 weight w of the module docstring. Decode-sized bf16
    inputs on a CPU take one kernel call: ours (kernels/int4.py), or where it cannot run,
    PyTorch's `_weight_int4pack_mm_for_cpu` over a copy of the codes in its layout, made on
    first use (N % 16 == 0); everything else multiplies by the weight dequantized to the
    input's dtype (exact)."""

    def __init__(
        self, qweight: Tensor, scales: Tensor, bias: Tensor | None, in_features: int, out_features: int
    ):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.group = qweight.shape[1] * 8 // scales.shape[1]
        if qweight.shape[0] * BLOCK < out_features or qweight.shape[1] * 8 < in_features:
            shape = tuple(qweight.shape)
            raise ValueError(f"int4 buffers {shape} too small for ({out_features}, {in_features})")
        self.register_buffer("qweight", qweight)  # (N' / 32, K' / 8, 128) uint8
        self.register_buffer("scales", scales)  # (N' / 32, G, 2, 32) bf16
        self.register_buffer("bias", bias)  # (N,) or None
        self.torch_packed: tuple[Tensor, Tensor] | None = None  # PyTorch's layout, on first use

    @classmethod
    def from_linear(cls, linear: nn.Module, group: int = GROUP) -> Int4Linear:
        """Quantize an nn.Linear: |w - dequantized| <= scale / 2 for every element (module docstring)."""
        w = linear.weight.detach()  # (N, K)
        bias = None if linear.bias is None else linear.bias.detach()
        return cls(*pack(*quantize_codes(w, group)), bias, w.shape[1], w.shape[0])

    @classmethod
    def cat(cls, *linears: Int4Linear) -> Int4Linear:
        """One Int4Linear whose outputs are those of LINEARS (one input, one group) side by side,
        the same codes (no re-rounding)."""
        parts = [lin.codes() for lin in linears]
        q, scale, offset = (torch.cat(t) for t in zip(*parts, strict=True))
        biases = [lin.bias for lin in linears]
        bias = None if biases[0] is None else torch.cat(biases)
        return cls(*pack(q, scale, offset), bias, linears[0].in_features, q.shape[0])

    def codes(self) -> tuple[Tensor, Tensor, Tensor]:
        """q (N, K') uint8 and scale, offset (N, G) bf16."""
        return unpack(self.qweight, self.scales, self.out_features)

    def dequantize(self, dtype: torch.dtype = torch.bfloat16) -> Tensor:
        """(N, K) weight in DTYPE (exact in fp32; bf16 rounds scale * q + offset once)."""
        q, scale, offset = self.codes()
        n, kp = q.shape
        groups = q.view(n, -1, self.group).float()  # (N, G, group)
        w = groups * scale.float()[..., None] + offset.float()[..., None]
        return w.view(n, kp)[:, : self.in_features].to(dtype)

    def forward(self, x: Tensor) -> Tensor:
        y = self.cpu_kernels(x) if x.device.type == "cpu" else None
        if y is not None:
            return y
        return F.linear(x, self.dequantize(x.dtype), None if self.bias is None else self.bias.to(x.dtype))

    @torch.compiler.disable
    def cpu_kernels(self, x: Tensor) -> Tensor | None:
        """Ours (kernels/int4.py) or PyTorch's int4 kernel where either takes X, else None.
        Under --compile this runs eagerly between graphs (dynamo would trace into our kernel's
        loader, and PyTorch's builds its layout on first use)."""
        from janus_cli.kernels.int4 import int4_rows  # lazily: the kernel library builds on first use

        y = int4_rows(x, self.qweight, self.scales, self.bias, self.out_features, self.in_features)
        if y is None and torch_int4_fits(x, self.out_features, self.in_features):
            y = self.torch_int4(x)
        return y

    def torch_int4(self, x: Tensor) -> Tensor:
        """PyTorch's CPU int4 kernel: its dequant is (q - 8) * s + z, so z = offset + 8 s (in
        bf16, its scales' dtype: within a bf16 rounding of ours)."""
        if self.torch_packed is None:
            q, scale, offset = self.codes()  # (N, K'), (N, G) x 2
            zero = offset.float() + 8 * scale.float()
            scales_zeros = torch.stack([scale.float().T, zero.T], dim=-1).to(torch.bfloat16)  # (G, N, 2)
            packed = torch._convert_weight_to_int4pack_for_cpu(q.to(torch.int32), 1)
            self.torch_packed = packed, scales_zeros.contiguous()
        packed, scales_zeros = self.torch_packed
        rows = x.numel() // self.in_features
        kp = self.qweight.shape[1] * 8
        flat = F.pad(x.reshape(rows, self.in_features), (0, kp - self.in_features))  # (M, K')
        y = torch._weight_int4pack_mm_for_cpu(flat, packed, self.group, scales_zeros)  # (M, N)
        y = y.view(*x.shape[:-1], self.out_features)
        return y if self.bias is None else y + self.bias.to(y.dtype)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, group={self.group}, "
            f"bias={self.bias is not None}"
        )
