"""Linear weights re-laid out, once after loading, for the CPU's fastest matmul kernel.

A decode step multiplies a handful of rows by every weight once, so it is bound by how fast the
kernel reads them. On an AVX-512 CPU (PyTorch 2.13) `F.linear` reads bf16 weights at ~20 GB/s and
fp32 at ~8 GB/s at 2-8 rows; oneDNN's inner product over a weight it has pre-blocked for itself
reads ~25-30 GB/s in either dtype, prefill included: a Janus-Pro-1B bf16 step ran 1.25x faster,
fp32 2.5x. The blocked weight is private to this process's oneDNN: it is never saved.

Legend: M rows, K in features, N out features.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

PACKED_DTYPES = (torch.bfloat16, torch.float32)


def can_pack(device: torch.device, dtype: torch.dtype) -> bool:
    """oneDNN blocked linears exist for CPU tensors of these dtypes where PyTorch has oneDNN."""
    return (
        device.type == "cpu"
        and dtype in PACKED_DTYPES
        and torch.backends.mkldnn.is_available()
        and torch.backends.mkldnn.enabled
        and not torch.ops.mkldnn._is_mkldnn_acl_supported()  # Arm's ACL backend: not measured
    )


class PackedLinear(nn.Module):
    """nn.Linear's forward over a oneDNN-blocked (N, K) weight."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.out_features, self.in_features = linear.weight.shape
        self.register_buffer("weight", torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach()))
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach())

    def forward(self, x: Tensor) -> Tensor:
        # (..., N)
        return torch.ops.mkldnn._linear_pointwise(x.contiguous(), self.weight, self.bias, "none", [], "")

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
        )


def swap_linears(
    root: nn.Module, make: Callable[[nn.Module], nn.Module], kinds: tuple[type, ...] = (nn.Linear,)
) -> None:
    """Replace, in place, every module of exactly one of KINDS under ROOT by MAKE(module), one at
    a time: only names are held while swapping, so each old weight is freed as soon as its
    replacement exists."""
    names = [name for name, m in root.named_modules() if type(m) in kinds and name]
    for name in names:
        parent, _, leaf = name.rpartition(".")
        owner = root.get_submodule(parent)
        setattr(owner, leaf, make(getattr(owner, leaf)))


def pack_linears(model: nn.Module) -> nn.Module:
    """Swap every nn.Linear of MODEL (a CPU model of a PACKED_DTYPES dtype) for a PackedLinear;
    int8 linears stay as they are. Returns MODEL."""
    swap_linears(model, PackedLinear)
    return model
