"""Weight-only quantization of the decode path's linears: the schemes `--quantize` offers.

An image-token step reads every LLM block weight and the image head once for a handful of rows,
so it is bound by the bytes it reads: int8 weights (one scale per output channel) halve them
against bf16, int4 (models/int4.py) cuts them to 28 %. The embedding tables, lm_head, vision
towers and image decoders are untouched.

int4 keeps the image head (Janus's `gen_head`) at int8: its 16384 logits go straight to the
sampler, classifier-free guidance multiplies their errors about 6x (cfg 5), and int4 would give
them 9.0 % relative error against int8's 0.84 % (vision_head 16384x2048, Gaussian weights and
inputs, benchmarks/int4_error.py's measure), for 5 % of an int4 Janus-Pro-1B step's bytes. The
LLM blocks, first and last included, take int4: their errors pass through the residual stream
and the final norm before they reach a logit (the per-step KL of the guided distribution, the
measure that settles it, is benchmarks/quant_quality.py's).

Legend: M rows, K in features, N out features.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from janus_cli.models.int4 import Int4Linear
from janus_cli.models.layout import swap_linears

# PyTorch's int8 weight-only kernel dequantizes per row, so it beats dequantize-then-matmul only
# for decode-sized inputs. On an AVX512-BF16 CPU (2.13) it beats the oneDNN bf16 path at 1-2 rows
# (a Janus-Pro-1B step with CFG: 121 against 169 ms) and trails it from about 4 images (8 rows).
PACKED_MAX_ROWS = 16
# Devices whose kernel this project has run. Its CPU path garbles or crashes when K is not a
# multiple of 16, and its fp32 CPU path is 3x slower than an fp32 matmul, so fp32 dequantizes.
PACKED_DEVICES = ("cpu", "cuda")
PACKED_DTYPES = (torch.bfloat16, torch.float16)


class Int8Linear(nn.Module):
    """y = x @ (weight * scale[:, None]).T + bias, with an int8 (N, K) weight and (N,) scales."""

    def __init__(self, weight: Tensor, scale: Tensor, bias: Tensor | None):
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.register_buffer("weight", weight)  # (N, K) int8
        self.register_buffer("scale", scale)  # (N,) in the model dtype (the kernel wants it so)
        self.register_buffer("bias", bias)
        self.packed = self.in_features % 16 == 0

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> Int8Linear:
        """Symmetric round-to-nearest: |w - weight * scale| <= scale / 2 for every element."""
        w = linear.weight.detach().float()  # (N, K)
        tiny = torch.finfo(torch.float32).tiny  # an all-zero row keeps a finite scale
        scale = (w.abs().amax(dim=1) / 127).clamp(min=tiny).to(linear.weight.dtype)
        # Round with the stored (possibly bf16-rounded) scale, so dequantizing is exact.
        q = torch.round(w / scale.float()[:, None]).clamp(-127, 127).to(torch.int8)
        bias = None if linear.bias is None else linear.bias.detach()
        return cls(q, scale, bias)

    def dequantize(self) -> Tensor:
        """(N, K) weight in the scale's dtype."""
        return self.weight.to(self.scale.dtype) * self.scale[:, None]

    def forward(self, x: Tensor) -> Tensor:
        rows = x.numel() // self.in_features
        if (
            self.packed
            and rows <= PACKED_MAX_ROWS
            and x.device.type in PACKED_DEVICES
            and x.dtype in PACKED_DTYPES
        ):
            flat = x.reshape(rows, self.in_features).contiguous()  # (M, K): the kernel takes 2-D rows
            y = torch._weight_int8pack_mm(flat, self.weight, self.scale.to(x.dtype))
            y = y.view(*x.shape[:-1], self.out_features)
        else:
            # int8 -> float is exact; scaling the output instead of the weight saves a pass over it.
            y = F.linear(x, self.weight.to(x.dtype)) * self.scale.to(x.dtype)
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
        )


@dataclass(frozen=True)
class Scheme:
    """The quantized linear class for each part a scheme touches."""

    blocks: type  # the LLM blocks' linears
    head: type  # the image head's (Janus's gen_head)


SCHEMES = {"int8": Scheme(Int8Linear, Int8Linear), "int4": Scheme(Int4Linear, Int8Linear)}
# Where each part's linears live, by module name under the model.
PARTS = {"blocks": "language_model.model.layers.", "head": "gen_head."}


def part_of(name: str) -> str | None:
    """blocks or head for a linear's module NAME under a Janus/JanusFlow model (as named in the
    checkpoint, e.g. language_model.model.layers.3.mlp.down_proj), None where schemes keep it."""
    return next((part for part, prefix in PARTS.items() if name.startswith(prefix)), None)


def quantize_linear(linear: nn.Linear, scheme: str, part: str = "blocks") -> nn.Module:
    """LINEAR as SCHEME (a key of SCHEMES) quantizes the linears of PART (blocks or head)."""
    return getattr(SCHEMES[scheme], part).from_linear(linear)


def quantize_model(model: nn.Module, scheme: str) -> nn.Module:
    """Swap, in place, every linear of the LLM blocks and of the image head (Janus's `gen_head`,
    where loaded) for SCHEME's quantized linears; returns MODEL."""
    roots = {"blocks": model.language_model.model.layers, "head": getattr(model, "gen_head", None)}
    for part, root in roots.items():
        if root is not None:
            swap_linears(root, lambda linear, part=part: quantize_linear(linear, scheme, part))
    return model


def quantize_int8(model: nn.Module) -> nn.Module:
    """quantize_model(MODEL, "int8")."""
    return quantize_model(model, "int8")


def quantize_int4(model: nn.Module) -> nn.Module:
    """quantize_model(MODEL, "int4"): int4 LLM blocks, int8 image head."""
    return quantize_model(model, "int4")
