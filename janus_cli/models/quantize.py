"""Weight-only int8 quantization, one scale per output channel, of the decode path's linears.

An image-token step reads every LLM block weight and the image head once for a handful of rows,
so it is bound by the bytes it reads: int8 weights halve them against bf16. Activations stay in
the model dtype; the embedding tables, lm_head, vision towers and image decoders are untouched.

Legend: M rows, K in features, N out features.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

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


# scheme -> the quantizer of one nn.Linear. Each must also run on the meta device (it builds the
# empty modules a quantized checkpoint is loaded into) and keep a bias under the name `bias`.
SCHEMES = {"int8": Int8Linear.from_linear}


def quantize_linear(linear: nn.Linear, scheme: str) -> nn.Module:
    return SCHEMES[scheme](linear)


def quantize_plan(model: nn.Module, scheme: str) -> dict[str, str]:
    """{dotted name of each nn.Linear SCHEME quantizes in MODEL: the scheme it gets}: every
    linear of the LLM blocks and of the image head (Janus's `gen_head`), where loaded."""
    roots = {"language_model.model.layers": model.language_model.model.layers}
    if getattr(model, "gen_head", None) is not None:  # Janus, loaded for generation
        roots["gen_head"] = model.gen_head
    return {
        f"{prefix}.{name}": scheme
        for prefix, root in roots.items()
        for name, m in root.named_modules()
        if type(m) is nn.Linear
    }


def quantize_model(model: nn.Module, scheme: str) -> nn.Module:
    """Swap, in place, MODEL's linears for SCHEME's modules (quantize_plan), one at a time, so
    each old weight is freed as soon as its replacement exists; returns MODEL."""
    for name, each in quantize_plan(model, scheme).items():
        parent, _, leaf = name.rpartition(".")
        owner = model.get_submodule(parent)
        setattr(owner, leaf, quantize_linear(getattr(owner, leaf), each))
    return model


def quantize_int8(model: nn.Module) -> nn.Module:
    return quantize_model(model, "int8")
