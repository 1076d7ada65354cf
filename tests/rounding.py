"""The integer kernels' int8 activations (kernels/act8.h) in fp64, for tests/test_int4.py and
tests/test_int8_kernel.py."""

import torch
import torch.nn.functional as F
from torch import Tensor

BF16_HALF_ULP = 2.0**-8  # relative, the worst case at the bottom of a binade


def rounded_activations(x: Tensor, group: int) -> tuple[Tensor, Tensor]:
    """The kernel's int8 rounding of X (M, K) per row and group, in fp64: (x8 (M, K), d (M, G))."""
    m, k = x.shape
    kp = -(-k // group) * group
    xp = F.pad(x.float(), (0, kp - k)).view(m, -1, group)  # (M, G, group)
    amax = xp.abs().amax(-1, keepdim=True)
    inv = torch.where(amax > 0, torch.tensor(127.0) / amax, torch.zeros(()))  # fp32, as the kernel
    d = amax / 127
    return (torch.round(xp * inv) * d).view(m, kp)[:, :k].double(), d[..., 0].double()
